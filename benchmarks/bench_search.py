"""Similarity search at scale: latency, memory and recall of the exact and approximate index.

Run by hand (not a test):  python benchmarks/bench_search.py [--sizes 100000 1000000] [--dim 641 --latent 64]

Vectors are synthetic (641-D by default) but clustered like a music library (genres → albums →
tracks on a ``--latent``-D space mapped into ``--dim`` dimensions, plus isotropic noise), so
nearest neighbours are meaningful and recall is not trivially 1 (uniform noise has no
neighbourhood structure). ``--dim 1041`` is the width of the fusion space (641 hand-crafted + 400
learned dims); a larger ``--latent`` spreads the signal over more principal directions (harder to
compress). For each size it builds ``music_pipeline.search.index.VectorIndex`` three ways on the
same vectors — exact only; the faiss IVF with float32 re-rank (``rerank_codes="float32"``: the
index before format 2, which keeps every float32 vector in memory); the IVF with compact re-rank
codes (``rerank_codes="auto"``, the default) — and reports, for queries that are new tracks of
existing albums:

- single-query latency p50/p95 (one query per call, as the CLI does) and batched time per query;
  the vectors are first rotated with ``space.energy_rotation`` as ``TrackIndex.build`` does (no
  cosine changes; it lets exact single queries prune rows, see ``exact.PrunedExact``);
- index memory (``VectorIndex.memory_bytes``: what a query process holds to search — float32
  vectors where search reads them all, faiss codes/lists/centroids, re-rank codes and projection);
- recall@10 against exact search on the full-precision vectors (fresh queries, and the sample the
  index tuned on), build time and the build's peak RSS (Linux: VmHWM reset before each build),
  and ratios against the float32 re-rank of the same run;
- a query process: the compressed index saved, loaded in a fresh Python process as the explorer
  loads it (``VectorIndex.load(mmap=True)``: the float32 rows are read on demand with ``pread``,
  k rows a query, to score the results exactly) and queried; its resident memory after the
  queries, split into anonymous memory (of which what loading the index added) and mapped files
  (shared libraries; pages of vectors.npy would count here if it were memory-mapped).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from music_pipeline.search.exact import exact_topk, normalise, recall_at_k
from music_pipeline.search.index import IndexParams, VectorIndex
from music_pipeline.search.space import energy_rotation

DIM = 641
LATENT = 64


class LibraryGenerator:
    """Genres → albums (~12 tracks each) → tracks, generated chunk by chunk into float32."""

    def __init__(
        self, n: int, seed: int = 0, genres: int = 40, tracks_per_album: int = 12, dim: int = DIM, latent: int = LATENT
    ):
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.dim, self.latent = dim, latent
        self.n_albums = max(genres, n // tracks_per_album)
        genre = rng.standard_normal((genres, latent))
        self.album_genre = rng.integers(0, genres, self.n_albums)
        self.albums = (genre[self.album_genre] + 0.6 * rng.standard_normal((self.n_albums, latent))).astype(np.float32)
        self.mixing = (rng.standard_normal((latent, dim)) / np.sqrt(latent)).astype(np.float32)

    def tracks(self, n: int, chunk: int = 100_000) -> np.ndarray:
        out = np.empty((n, self.dim), dtype=np.float32)
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            album = self.rng.integers(0, self.n_albums, m)
            latent = self.albums[album] + 0.45 * self.rng.standard_normal((m, self.latent), dtype=np.float32)
            x = latent @ self.mixing + 0.12 * self.rng.standard_normal((m, self.dim), dtype=np.float32)
            out[s : s + m] = normalise(x)
        return out


def latencies(index: VectorIndex, queries: np.ndarray, k: int = 10, warm: int = 3) -> np.ndarray:
    for q in queries[:warm]:
        index.search(q, k)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q, k)
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1000


def recall_ci(found: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Recall@k and its 95 % normal interval over queries."""
    per = np.array(
        [
            len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist())) / max(1, int((t >= 0).sum()))
            for f, t in zip(found, truth, strict=True)
        ]
    )
    half = 1.96 * per.std(ddof=1) / np.sqrt(len(per)) if len(per) > 1 else 0.0
    return float(per.mean()), float(per.mean() - half), float(per.mean() + half)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> None:
    """Reset VmHWM (Linux ≥ 4.0), so the next peak is this phase's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def phase_peak_gb() -> float:
    kb = _status_kb("VmHWM")
    return kb / 1024**2 if kb is not None else peak_rss_gb()


QUERY_PROCESS = """
import json, sys, time
from pathlib import Path
import numpy as np
from music_pipeline.search.index import VectorIndex

def status():
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = int(line.split()[1]) / 1024
    mapped, current = 0, None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5:
            current = head[-1] if len(head) >= 6 else None
        elif head[0] == "Rss:" and current and current.endswith("vectors.npy"):
            mapped += int(head[1])
    out["vectors_npy"] = mapped / 1024
    return out

directory = Path(sys.argv[1])
before = status()
index = VectorIndex.load(directory, json.loads((directory / "state.json").read_text()), mmap=True)
queries = np.load(directory / "queries.npy")
loaded = status()
for q in queries[:3]:
    index.search(q, 10)
times, found = [], []
for q in queries:
    t0 = time.perf_counter()
    i, _ = index.search(q, 10)
    times.append(time.perf_counter() - t0)
    found.append(i[0])
print(json.dumps({"before": before, "loaded": loaded, "after": status(), "ms": (np.array(times) * 1000).tolist(), "found": np.array(found).tolist()}))
"""


def query_process(index: VectorIndex, queries: np.ndarray, truth: np.ndarray) -> dict:
    """Save the index, load it in a fresh process (vectors memory-mapped), query, report its memory."""
    with tempfile.TemporaryDirectory(prefix="bench_search_") as tmp:
        d = Path(tmp)
        (d / "state.json").write_text(json.dumps(index.save(d)))
        np.save(d / "queries.npy", queries)
        files = {p.name: p.stat().st_size for p in d.iterdir()}
        out = subprocess.run(
            [sys.executable, "-c", QUERY_PROCESS, str(d)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["recall"] = recall_at_k(np.array(r.pop("found")), truth)
    r["files"] = files
    return r


def build(db: np.ndarray, params: IndexParams) -> tuple[VectorIndex, float, float]:
    reset_peak()
    t0 = time.perf_counter()
    index = VectorIndex(db, params)
    index.build_ann()
    return index, time.perf_counter() - t0, phase_peak_gb()


def run(n: int, n_queries: int, recall_queries: int, seed: int, dim: int, latent: int, check_process: bool) -> dict:
    gen = LibraryGenerator(n, seed, dim=dim, latent=latent)
    t0 = time.perf_counter()
    db = gen.tracks(n)
    queries = gen.tracks(max(n_queries, recall_queries))
    rotation = energy_rotation(db)  # fitted on ≤ 20k rows, as for a library
    for s in range(0, n, 100_000):  # in place, chunk by chunk: no second full-size copy
        db[s : s + 100_000] = normalise(db[s : s + 100_000] @ rotation)
    queries = normalise(queries @ rotation)
    print(
        f"\n== {n:,} vectors × {dim} (latent {latent}; generated in {time.perf_counter() - t0:.1f} s, {db.nbytes / 1e9:.2f} GB; RSS {(_status_kb('VmRSS') or 0) / 1024**2:.2f} GB)",
        flush=True,
    )

    t0 = time.perf_counter()
    truth, _ = exact_topk(db, queries, 10)
    batched_ms = (time.perf_counter() - t0) * 1000 / len(queries)
    timed = queries[:n_queries]

    # compressed first: its build peak is then not hidden by the others' allocations
    small, small_s, small_peak = build(db, IndexParams(approximate_above=0, recall_sample=300, seed=seed))
    small_recall = recall_ci(small.search(queries, 10)[0], truth)
    lat_small = latencies(small, timed)
    proc = query_process(small, timed, truth[:n_queries]) if check_process else None
    small_mb, small_state = small.memory_bytes / 1e6, small.ann_state
    del small  # released before the next build

    full, full_s, full_peak = build(
        db, IndexParams(approximate_above=0, recall_sample=300, seed=seed, rerank_codes="float32")
    )
    full_recall = recall_ci(full.search(queries, 10)[0], truth)
    lat_full = latencies(full, timed)
    full_mb = full.memory_bytes / 1e6
    full_state = full.ann_state
    del full

    exact = VectorIndex(db, IndexParams(approximate_above=n + 1))
    lat_exact = latencies(exact, timed)
    exact_mb = exact.memory_bytes / 1e6
    print(
        f"exact   single query p50 {np.percentile(lat_exact, 50):7.2f} ms  p95 {np.percentile(lat_exact, 95):7.2f} ms  batched {batched_ms:6.2f} ms/query  memory {exact_mb:8.1f} MB",
        flush=True,
    )
    for name, state, lat, recall, secs, peak, mb in (
        ("float32", full_state, lat_full, full_recall, full_s, full_peak, full_mb),
        ("codes", small_state, lat_small, small_recall, small_s, small_peak, small_mb),
    ):
        st = state
        codes = (
            f"{st.codes} × {st.code_dims} dims (code recall {st.code_recall:.3f})"
            if name == "codes"
            else "float32 vectors"
        )
        print(
            f"{name:8s}single query p50 {np.percentile(lat, 50):7.2f} ms  p95 {np.percentile(lat, 95):7.2f} ms  memory {mb:8.1f} MB  build {secs:.1f} s (peak RSS {peak:.2f} GB, vectors {db.nbytes / 1e9:.2f} GB of it)",
            flush=True,
        )
        print(
            f"        IVF nlist {st.nlist} over {st.dims} dims, nprobe {st.nprobe} (tuned: {', '.join(f'{k}:{v:.3f}' for k, v in st.recall_by_nprobe.items())}); re-rank: {codes}"
        )
        if st.codes_tried:
            print(
                f"        codes tried (recall@10 re-ranking the exact top {10 * 10}): {', '.join(f'{k} {v:.3f}' for k, v in st.codes_tried.items())}"
            )
        print(
            f"        recall@10 vs exact: {recall[0]:.4f} (95 % CI {recall[1]:.3f}–{recall[2]:.3f}) on {len(queries)} fresh queries, {st.recall_at_10:.4f} on the tuning sample ({st.recall_sample})",
            flush=True,
        )
    if proc:
        a = proc["after"]
        print(
            f"query process (fresh, index loaded from disk as the explorer loads it): RSS {a['VmRSS']:.0f} MB after {n_queries} queries "
            f"(anonymous {a['RssAnon']:.0f} MB, of which {a['RssAnon'] - proc['before']['RssAnon']:.0f} MB added by loading the index; "
            f"mapped files {a['RssFile']:.0f} MB, of which vectors.npy {a['vectors_npy']:.1f} MB, the rest libraries); "
            f"p50 {np.percentile(proc['ms'], 50):.2f} ms p95 {np.percentile(proc['ms'], 95):.2f} ms; recall@10 {proc['recall']:.4f}",
            flush=True,
        )
        print(
            f"        files: {', '.join(f'{k} {v / 1e6:.1f} MB' for k, v in sorted(proc['files'].items()) if k not in ('queries.npy', 'state.json'))}"
        )
    p50f, p50s = np.percentile(lat_full, 50), np.percentile(lat_small, 50)
    print(
        f"ratios  codes/float32: memory {small_mb / full_mb:.3f}, latency p50 {p50s / p50f:.2f}, build time {small_s / full_s:.2f}; float32 approx/exact latency p50 {p50f / np.percentile(lat_exact, 50):.3f}",
        flush=True,
    )
    return {
        "n": n,
        "dim": dim,
        "exact_p50": float(np.percentile(lat_exact, 50)),
        "exact_p95": float(np.percentile(lat_exact, 95)),
        "exact_batched": batched_ms,
        "exact_mb": exact_mb,
        "full_p50": p50f,
        "full_p95": float(np.percentile(lat_full, 95)),
        "full_recall": full_recall[0],
        "full_mb": full_mb,
        "full_s": full_s,
        "small_p50": p50s,
        "small_p95": float(np.percentile(lat_small, 95)),
        "small_recall": small_recall[0],
        "small_mb": small_mb,
        "small_s": small_s,
        "small_codes": f"{small_state.codes}×{small_state.code_dims}",
        "small_peak": small_peak,
        "proc_anon": proc["after"]["RssAnon"] if proc else None,
        "proc_file": proc["after"]["RssFile"] if proc else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=200, help="timed queries per size (fresh tracks, not in the index)")
    ap.add_argument(
        "--recall-queries",
        type=int,
        default=1000,
        help="fresh queries recall@10 is measured on (the timed ones among them)",
    )
    ap.add_argument("--dim", type=int, default=DIM, help="vector width (641 hand-crafted, 400 learned, 1041 fusion)")
    ap.add_argument("--latent", type=int, default=LATENT, help="dimension of the clustered signal inside the vectors")
    ap.add_argument(
        "--no-query-process", action="store_true", help="skip loading the saved compressed index in a fresh process"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import faiss

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; numpy {np.__version__}")
    rows = [
        run(n, args.queries, args.recall_queries, args.seed, args.dim, args.latent, not args.no_query_process)
        for n in args.sizes
    ]
    print(f"\n{args.dim} dims, latent {args.latent}:")
    print(
        "| vectors | exact p50 / p95 (ms) | float32 re-rank p50 / p95 (ms), recall@10, memory | codes p50 / p95 (ms), recall@10, memory | codes | build float32 / codes (s) |"
    )
    print("|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(
            f"| {r['n']:,} | {r['exact_p50']:.2f} / {r['exact_p95']:.2f} | {r['full_p50']:.2f} / {r['full_p95']:.2f}, {r['full_recall']:.3f}, {r['full_mb']:.0f} MB "
            f"| {r['small_p50']:.2f} / {r['small_p95']:.2f}, {r['small_recall']:.3f}, **{r['small_mb']:.0f} MB** | {r['small_codes']} | {r['full_s']:.0f} / {r['small_s']:.0f} |"
        )
    print(f"peak RSS {peak_rss_gb():.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

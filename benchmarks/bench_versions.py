"""Versions: does a second performance of a composition (another instrument, faster, partly
transposed) find its first, and what do the harmonic sequences cost?

    nice -n 15 python -m benchmarks.bench_versions [--work /work/bench_versions] [--dev /work/dev_library]
        [--dev-tracks 30] [--grid] [--synthetic 10000]

Material (``versions_material.py``): normalised scores of ``difficulty_reference.py`` (six
collections, Debian packages and generated pieces), each rendered once on piano into the library and
once more with another General MIDI program, x1.1-1.3 faster and transposed for about half; the
library also holds piano-only pieces and ``--dev-tracks`` real tracks of ``--dev`` as distractors.
File names are random.

Reported: top-1 accuracy of the sequences (``identity.versions.rank_versions``, the method
``music-pipeline versions`` runs) beside two baselines — the cosine of mean chroma, and the same
after the optimal transposition (OTI) — per collection and on the two halves of the collections
(parameters were picked on TUNE with ``--grid``, the numbers on REPORT are unseen), with 95 %
bootstrap intervals (queries resampled within collections, 1000x); the recall of the prefilter;
the cost of the sequences beside the 641-D extraction on the same decoded signal; the query
latency on this library and on a synthetic one of ``--synthetic`` tracks.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.versions_material import build

COLLECTIONS = ["freedoom", "openttd", "abc_tunes", "pianobooster", "planetblupi", "generated"]
TUNE = ["freedoom", "abc_tunes", "planetblupi"]  # parameters were picked on these
REPORT = ["openttd", "pianobooster", "generated"]
BOOT = 1000


def analyse(path: Path, cache: Path) -> dict:
    """Chroma, beats, sequence and timings of one file (the extraction's steps, timed one by one)."""
    dest = cache / f"{path.parent.name}__{path.stem}.npz"
    if dest.exists():
        return dict(np.load(dest))
    from music_pipeline.audio.decode import decode
    from music_pipeline.difficulty.audio_descriptors import compute_descriptors
    from music_pipeline.features.embedding import compute_embedding
    from music_pipeline.features.harmonic import sequence_of_spectra
    from music_pipeline.features.rhythm import compute_rhythm
    from music_pipeline.features.segments import extract_segments
    from music_pipeline.features.spectra import compute_spectra

    a = decode(path)
    t0 = time.process_time()
    spectra = compute_spectra(a.y, a.sr)
    rhythm = compute_rhythm(spectra)
    compute_embedding(spectra, rhythm)
    compute_descriptors(spectra, rhythm)
    extract_segments(spectra)
    t1 = time.process_time()
    seq = sequence_of_spectra(spectra, rhythm)
    t2 = time.process_time()
    out = {
        "sequence": seq,
        "chroma_mean": spectra.chroma.mean(axis=1),
        "extract_s": t1 - t0,
        "sequence_s": t2 - t1,
        "duration_s": a.duration_s,
    }
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(dest, **out)
    return out


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(1e-9, np.linalg.norm(x, axis=-1, keepdims=True))


def interval(hits: np.ndarray, cols: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(cols == c) for c in np.unique(cols)]
    means = [hits[np.concatenate([rng.choice(g, len(g)) for g in groups])].mean() for _ in range(BOOT)]
    return tuple(float(v) for v in np.percentile(means, [2.5, 97.5]))


def evaluate(lib_seqs, lib_profiles, lib_summaries, lib_means, queries, targets) -> dict[str, np.ndarray]:
    from music_pipeline.identity.versions import oti, profile, rank_versions, summary

    out = {"mean_chroma": [], "oti_global": [], "prefilter": [], "sequences": [], "oti_rank": [], "prefilter_rank": []}
    for (seq, mean), tgt in zip(queries, targets, strict=True):
        out["mean_chroma"].append(int(np.argmax(lib_means @ unit(mean)) == tgt))
        _shift, sims = oti(profile(seq), lib_profiles)
        out["oti_global"].append(int(np.argmax(sims) == tgt))
        out["oti_rank"].append(int((sims > sims[tgt]).sum()))
        cheap = sims + lib_summaries @ summary(seq)
        out["prefilter"].append(int(np.argmax(cheap) == tgt))
        out["prefilter_rank"].append(int((cheap > cheap[tgt]).sum()))
        ranked = rank_versions(seq, lib_seqs, lib_profiles, lib_summaries, n=1)
        out["sequences"].append(int(ranked[0].index == tgt))
    return {k: np.array(v) for k, v in out.items()}


def grid(lib_seqs, lib_profiles, lib_summaries, lib_means, queries, targets, cols) -> None:
    """Top-1 of the sequences on TUNE for a few alignment parameters (how the constants were picked)."""
    import music_pipeline.identity.versions as v

    keep = np.isin(cols, TUNE)
    q = [x for x, k in zip(queries, keep, strict=True) if k]
    t = [x for x, k in zip(targets, keep, strict=True) if k]
    saved = (v.KNN_FRACTION, v.GAP_ONSET, v.GAP_EXTEND)
    for knn in (0.1, 0.2, 0.3):
        for go, ge in ((5.0, 0.5), (1.0, 1.0), (2.0, 0.5)):
            v.KNN_FRACTION, v.GAP_ONSET, v.GAP_EXTEND = knn, go, ge
            r = evaluate(lib_seqs, lib_profiles, lib_summaries, lib_means, q, t)
            print(f"  grid on TUNE: knn {knn} gaps {go}/{ge}: top-1 {r['sequences'].mean():.3f}", flush=True)
    v.KNN_FRACTION, v.GAP_ONSET, v.GAP_EXTEND = saved


def synthetic_latency(lib_seqs, n_tracks: int, repeats: int = 5, seed: int = 0) -> float:
    """Seconds per query on ``n_tracks`` sequences (the real ones, each rolled and cut at random)."""
    from music_pipeline.identity.versions import profile, rank_versions, summary

    rng = np.random.default_rng(seed)
    seqs = []
    for i in range(n_tracks):
        s = lib_seqs[i % len(lib_seqs)]
        a = int(rng.integers(0, max(1, s.shape[1] // 4)))
        seqs.append(np.roll(s[:, a:], int(rng.integers(12)), axis=0))
    profiles = np.stack([profile(s) for s in seqs])
    summaries = np.stack([summary(s) for s in seqs])
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        rank_versions(seqs[r], seqs, profiles, summaries, n=10, exclude={r})
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/work/bench_versions"))
    ap.add_argument("--scores", type=Path, default=Path("/work/bench_diff/scores"))
    ap.add_argument("--dev", type=Path, default=Path("/work/dev_library"))
    ap.add_argument("--dev-tracks", type=int, default=30)
    ap.add_argument("--grid", action="store_true", help="also print the parameter grid on TUNE")
    ap.add_argument("--synthetic", type=int, default=10_000)
    args = ap.parse_args()

    from music_pipeline.features.extract import warm_up
    from music_pipeline.identity.versions import aligned_count, profile, summary

    truth = build(args.scores, args.work, COLLECTIONS)
    warm_up()
    cache = args.work / "cache"
    dev = sorted(args.dev.rglob("*.ogg"))
    np.random.default_rng(0).shuffle(dev)
    lib_files = sorted((args.work / "library").glob("*.wav")) + dev[: args.dev_tracks]
    lib = [analyse(p, cache) for p in lib_files]
    index = {p.stem: i for i, p in enumerate(lib_files) if p.suffix == ".wav"}
    lib_seqs = [x["sequence"] for x in lib]
    lib_profiles = np.stack([profile(s) for s in lib_seqs])
    lib_summaries = np.stack([summary(s) for s in lib_seqs])
    lib_means = unit(np.stack([x["chroma_mean"] for x in lib]))
    items = sorted(truth["versions"].items())
    queries, targets, cols, qa = [], [], [], []
    for vid, t in items:
        x = analyse(args.work / "versions" / f"{vid}.wav", cache)
        qa.append(x)
        queries.append((x["sequence"], x["chroma_mean"]))
        targets.append(index[t["original"]])
        cols.append(t["collection"])
    cols = np.array(cols)
    print(
        f"library: {len(lib)} tracks ({len(index)} piano renders, {len(lib) - len(index)} real tracks); "
        f"{len(queries)} versions"
    )
    if args.grid:
        grid(lib_seqs, lib_profiles, lib_summaries, lib_means, queries, targets, cols)
    t0 = time.perf_counter()
    res = evaluate(lib_seqs, lib_profiles, lib_summaries, lib_means, queries, targets)
    per_query = (time.perf_counter() - t0) / len(queries)
    report = {}
    for name, keep in (("REPORT (unseen)", np.isin(cols, REPORT)), ("TUNE", np.isin(cols, TUNE)), ("all", cols != "")):
        row = {}
        for m in ("mean_chroma", "oti_global", "prefilter", "sequences"):
            h = res[m][keep]
            row[m] = (float(h.mean()), *interval(h, cols[keep]))
        report[name] = row
        print(f"\n{name}: {keep.sum()} versions of {', '.join(sorted(set(cols[keep])))}")
        for m, (acc, lo, hi) in row.items():
            print(f"  top-1 {m:12s} {acc:.3f}  [{lo:.3f}, {hi:.3f}]")
    print("\nper collection (top-1: mean chroma / OTI global / prefilter / sequences)")
    for c in COLLECTIONS:
        k = cols == c
        print(
            f"  {c:13s} n={k.sum():3d}  "
            + " / ".join(f"{res[m][k].mean():.2f}" for m in ("mean_chroma", "oti_global", "prefilter", "sequences"))
        )
    ranks = res["prefilter_rank"]
    for name, r in (("OTI profiles alone", res["oti_rank"]), ("the prefilter (OTI profiles + 2D-FTM)", ranks)):
        shares = " ".join(f"{p} %: {(r < len(lib) * p / 100).mean():.3f}" for p in (1, 2, 3, 5, 10))
        print(
            f"rank of the original by {name}: median {np.median(r):.0f}, worst {r.max()}; "
            f"share in the library's first {shares}"
        )
    print(
        f"\nprefilter: the original among the {aligned_count(len(lib))} candidates aligned for "
        f"{(ranks < aligned_count(len(lib))).mean():.3f} of versions (worst rank {ranks.max()}, median {np.median(ranks):.0f})"
    )
    every = lib + qa
    ext = sum(float(x["extract_s"]) for x in every)
    seq = sum(float(x["sequence_s"]) for x in every)
    audio = sum(float(x["duration_s"]) for x in every)
    print(
        f"\ncost: 641-D extraction {ext:.1f} CPU s for {audio / 60:.1f} min of audio ({audio / ext:.0f}x real time); "
        f"sequences {seq:.2f} CPU s = {100 * seq / ext:.2f} % of it"
    )
    syn = synthetic_latency(lib_seqs, args.synthetic)
    print(
        f"\nquery latency: {1000 * per_query:.0f} ms on this library of {len(lib)} tracks; "
        f"{1000 * syn:.0f} ms on a synthetic library of {args.synthetic} tracks "
        f"({aligned_count(args.synthetic)} aligned)"
    )
    (args.work / "results.json").write_text(
        json.dumps(
            {
                "report": report,
                "prefilter_recall": float((ranks < aligned_count(len(lib))).mean()),
                "sequence_cost_share": seq / ext,
                "latency_ms": 1000 * per_query,
                "synthetic_latency_ms": {str(args.synthetic): 1000 * syn},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()

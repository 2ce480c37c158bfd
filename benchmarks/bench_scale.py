"""What a library costs as it grows: every phase of a build, the sensor, one new file, memory.

    python benchmarks/bench_scale.py [--sizes 100 1000 10000] [--with-100k] [--seconds 4] [--workers 2]
                                     [--prefill-from N0] [--fresh]

For each N it writes N distinct synthetic tracks (``synth.styled_track``: 4 styles = 4 labelled
folders, a different seed per track, ``--seconds`` long, 22.05 kHz mono WAV) under
``data/bench_scale/lib-N`` (kept: a re-run reuses them) and, in a fresh child process per N (so
peak memory is that N's alone), measures on a fresh data directory:

- scan + hash: a cold scan (no hash cache) and a warm one (the cache answers);
- full build: ``run_build`` as ``music-pipeline build`` runs it; every Dagster step's own time
  (per-track passes, tables, index, each model's training);
- no-op build: nothing changed;
- sensor tick: ``library_sensor`` evaluated with nothing new, then with one new file;
- one new file end to end: the new file, then ``build``, until ``similar`` finds it;
- peak RSS of the child (ru_maxrss; worker processes not included).

``--prefill-from N0`` (default 1000; 0 turns it off; sizes above N0 need lib-N0 measured first,
which the default sizes do in order): the library is still N distinct
files, scanned and hashed for real, but the per-track stores are filled with the results of
lib-N0's same-style tracks, so the build skips the per-track passes (notes and the learned
embedding cost ~0.5 s per short track on 2 cores: 10k tracks would take ~1.5 h) while tables,
index, every model, the no-op build, the sensor and one new file are measured at N. Sizes
measured in earlier runs stay in the table (``--fresh`` forgets them).

It prints one table (rows: costs, columns: N) and the growth exponent of each cost (slope of
log cost against log N over the sizes), writes ``benchmarks/scale_results.json`` and draws
``benchmarks/scale.png`` (log-log curves). Models retrain only when stale (``models/staleness.py``),
so the "one new file" row is what a user pays day to day; the full build's model rows are what
``rebuild_models`` costs at that size. Run by hand, never in CI; 10k tracks take a while.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import ORIGINAL_ENV, step_seconds  # noqa: F401  (puts the repository on sys.path)

ROOT = Path("data/bench_scale")
OUT_JSON = Path(__file__).with_name("scale_results.json")
OUT_PNG = Path(__file__).with_name("scale.png")


def write_library(root: Path, n: int, seconds: float) -> Path:
    """N distinct tracks in 4 labelled folders (label = folder), written once."""
    import soundfile as sf

    from music_pipeline.synth import SR, STYLES, styled_track

    root.mkdir(parents=True, exist_ok=True)
    marker = root / f".complete-{n}-{seconds}"
    if marker.exists():
        return root
    styles = list(STYLES)
    for i in range(n):
        style = styles[i % len(styles)]
        path = root / style / f"{style}_{i:06d}.wav"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, styled_track(style, seconds, seed=10_000 + i), SR, subtype="PCM_16")
    marker.write_text("ok\n")
    return root


def prefill(settings, lib: Path, donor_n: int) -> int:
    """Fill the per-track stores of ``settings.data_dir`` for every track of ``lib`` with the
    results of the same-style track of the measured ``lib-<donor_n>`` (hard links): the library
    is still N distinct files (scanned and hashed for real), but no track is analysed again, so
    the build's table, index and model steps are measured at N without paying N per-track passes
    (whose cost per track is measured at the smaller sizes). Returns the tracks filled."""
    from music_pipeline.audio.scan import scan_library
    from music_pipeline.features.extract import FeatureStore
    from music_pipeline.layout import DataLayout
    from music_pipeline.learned.store import LearnedStore
    from music_pipeline.notes.store import NotesStore

    donor_lib, donor_data = ROOT / f"lib-{donor_n}", ROOT / f"data-{donor_n}"
    if not (donor_data / "tables" / "embeddings.parquet").exists():
        sys.exit(
            f"--prefill-from {donor_n}: {donor_data} holds no measured library; measure N = {donor_n} first "
            f"(e.g. --sizes {donor_n} {len(list(lib.rglob('*.wav')))}) or pass --prefill-from 0"
        )
    donor = {
        t.relpath.split("/")[-1]: t.content_hash
        for t in scan_library(donor_lib, DataLayout(donor_data).hash_cache_path).tracks
    }
    stores = [(cls(donor_data), cls(settings.data_dir)) for cls in (FeatureStore, NotesStore, LearnedStore)]
    filled = 0
    for t in scan_library(lib, DataLayout(settings.data_dir).hash_cache_path).tracks:
        style, number = t.relpath.split("/")[-1].rsplit("_", 1)
        src = donor.get(f"{style}_{int(number.split('.')[0]) % donor_n:06d}.wav")
        if src is None:
            continue
        for old, new in stores:
            target = Path(new.path(t.content_hash))
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.link(old.path(src), target)
        filled += 1
    return filled


def measure(n: int, seconds: float, workers: int, prefill_from: int | None = None) -> dict:
    """Everything for one N (run in a child process)."""
    import dagster as dg

    from music_pipeline.artifacts import remove_tree
    from music_pipeline.audio.scan import scan_library
    from music_pipeline.build.runner import run_build
    from music_pipeline.defs.resources import MusicPipelineResource
    from music_pipeline.defs.sensors import library_sensor
    from music_pipeline.layout import DataLayout
    from music_pipeline.search.discovery import Discovery
    from music_pipeline.settings import Settings
    from music_pipeline.synth import SR, styled_track

    lib = write_library(ROOT / f"lib-{n}", n, seconds)
    data = ROOT / f"data-{n}"
    remove_tree(data)
    (lib / "new").mkdir(exist_ok=True)
    for p in (lib / "new").glob("*.wav"):
        p.unlink()
    os.environ["DAGSTER_HOME"] = str((data / "dagster_home").resolve())
    settings = Settings(data_dir=data.resolve(), library_dir=lib.resolve(), workers=workers)
    layout = DataLayout(settings.data_dir)
    r: dict = {"n": n, "seconds_per_track": seconds, "workers": workers}

    t = time.perf_counter()
    scan_library(lib, layout.hash_cache_path)
    r["scan_hash_cold_s"] = time.perf_counter() - t
    t = time.perf_counter()
    scan_library(lib, layout.hash_cache_path)
    r["scan_hash_warm_s"] = time.perf_counter() - t

    if prefill_from and n > prefill_from:
        r["prefilled_from"] = prefill_from
        r["prefilled_tracks"] = prefill(settings, lib, prefill_from)
    t = time.perf_counter()
    full = run_build(settings, log=lambda *_: None)
    r["full_build_s"] = time.perf_counter() - t
    r["full_build_ok"] = full.ok
    instance = dg.DagsterInstance.get()
    r["steps"] = step_seconds(full.run_ids)

    t = time.perf_counter()
    noop = run_build(settings, log=lambda *_: None)
    r["noop_build_s"] = time.perf_counter() - t
    r["noop_runs"] = len(noop.run_ids)

    pipeline = MusicPipelineResource(
        data_dir=str(settings.data_dir), library_dir=str(settings.library_dir), workers=workers
    )

    def tick() -> float:
        ctx = dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline})
        t0 = time.perf_counter()
        library_sensor(ctx)
        return time.perf_counter() - t0

    r["sensor_tick_nothing_new_s"] = tick()
    import soundfile as sf

    new = lib / "new" / "new_track.wav"
    sf.write(new, styled_track("arpeggio", seconds, seed=999_999), SR, subtype="PCM_16")
    r["sensor_tick_one_new_s"] = tick()

    t = time.perf_counter()
    one = run_build(settings, log=lambda *_: None)
    found = Discovery.open(settings.data_dir).resolve("new_track")
    Discovery.open(settings.data_dir).similar(found, 5)
    r["one_new_file_searchable_s"] = time.perf_counter() - t
    r["one_new_file_steps"] = step_seconds(one.run_ids)
    r["one_new_file_ok"] = one.ok
    new.unlink()
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return r


# Dagster steps of a full build, in order: (step key, row label)
STEPS = [
    ("track_features", "track_features"),
    ("track_notes", "track_notes"),
    ("track_learned_embedding", "track_learned_embedding"),
    ("embeddings", "table refresh (embeddings)"),
    ("learned_embeddings", "learned_embeddings table"),
    ("difficulty", "difficulty (PDI)"),
    ("similarity_index", "similarity_index build"),
    ("label_similarity", "label_similarity"),
    ("track_genres", "track_genres"),
    ("difficulty_cnn", "difficulty_cnn"),
    ("genre_classifier", "genre_classifier"),
    ("genre_comparison", "genre_comparison"),
    ("embedding_map", "embedding_map"),
]
MODEL_STEPS = ("difficulty_cnn", "genre_classifier", "genre_comparison", "embedding_map")

ROWS = [
    ("scan + hash, cold", lambda r: r["scan_hash_cold_s"]),
    ("scan + hash, warm", lambda r: r["scan_hash_warm_s"]),
    ("full build", lambda r: r["full_build_s"]),
    *((f"  {label}", lambda r, key=key: r["steps"].get(key)) for key, label in STEPS),
    ("  all model steps", lambda r: sum(r["steps"].get(k, 0.0) for k in MODEL_STEPS)),
    ("no-op build", lambda r: r["noop_build_s"]),
    ("sensor tick, nothing new", lambda r: r["sensor_tick_nothing_new_s"]),
    ("sensor tick, one new file", lambda r: r["sensor_tick_one_new_s"]),
    ("one new file → searchable", lambda r: r["one_new_file_searchable_s"]),
    ("peak RSS (MB)", lambda r: r["peak_rss_mb"]),
]


def growth(sizes, values) -> float | None:
    """Slope of log(value) over log(N): 1 = linear, 0 = constant."""
    import numpy as np

    pts = [(s, v) for s, v in zip(sizes, values, strict=True) if v is not None and v > 0]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def report(results: list[dict]) -> None:
    sizes = [r["n"] for r in results]
    head = f"{'cost (s unless stated)':32s}" + "".join(f"{n:>11,d}" for n in sizes) + "   growth"
    print(head)
    print("-" * len(head))
    for name, get in ROWS:
        vals = [get(r) for r in results]
        cells = "".join(f"{v:>11.2f}" if v is not None else f"{'–':>11s}" for v in vals)
        # a per-track pass at a prefilled size only replays cached results: not part of its growth
        real = [
            None if r.get("prefilled_from") and name.strip() in PER_TRACK else v
            for r, v in zip(results, vals, strict=True)
        ]
        g = growth(sizes, real)
        print(f"{name:32s}{cells}   {'N^' + format(g, '.2f') if g is not None else ''}")
    pre = [f"N = {r['n']:,} from lib-{r['prefilled_from']:,}" for r in results if r.get("prefilled_from")]
    if pre:
        print("\nper-track results reused (--prefill-from; no per-track pass in the full build): " + ", ".join(pre))
    bad = [r["n"] for r in results if not (r["full_build_ok"] and r["one_new_file_ok"])]
    if bad:
        print(f"\nbuilds that reported a failure (see their logs): N = {bad}")


PER_TRACK = ("track_features", "track_notes", "track_learned_embedding")
DAY_TO_DAY = (
    "scan + hash, cold",
    "scan + hash, warm",
    "no-op build",
    "sensor tick, nothing new",
    "sensor tick, one new file",
    "one new file → searchable",
)


def plot(results: list[dict]) -> None:
    """Two panels: what a full build spends, and what a user pays day to day. At prefilled sizes
    the per-track passes only replay cached results (hollow markers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["n"] for r in results]
    prefilled = [bool(r.get("prefilled_from")) for r in results]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), sharex=True)
    colours = plt.get_cmap("tab20").colors
    panels = {0: [], 1: []}
    for name, get in ROWS:
        if name.startswith(("peak", "  all")):
            continue
        panels[1 if name in DAY_TO_DAY else 0].append((name.strip(), get))
    for ax, (panel, rows) in zip(axes, panels.items(), strict=True):
        for i, (name, get) in enumerate(rows):
            pts = [
                (n, get(r), pre)
                for n, r, pre in zip(sizes, results, prefilled, strict=True)
                if get(r) is not None and get(r) > 0
            ]
            if len(pts) < 2:
                continue
            style = {"color": colours[i % len(colours)], "linestyle": "-" if i < 10 else "--"}
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name, **style)
            for n, v, pre in pts:
                hollow = pre and name in PER_TRACK
                ax.plot(
                    [n], [v], marker="o", color=style["color"], markerfacecolor="white" if hollow else style["color"]
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tracks in the library")
        ax.set_ylabel("seconds")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, ncol=2 if panel == 0 else 1)
    axes[0].set_title("full build, by step (hollow: per-track results reused)", fontsize=10)
    axes[1].set_title("day to day: scan, no-op build, sensor, one new file", fontsize=10)
    fig.suptitle("bench_scale.py: cost against library size (2 workers, 4-s tracks)")
    fig.tight_layout()
    fig.savefig(OUT_PNG, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--with-100k", action="store_true", help="also N = 100,000 (hours; ~18 GB of WAV)")
    ap.add_argument(
        "--seconds", type=float, default=4.0, help="length of every track (short: extraction is not the point)"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--prefill-from",
        type=int,
        default=1000,
        metavar="N0",
        help="for sizes above N0 (default 1000; 0 = analyse every track): reuse lib-N0's per-track results "
        "(same style) instead of analysing every track; tables, index, models, no-op, sensor and one new "
        "file are still measured at N",
    )
    ap.add_argument("--fresh", action="store_true", help="forget sizes measured by earlier runs")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.seconds, args.workers, args.prefill_from)))
        return
    sizes = sorted(set(args.sizes + ([100_000] if args.with_100k else [])))
    # Sizes measured in earlier runs stay in the table (a 10k run takes long enough to run alone).
    kept = {r["n"]: r for r in json.loads(OUT_JSON.read_text())} if OUT_JSON.exists() and not args.fresh else {}
    for n in sizes:
        t = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(n),
                "--seconds",
                str(args.seconds),
                "--workers",
                str(args.workers),
            ]
            + ["--prefill-from", str(args.prefill_from)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            sys.exit(f"N={n} failed:\n{proc.stderr[-3000:]}")
        kept[n] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"N={n:,}: measured in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    results = [kept[n] for n in sorted(kept)]
    OUT_JSON.write_text(json.dumps(results, indent=1))
    report(results)
    plot(results)
    print(f"\nresults: {OUT_JSON}  curves: {OUT_PNG}")


if __name__ == "__main__":
    main()

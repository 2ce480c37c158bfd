"""What a build of real one-minute tracks costs, read from its own Dagster runs, against the 641-D
extraction alone (``music-pipeline embed`` on the same files) measured in the same run.

    python benchmarks/bench_ingest.py [--library DIR] [--tracks 138] [--seconds 60] [--workers N]

Cuts ``--tracks`` one-minute excerpts (Ogg Vorbis, as the sources) from the demo library's music
(``data/demo_library/debian`` unless ``--library``), builds them with ``run_build`` on a fresh
data directory and Dagster instance (models included), and prints: the ``ingest_tracks`` runs'
wall time and their steps, the ``rebuild_models`` run and its steps, the CPU time of the build
process and its workers (utilisation = CPU / (wall × cores) over the per-track step), the CPU and
wall time of ``music-pipeline embed`` on the same files, and the issue's ratios: the whole ingest
run ≤ 4× the extraction and the model steps together ≤ 3× it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import ORIGINAL_ENV, audio_files, step_seconds

from music_pipeline.audio.decode import decode


def make_excerpts(sources: list[Path], n: int, seconds: float, dest: Path) -> list[Path]:
    """``n`` distinct excerpts of ``seconds`` (consecutive, non-overlapping cuts of the sources in
    turn), written as Ogg Vorbis at the sources' analysis rate."""
    cuts = []
    for src in sources:
        audio = decode(src)
        step = int(seconds * audio.sr)
        cuts += [(src, audio.y[i : i + step], audio.sr) for i in range(0, len(audio.y) - step + 1, step)]
    if len(cuts) < n:
        raise SystemExit(f"only {len(cuts)} excerpts of {seconds:g} s in {len(sources)} files: ask for fewer")
    picked = [cuts[i] for i in np.random.default_rng(0).choice(len(cuts), n, replace=False)]
    out = []
    for i, (src, y, sr) in enumerate(picked):
        path = dest / src.parent.name / f"excerpt_{i:03d}.ogg"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, y, sr, format="OGG", subtype="VORBIS")
        out.append(path)
    return out


def cpu_seconds_of(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU seconds of ``cmd`` and everything it started)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=ORIGINAL_ENV)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library")
    ap.add_argument("--tracks", type=int, default=138)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--keep", action="store_true", help="keep the temporary library and data directory")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    lib, data = root / "lib", root / "data"
    files = make_excerpts(audio_files([], args.library), args.tracks, args.seconds, lib)
    audio_min = len(files) * args.seconds / 60
    print(f"{len(files)} excerpts of {args.seconds:g} s ({audio_min:.0f} min of audio) in {lib}")

    embed_wall, embed_cpu = cpu_seconds_of(
        [sys.executable, "-m", "music_pipeline.cli", "embed", *map(str, files), "--json"]
    )
    print(f"music-pipeline embed: {embed_wall:.1f} s wall, {embed_cpu:.1f} CPU-s")

    os.environ["DAGSTER_HOME"] = str((data / "dagster_home").resolve())
    from music_pipeline.build.runner import run_build
    from music_pipeline.settings import Settings

    settings = Settings.resolve(data, lib, workers=args.workers)
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    summary = run_build(settings, log=print)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum((a.ru_utime - b.ru_utime) + (a.ru_stime - b.ru_stime) for a, b in zip(after, before, strict=True))
    if not summary.ok:
        print("the build failed:", summary.failed)

    import dagster as dg

    instance = dg.DagsterInstance.get()
    runs = {r.run_id: r for r in instance.get_runs() if r.run_id in set(summary.run_ids)}
    by_job: dict[str, list[str]] = {}
    for rid, r in runs.items():
        by_job.setdefault(r.job_name, []).append(rid)

    def run_wall(ids) -> float:
        total = 0.0
        for rid in ids:
            stats = instance.get_run_stats(rid)
            total += (stats.end_time or 0) - (stats.start_time or 0)
        return total

    ingest = run_wall(by_job.get("ingest_tracks", []))
    models = run_wall(by_job.get("rebuild_models", []))
    ingest_steps = step_seconds(by_job.get("ingest_tracks", []), instance)
    model_steps = step_seconds(by_job.get("rebuild_models", []), instance)
    track_step = ingest_steps.get("track_features", 0.0)
    print(
        f"\nbuild: {wall:.0f} s wall, {cpu:.0f} CPU-s in all ({cpu / wall / args.workers:.0%} of {args.workers} cores)"
    )
    print(f"ingest_tracks: {ingest:.1f} s")
    for step, s in sorted(ingest_steps.items(), key=lambda kv: -kv[1]):
        print(f"  {step:<28} {s:7.1f} s")
    print(f"rebuild_models: {models:.1f} s")
    for step, s in sorted(model_steps.items(), key=lambda kv: -kv[1]):
        print(f"  {step:<28} {s:7.1f} s")
    print("\nratios (the issue's bars):")
    print(f"  ingest_tracks / embed wall     {ingest / embed_wall:5.2f}  (≤ 4)")
    print(f"  model steps / embed wall       {sum(model_steps.values()) / embed_wall:5.2f}  (≤ 3)")
    print(f"  track_features step / embed    {track_step / embed_wall:5.2f}  (all per-track passes run in it)")
    print(f"  embed: {audio_min * 60 / embed_cpu:.0f}× real time per CPU-second (≥ 200)")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"kept {root}")


if __name__ == "__main__":
    main()

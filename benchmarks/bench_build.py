"""A build through Dagster against calling the extraction directly on the same tracks.

    python benchmarks/bench_build.py [--tracks 100] [--seconds 60] [--library DIR] [--workers N]

Makes N distinct tracks (runs of 60 s chunks of the demo library's music, written as FLAC), then, each on a
fresh data directory and a fresh Dagster instance:
  direct: music_pipeline.features.extract.extract_many(jobs, workers)
  dagster: music-pipeline build's path (run_build): partitions registered, `ingest_tracks` over the
           range (extraction + tables + difficulty scores + similarity index), models excluded.
Prints both wall times and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import audio_files

from music_pipeline.audio.decode import decode


def make_tracks(sources: list[Path], n: int, seconds: float, dest: Path, chunk_s: float = 60.0) -> None:
    """n distinct tracks of ``seconds``: consecutive runs of 60 s chunks cut from the sources
    (track i = chunks i, i+1, … of the pooled chunk list), written as FLAC."""
    chunks = []
    for src in sources:
        y = decode(src).y
        step = int(chunk_s * 22050)
        chunks += [(src, y[i : i + step]) for i in range(0, len(y) - step + 1, step)]
    per_track = max(1, round(seconds / chunk_s))
    for i in range(n):
        parts = [chunks[(i + j) % len(chunks)] for j in range(per_track)]
        out = dest / parts[0][0].parent.name / f"{parts[0][0].stem}_{i:03d}.flac"
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, np.concatenate([c for _, c in parts]), 22050)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=180.0, help="length of each track (a typical song is ~3 min)")
    ap.add_argument("--library")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-build-"))
    lib = root / "lib"
    make_tracks(audio_files([], args.library), args.tracks, args.seconds, lib)

    import music_pipeline.definitions  # noqa: F401  (imports are not what is measured)
    from music_pipeline.audio.scan import scan_library
    from music_pipeline.features.extract import ExtractJob, extract_many, warm_up

    warm_up()

    scan = scan_library(lib)
    print(f"{len(scan.tracks)} tracks of {args.seconds:.0f} s, {args.workers} workers")
    jobs = [ExtractJob(t.key, t.path, t.relpath, t.content_hash, str(root / "direct")) for t in scan.tracks]
    t0 = time.perf_counter()
    outcomes = extract_many(jobs, workers=args.workers)
    direct = time.perf_counter() - t0
    assert all(o.ok for o in outcomes)

    import dagster as dg

    from music_pipeline.build.runner import run_build
    from music_pipeline.definitions import build_definitions
    from music_pipeline.defs.assets.features import TRACK_ASSETS
    from music_pipeline.defs.resources import MusicPipelineResource
    from music_pipeline.defs.sensors import RANGE_END, RANGE_START
    from music_pipeline.settings import Settings

    # (a) the extraction alone through Dagster: fresh instance, partitions registered, one batched run
    os.environ["DAGSTER_HOME"] = str(root / "home_a")
    (root / "home_a").mkdir()
    t0 = time.perf_counter()
    pipeline = MusicPipelineResource(data_dir=str(root / "dagster_a"), library_dir=str(lib), workers=args.workers)
    keys = [t.key for t in pipeline.scan().tracks]
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("tracks", keys)
    job = build_definitions(pipeline).resolve_job_def("ingest_tracks")
    result = job.execute_in_process(
        instance=instance,
        asset_selection=TRACK_ASSETS,
        tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    extraction_run = time.perf_counter() - t0
    assert result.success

    # (b) what `music-pipeline build` runs for new tracks: extraction + tables + scores + index
    os.environ["DAGSTER_HOME"] = str(root / "home_b")
    t0 = time.perf_counter()
    summary = run_build(Settings(root / "dagster_b", lib, args.workers), log=lambda *_: None, models=False)
    full_ingest = time.perf_counter() - t0
    assert summary.ok and summary.embedded == len(scan.tracks), summary.failed_assets

    instance = dg.DagsterInstance.get()
    print("  steps of the ingest run (b):")
    for run_id in summary.run_ids:
        for st in instance.get_run_step_stats(run_id):
            if st.end_time and st.start_time:
                print(f"    {st.step_key:45s} {st.end_time - st.start_time:6.2f} s")
    print(f"  direct extraction (extract_many):            {direct:7.1f} s")
    print(
        f"  (a) extraction as a Dagster run:             {extraction_run:7.1f} s   ratio {extraction_run / direct:.2f}x"
    )
    print(f"  (b) build: extraction + tables/scores/index: {full_ingest:7.1f} s   ratio {full_ingest / direct:.2f}x")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

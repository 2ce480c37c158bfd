"""Worker processes against threads for the per-track pass (what extract_many should use).

    python benchmarks/bench_parallel.py [--library DIR] [--limit 20] [--workers 2]

Both extract the same files into fresh stores with the same number of workers; the serial run
in this process is the baseline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import audio_files

from music_pipeline.audio.scan import content_hash, track_key
from music_pipeline.features.extract import ExtractJob, extract_many, run_job, warm_up


def jobs_for(files: list[Path], data: Path) -> list[ExtractJob]:
    return [ExtractJob(track_key(f.name), str(f), f.name, content_hash(f), str(data)) for f in files]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    files = audio_files([], args.library)[: args.limit]
    warm_up()
    root = Path(tempfile.mkdtemp())

    t0 = time.perf_counter()
    for job in jobs_for(files, root / "serial"):
        run_job(job)
    serial = time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(run_job, jobs_for(files, root / "threads")))
    threads = time.perf_counter() - t0

    t0 = time.perf_counter()
    extract_many(jobs_for(files, root / "processes"), workers=args.workers)
    processes = time.perf_counter() - t0

    print(f"{len(files)} files, {args.workers} workers")
    print(f"  serial (1 process):      {serial:6.1f} s")
    print(f"  threads:                 {threads:6.1f} s  speed-up {serial / threads:.2f}x")
    print(f"  processes (extract_many): {processes:6.1f} s  speed-up {serial / processes:.2f}x")


if __name__ == "__main__":
    main()

"""Shared helpers for the benchmark scripts."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# the caller's environment, for benchmarks that run a command as a user would
ORIGINAL_ENV = dict(os.environ)

# one thread for BLAS/OpenMP before numpy loads: the figures are per core
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from music_pipeline.audio.scan import AUDIO_EXTENSIONS

DEMO = Path("data/demo_library/debian")


def audio_files(args_files: list[str], library: str | None) -> list[Path]:
    if args_files:
        return [Path(f) for f in args_files]
    root = Path(library) if library else DEMO
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        sys.exit(f"no audio under {root}: run `music-pipeline demo` first or pass files / --library")
    return files


def step_seconds(run_ids, instance=None) -> dict[str, float]:
    """Seconds per step over Dagster runs, from the instance's own step stats (default: the
    instance DAGSTER_HOME points at)."""
    import dagster as dg

    instance = instance or dg.DagsterInstance.get()
    out: dict[str, float] = {}
    for rid in run_ids:
        for st in instance.get_run_step_stats(rid):
            if st.start_time and st.end_time:
                out[st.step_key] = out.get(st.step_key, 0.0) + st.end_time - st.start_time
    return out

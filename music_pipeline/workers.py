"""Per-track work in spawned worker processes, where one bad file fails only itself.

Every per-track pass (features, notes, the learned embedding) answers cached and known-broken
tracks itself and hands the rest here: ``run_pending(jobs, pending, work, ...)``.

- **How many workers**: one per ``audio_seconds_per_worker`` of pending audio (a worker's start —
  interpreter, imports, warm caches — costs about as much CPU as analysing that much), at least one
  and at most ``workers``. ``workers <= 1`` or a single pending track runs in this process.
- **Warm before work**: ``warm`` (a module-level function) runs in each worker before it takes a
  track; with ``warm_parent`` once here first, so kernels compiled to numba's cache are compiled
  once, not by several workers at the same moment (which can corrupt that cache).
- **Crash isolation**: a worker that dies (a decoder segfault, the OOM killer) breaks the pool;
  every unfinished track is then run alone in a fresh process, so only the culprit fails —
  ``crashed(job)`` records and returns its outcome.
- **A program whose workers cannot start** (a script without ``if __name__ == "__main__":``,
  whose spawned children re-run it) raises ``WorkersCannotStart`` instead of blaming every file.

Workers run one BLAS/OpenMP thread each (the pool is the parallelism). ``work``, ``warm`` and the
jobs must be picklable (module-level functions, dataclasses). Nothing here imports Dagster.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

# Starting a worker costs about as much CPU as analysing this many seconds of audio.
AUDIO_SECONDS_PER_WORKER = 300.0
_HEADER_FORMATS = {".wav", ".wave", ".flac", ".aiff", ".aif", ".aifc"}  # exact duration from the header
_LOSSY_BYTES_PER_SECOND = 20_000.0  # ~160 kbit/s: a rough duration for compressed files, enough to size a pool
# BLAS/OpenMP and TensorFlow's per-op threads: the pool is the parallelism
_ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
}


class WorkersCannotStart(RuntimeError):
    """Spawned worker processes die before doing any work: a problem of the program, not a file."""


UNGUARDED = (
    "worker processes exit before doing any work; a script that calls extract_many, transcribe_many, "
    'embed_many or run_build must guard its top level with `if __name__ == "__main__":`'
)


def refuse_in_bootstrap() -> None:
    """Raise ``WorkersCannotStart`` in a spawned child that is re-importing an unguarded script
    (multiprocessing's own test for its bootstrapping phase), before it writes anything."""
    if getattr(mp.current_process(), "_inheriting", False):
        raise WorkersCannotStart(UNGUARDED)


def estimated_audio_seconds(path: str) -> float:
    """Duration of a file for planning work: exact from the header where that is cheap, else from its size."""
    try:
        if Path(path).suffix.lower() in _HEADER_FORMATS:
            import soundfile

            return float(soundfile.info(path).duration)
        return os.path.getsize(path) / _LOSSY_BYTES_PER_SECOND
    except (OSError, RuntimeError):
        return 0.0


def pool_size(paths: Sequence[str], workers: int, audio_seconds_per_worker: float = AUDIO_SECONDS_PER_WORKER) -> int:
    """Workers that repay their start-up: one per ``audio_seconds_per_worker`` of audio, at least
    one (a crashing decoder then still only takes its own track down), at most ``workers``."""
    audio_s = sum(estimated_audio_seconds(p) for p in paths)
    return max(1, min(workers, len(paths), int(audio_s // audio_seconds_per_worker)))


def _pool(workers: int, warm: Callable[[], None] | None) -> ProcessPoolExecutor:
    saved = {k: os.environ.get(k) for k in _ONE_THREAD}
    os.environ.update(_ONE_THREAD)  # spawned children read these at start-up, before numpy loads
    try:
        return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=warm)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_in_pool(jobs, indices, workers, work, warm, done) -> list[int]:
    """Run ``indices`` in a spawned pool; returns the ones left unfinished because the pool broke."""
    pool = _pool(min(workers, len(indices)), warm)
    unfinished = []
    with pool:
        futures = {pool.submit(work, jobs[i]): i for i in indices}
        for fut in as_completed(futures):
            try:
                done(futures[fut], fut.result())
            except BrokenProcessPool:
                unfinished.append(futures[fut])
    return sorted(unfinished)


def _worker_alive() -> bool:
    return True


def workers_can_start() -> bool:
    """Start one fresh worker with nothing to do: tells a broken program from a crashing file."""
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
            return bool(pool.submit(_worker_alive).result(timeout=300))
    except Exception:  # noqa: BLE001 - whatever stops a worker from starting is the answer
        return False


def run_pending(
    jobs: Sequence[Any],
    pending: Sequence[int],
    work: Callable[[Any], Any],
    done: Callable[[int, Any], None],
    crashed: Callable[[Any], Any],
    workers: int = 1,
    warm: Callable[[], None] | None = None,
    warm_parent: bool = False,
    audio_seconds_per_worker: float = AUDIO_SECONDS_PER_WORKER,
) -> None:
    """Run ``work(jobs[i])`` for each ``i`` in ``pending`` and hand each outcome to ``done(i, outcome)``.
    Each job needs a ``path`` (to size the pool). ``crashed(job)`` gives the outcome of a job whose
    process died even when run alone."""
    refuse_in_bootstrap()
    pending = list(pending)
    if not pending:
        return
    if workers <= 1 or len(pending) <= 1:
        for i in pending:
            done(i, work(jobs[i]))
        return
    if warm is not None and warm_parent:
        warm()
    n = pool_size([jobs[i].path for i in pending], workers, audio_seconds_per_worker)
    broken = _run_in_pool(jobs, pending, n, work, warm, done)
    if broken and not workers_can_start():
        # e.g. a script without `if __name__ == "__main__":`: blaming every file would record
        # failures that no change of content could clear
        raise WorkersCannotStart(UNGUARDED)
    # Every unfinished track is a suspect: each alone in its own process, so only the culprit fails.
    for i in broken:
        if _run_in_pool(jobs, [i], 1, work, warm, done):
            done(i, crashed(jobs[i]))

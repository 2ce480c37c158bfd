"""Fault injection for the crash-isolation test, kept out of the package: a stand-in for
``extract.run_job`` that kills its worker process with SIGSEGV, the way a decoder crashing on a
file would, when the track's path contains ``crash_me``. The test monkeypatches
``extract.run_job`` with it; the spawned workers import this module by name and get it too."""

import multiprocessing as mp
import os
import signal

from music_pipeline import analysis
from music_pipeline.features import extract

_real_run_job = extract.run_job  # captured before any monkeypatch (also in each spawned worker)
_real_analyse_track = analysis.analyse_track


def crashing_run_job(job, retry_failed=False):
    if "crash_me" in job.path and mp.parent_process() is not None:
        os.kill(os.getpid(), signal.SIGSEGV)
    return _real_run_job(job, retry_failed)


def crashing_analyse_track(job):
    """The same fault for ``analysis.analyse_track`` (every per-track pass on one decode)."""
    if "crash_me" in job.path and mp.parent_process() is not None:
        os.kill(os.getpid(), signal.SIGSEGV)
    return _real_analyse_track(job)

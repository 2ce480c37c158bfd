"""Which executor runs the steps: multiprocess on a laptop, Celery workers when scaled out.

MUSIC_PIPELINE_EXECUTOR=multiprocess (default) | in_process | celery
MUSIC_PIPELINE_CELERY_BROKER / MUSIC_PIPELINE_CELERY_BACKEND: e.g. redis://127.0.0.1:6379/0
"""

import os

import dagster as dg

from music_pipeline.settings import default_workers

ENV_EXECUTOR = "MUSIC_PIPELINE_EXECUTOR"


def executor_from_env() -> dg.ExecutorDefinition:
    kind = os.environ.get(ENV_EXECUTOR, "multiprocess").strip().lower()
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "celery":
        from dagster_celery import celery_executor

        broker = os.environ.get("MUSIC_PIPELINE_CELERY_BROKER", "redis://127.0.0.1:6379/0")
        backend = os.environ.get("MUSIC_PIPELINE_CELERY_BACKEND", broker)
        return celery_executor.configured({"broker": broker, "backend": backend})
    if kind != "multiprocess":
        raise ValueError(f"{ENV_EXECUTOR}={kind!r}: expected multiprocess, in_process or celery")
    # the track step already fans out over worker processes; more parallel steps than cores only thrash
    return dg.multiprocess_executor.configured({"max_concurrent": default_workers()})


def ingest_executor() -> dg.ExecutorDefinition | None:
    """The ingest job's steps are light except the track step, which parallelises itself: running
    them in one process saves a Python start-up and code load per step (seconds each), which is
    most of the time between dropping a file into the library and finding it. Scaled out, the
    environment's distributed executor is used as for every job."""
    kind = os.environ.get(ENV_EXECUTOR, "multiprocess").strip().lower()
    return None if kind == "celery" else dg.in_process_executor

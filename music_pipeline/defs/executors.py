"""Which executor runs the steps: multiprocess on a laptop, Celery workers when scaled out.

The choice and the Celery URLs are settings (``settings.executor_kind``, ``settings.celery_urls``).
"""

import dagster as dg

from music_pipeline.settings import celery_urls, default_workers, executor_kind


def executor_from_env() -> dg.ExecutorDefinition:
    kind = executor_kind()
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "celery":
        from dagster_celery import celery_executor

        broker, backend = celery_urls()
        return celery_executor.configured({"broker": broker, "backend": backend})
    # the track step already fans out over worker processes; more parallel steps than cores only thrash
    return dg.multiprocess_executor.configured({"max_concurrent": default_workers()})


def ingest_executor() -> dg.ExecutorDefinition | None:
    """The ingest job's steps are light except the track step, which parallelises itself: running
    them in one process saves a Python start-up and code load per step (seconds each), which is
    most of the time between dropping a file into the library and finding it. Scaled out, the
    environment's distributed executor is used as for every job."""
    return None if executor_kind() == "celery" else dg.in_process_executor

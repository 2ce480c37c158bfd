"""Jobs a user launches by name, and the nightly schedule of the expensive models.

Which assets go where is derived from the assets themselves, so a new asset lands in the right
job without editing this file:
- ingest_tracks: the per-track assets, the library scan, and every library-level asset with an
  AutomationCondition (cheap ones that follow new tracks: tables, difficulty scores, the index).
- rebuild_models: library-level assets without one (models and maps: CNN, classifier, UMAP).
- full_rebuild: everything.
"""

import dagster as dg

from music_pipeline import settings
from music_pipeline.defs.executors import ingest_executor
from music_pipeline.defs.resources import MusicPipelineResource

LIBRARY_SCAN = dg.AssetKey("library_manifest")
# Transient failures (a worker killed, a locked database) are retried once as a whole run.
RUN_RETRY_TAGS = {"dagster/max_retries": "1", "dagster/retry_strategy": "FROM_FAILURE"}


def split_library_assets(assets) -> tuple[list[dg.AssetKey], list[dg.AssetKey]]:
    """(follow-new-tracks, rebuild-on-schedule) keys of the unpartitioned assets."""
    follow, models = [LIBRARY_SCAN], []
    for a in assets:
        for spec in a.specs:
            if spec.partitions_def is not None or spec.key == LIBRARY_SCAN:
                continue
            (follow if spec.automation_condition is not None else models).append(spec.key)
    return follow, models


def track_asset_keys(assets) -> list[dg.AssetKey]:
    """Keys of every per-track (partitioned by track or bucket) asset: features, notes, learned embedding, …"""
    return [spec.key for a in assets for spec in a.specs if spec.partitions_def is not None]


def build_jobs(assets):
    follow, models = split_library_assets(assets)
    ingest = dg.define_asset_job(
        "ingest_tracks",
        selection=dg.AssetSelection.assets(*track_asset_keys(assets), *follow),
        description="Extract new/changed tracks (a range of track or bucket partitions per run) and refresh the tables, difficulty scores and similarity index.",
        tags={"music_pipeline/job": "ingest", **RUN_RETRY_TAGS},
        executor_def=ingest_executor(),
    )
    rebuild = dg.define_asset_job(
        "rebuild_models",
        selection=dg.AssetSelection.assets(*models),
        description="Retrain the expensive library models (difficulty CNN, genre classifier and comparators, UMAP map).",
        tags={"music_pipeline/job": "models", **RUN_RETRY_TAGS},
    )
    full = dg.define_asset_job(
        "full_rebuild",
        selection=dg.AssetSelection.all(),
        description="Every asset; launched over all per-track partitions (tracks or buckets) it becomes a batched backfill.",
        tags={"music_pipeline/job": "full", **RUN_RETRY_TAGS},
    )

    @dg.schedule(
        name="nightly_rebuild",
        job=rebuild,
        cron_schedule=settings.rebuild_cron(),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Rebuilds the models on a cron schedule (env {settings.ENV_REBUILD_CRON}, default '{settings.DEFAULT_REBUILD_CRON}'); "
        "skips, saying why, while the library has never been built.",
    )
    def nightly(context: dg.ScheduleEvaluationContext, pipeline: MusicPipelineResource):
        # a never-built data directory has nothing to train on: a red run every night would say less
        tables = pipeline.layout.embeddings_path
        if not tables.exists():
            return dg.SkipReason(
                f"nothing to train yet: {tables} does not exist (the library was never built; run `music-pipeline build` or let the sensor ingest it)"
            )
        return dg.RunRequest(tags={"music_pipeline/trigger": "nightly_rebuild"})

    return [ingest, rebuild, full], [nightly]

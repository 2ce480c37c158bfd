"""The one place that assembles the Dagster definitions (loaded by workspace.yaml / `dagster dev`)."""

import dagster as dg

from music_pipeline.defs.assets import (
    difficulty,
    discovery,
    features,
    genre,
    identity,
    learned,
    library,
    listening,
    notes,
)
from music_pipeline.defs.executors import executor_from_env
from music_pipeline.defs.jobs import build_jobs, track_asset_keys
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.sensors import build_library_sensor, library_automation, reports_index
from music_pipeline.settings import enable_event_batching

ASSET_MODULES = [library, features, notes, learned, identity, difficulty, discovery, genre, listening]

# runs of this code location store their per-track asset events in batches (see event_log.py)
enable_event_batching()


def build_definitions(pipeline: MusicPipelineResource | None = None) -> dg.Definitions:
    pipeline = pipeline or MusicPipelineResource()
    # per track or hash buckets (MUSIC_PIPELINE_PARTITIONS): decided here, once, for every per-track asset
    partitioning = pipeline.partitioning
    assets = partitioning.apply([a for m in ASSET_MODULES for a in dg.load_assets_from_modules([m])])
    checks = [c for m in ASSET_MODULES for c in dg.load_asset_checks_from_modules([m])]
    jobs, schedules = build_jobs(assets)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        schedules=schedules,
        sensors=[build_library_sensor(partitioning, track_asset_keys(assets)), library_automation, reports_index],
        executor=executor_from_env(),
        resources={"pipeline": pipeline},
    )


defs = build_definitions()

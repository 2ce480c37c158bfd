"""The one place that assembles the Dagster definitions (loaded by workspace.yaml / `dagster dev`)."""

from __future__ import annotations

import dagster as dg

from music_pipeline.defs.assets import features, library
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.sensors import library_sensor

ASSET_MODULES = [library, features]


def build_definitions(pipeline: MusicPipelineResource | None = None) -> dg.Definitions:
    assets = [a for m in ASSET_MODULES for a in dg.load_assets_from_modules([m])]
    checks = [c for m in ASSET_MODULES for c in dg.load_asset_checks_from_modules([m])]
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        sensors=[library_sensor],
        resources={"pipeline": pipeline or MusicPipelineResource()},
    )


defs = build_definitions()

"""Which library models a run retrains, and why (the core rule is ``models/staleness.py``).

- ``music-pipeline build`` retrains only stale models (``stale_models``) and records on every model
  it leaves alone an observation saying why (``record_kept``); ``build --retrain`` retrains all.
- ``nightly_rebuild`` (the schedule) and a launch of ``rebuild_models`` from the UI retrain all:
  the schedule is one of the reasons a model is retrained.
- A model asset calls ``retraining_metadata`` before it trains (the metadata says why) and
  ``record_trained`` after, so the next build can tell what changed since.
"""

import dagster as dg

from music_pipeline.layout import DataLayout
from music_pipeline.models.staleness import record_training, verdict
from music_pipeline.settings import retrain_share

RETRAIN_TAG = "music_pipeline/retrain"  # "forced" (build --retrain) or "stale" (what build chose)


def _code_version(context: dg.AssetExecutionContext) -> str:
    return str(context.assets_def.code_versions_by_key.get(context.asset_key) or "")


def retraining_metadata(context: dg.AssetExecutionContext, layout: DataLayout) -> dict:
    """Why this run retrains the model, for its materialization's metadata."""
    model = context.asset_key.to_user_string()
    v = verdict(layout, model, _code_version(context))
    tags = context.run.tags
    if v.stale:
        why = v.why
    elif tags.get(RETRAIN_TAG) == "forced":
        why = f"forced (build --retrain); otherwise {v.why}"
    elif tags.get("dagster/schedule_name"):
        why = f"scheduled ({tags['dagster/schedule_name']}); otherwise {v.why}"
    else:
        why = f"launched by hand; otherwise {v.why}"
    return {"retrained": True, "retrained_because": why, "tracks_changed_since_last_training": v.changed}


def record_trained(context: dg.AssetExecutionContext, layout: DataLayout) -> None:
    """What the model was just trained on, for the next staleness verdict."""
    record_training(layout, context.asset_key.to_user_string(), _code_version(context))


def stale_models(
    defs: dg.Definitions, model_keys: list[dg.AssetKey], layout: DataLayout
) -> tuple[list[dg.AssetKey], dict]:
    """(stale keys, {key: Verdict}) for the library models of ``defs``."""
    versions = {spec.key: str(spec.code_version or "") for a in defs.assets for spec in a.specs}
    share = retrain_share()
    verdicts = {k: verdict(layout, k.to_user_string(), versions.get(k, ""), share) for k in model_keys}
    return [k for k in model_keys if verdicts[k].stale], verdicts


def record_kept(instance: dg.DagsterInstance, key: dg.AssetKey, v) -> None:
    """An observation on a model the build did not retrain, with the reason (visible in the UI)."""
    instance.report_runless_asset_event(
        dg.AssetObservation(
            asset_key=key,
            metadata={"retrained": False, "why": v.why, **{k: x for k, x in v.to_metadata().items() if k != "why"}},
        )
    )

"""Run the pipeline through Dagster from Python (what `music-pipeline build` does).

Runs are recorded in the Dagster instance at DAGSTER_HOME (default ``<data>/dagster_home``), so
``dagster dev`` / ``music-pipeline ui`` shows them with their partitions and metadata.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd
from filelock import FileLock, Timeout

from music_pipeline.audio.sync import plan_sync
from music_pipeline.defs.partitions import tracks_partitions
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.jobs import split_library_assets, track_asset_keys
from music_pipeline.defs.sensors import RANGE_END, RANGE_START
from music_pipeline.settings import Settings
from music_pipeline.storage import DataLayout, ensure_dir, read_parquet

DAGSTER_YAML = Path(__file__).with_name("dagster.yaml")


class BuildLocked(RuntimeError):
    pass


@dataclass
class BuildSummary:
    tracks: int
    extracted_runs: int
    embedded: int
    skipped: pd.DataFrame
    failed_assets: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed_assets


def ensure_dagster_home(settings: Settings) -> Path:
    """Point DAGSTER_HOME at the data directory's instance (unless the user set one) and give it
    the shipped dagster.yaml on first use."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists() and DAGSTER_YAML.exists():
        cfg.write_text(DAGSTER_YAML.read_text())
    return home


def data_dir_lock(settings: Settings) -> FileLock:
    # serialises builds from this host; on a shared object store the run queue is the guard
    ensure_dir(settings.data_dir)
    return FileLock(str(DataLayout(settings.data_dir).lock_path))


def run_build(settings: Settings, wait_for_lock_s: float = 0.0, log=print, models: bool = True) -> BuildSummary:
    """Register partitions for the library, run `ingest_tracks` over batched ranges of new/changed
    tracks, then `rebuild_models` (unless ``models`` is false). When nothing changed and every
    asset has been materialized before, nothing runs. Holds an exclusive lock on the data directory."""
    from music_pipeline.definitions import build_definitions

    ensure_dagster_home(settings)
    lock = data_dir_lock(settings)
    try:
        lock.acquire(timeout=wait_for_lock_s)
    except Timeout:
        raise BuildLocked(
            f"another build is running on {settings.data_dir} (lock {lock.lock_file}); "
            "wait for it to finish or use another --data directory"
        ) from None
    try:
        return _run_build_locked(settings, build_definitions, log, models)
    finally:
        lock.release()


def _never_materialized(instance, keys) -> list:
    return [k for k in keys if instance.get_latest_materialization_event(k) is None]


def _failures(result) -> list[str]:
    out = []
    for ev in result.all_events:
        if ev.is_step_failure:
            err = ev.event_specific_data.error if ev.event_specific_data else None
            out.append(f"{ev.step_key}: {err.message.strip().splitlines()[0] if err else 'failed'}")
    return out


def _run_build_locked(settings: Settings, build_definitions, log, models: bool) -> BuildSummary:
    pipeline = MusicPipelineResource(data_dir=str(settings.data_dir), library_dir=str(settings.require_library()), workers=settings.workers)
    defs = build_definitions(pipeline)
    ingest, rebuild = defs.resolve_job_def("ingest_tracks"), defs.resolve_job_def("rebuild_models")
    follow, model_keys = split_library_assets(defs.assets)
    track_keys = track_asset_keys(defs.assets)
    instance = dg.DagsterInstance.get()
    scan = pipeline.scan()
    store = pipeline.store
    registered = list(instance.get_dynamic_partitions(tracks_partitions.name))
    analysed = store.analysed_hashes()
    plan = plan_sync(scan, registered, lambda t: bool(t.content_hash) and t.content_hash not in analysed)
    for key in plan.to_remove:
        instance.delete_dynamic_partition(tracks_partitions.name, key)
    if plan.to_add:
        instance.add_dynamic_partitions(tracks_partitions.name, plan.to_add)
    log(f"library {settings.library_dir}: {len(scan.tracks)} tracks (+{len(plan.to_add)} new, -{len(plan.to_remove)} removed, {len(plan.to_run)} to analyse)")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the CLI prints its own summary
    tags = {"music_pipeline/trigger": "cli build"}
    failed, run_ids = [], []

    def run(job, **kwargs):
        result = job.execute_in_process(run_config=quiet, instance=instance, raise_on_error=False, **kwargs)
        run_ids.append(result.run_id)
        failed.extend(_failures(result))

    for n, (start, end) in enumerate(plan.ranges, 1):
        # every batch extracts its tracks; only the last also refreshes the library-wide tables,
        # scores and index, which would otherwise be rebuilt once per 500 tracks
        selection = None if n == len(plan.ranges) else track_keys
        run(ingest, asset_selection=selection, tags={**tags, RANGE_START: start, RANGE_END: end})
    if not plan.ranges and (plan.changed or _never_materialized(instance, follow)):
        run(ingest, asset_selection=follow, tags=tags)
    if models and model_keys and (plan.changed or _never_materialized(instance, model_keys)):
        log("training the library models (difficulty CNN, genre classifier, maps) …")
        run(rebuild, tags=tags)
    layout = pipeline.layout
    skipped = read_parquet(layout.skipped_path) if layout.skipped_path.exists() else pd.DataFrame(columns=["relpath", "reason"])
    embedded = len(read_parquet(layout.embeddings_path, columns=["key"])) if layout.embeddings_path.exists() else 0
    return BuildSummary(len(scan.tracks), len(plan.ranges), embedded, skipped, failed, run_ids)

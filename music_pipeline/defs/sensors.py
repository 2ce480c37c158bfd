"""library_sensor: keep the `tracks` partitions in step with the folder and request extraction."""


import hashlib
import json

import dagster as dg

from music_pipeline.audio.sync import SyncPlan, plan_sync
from music_pipeline.defs.partitions import tracks_partitions
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.settings import LibraryNotGiven, LibraryUnavailable

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
LIBRARY_ASSETS = [dg.AssetKey("library_manifest"), dg.AssetKey("embeddings")]
BATCH_SIZE = 500


def run_requests_for(plan: SyncPlan, hashes: dict[str, str | None], trigger: str) -> list[dg.RunRequest]:
    """One batched range run per contiguous block of tracks to (re-)extract, plus one run of the
    library tables when tracks were only removed (so they leave every table)."""
    requests = []
    for start, end in plan.ranges:
        ident = hashlib.sha1(json.dumps([start, end, [hashes.get(k) for k in plan.to_run]]).encode()).hexdigest()[:16]
        requests.append(dg.RunRequest(run_key=f"tracks:{ident}", tags={RANGE_START: start, RANGE_END: end, "music_pipeline/trigger": trigger}))
    if plan.to_remove and not plan.ranges:
        ident = hashlib.sha1(json.dumps(sorted(plan.to_remove)).encode()).hexdigest()[:16]
        requests.append(dg.RunRequest(run_key=f"removed:{ident}", asset_selection=LIBRARY_ASSETS, tags={"music_pipeline/trigger": trigger}))
    return requests


# Evaluates the assets' AutomationConditions (eager tables, scores and index). The ingest runs
# already refresh those in the same run, which eager's "updated by a run that targeted me" rule
# ignores; this sensor acts when track partitions are materialized some other way (a backfill of
# track_features from the UI, a CLI run of the per-track assets), once all of them are done.
library_automation = dg.AutomationConditionSensorDefinition(
    "library_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Materializes the library tables, difficulty scores and similarity index (AutomationCondition.eager) after track partitions change outside an ingest run.",
)


@dg.sensor(
    name="library_sensor",
    job_name="ingest_tracks",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Scans the library: adds a `tracks` partition for each new file, removes partitions of "
        "deleted files, and launches `ingest_tracks` over batched partition ranges (not one run "
        "per file) for new tracks and tracks whose content changed; that run also refreshes the "
        "tables, difficulty scores and similarity index. Unchanged files cost a stat, not a read."
    ),
)
def library_sensor(context: dg.SensorEvaluationContext, pipeline: MusicPipelineResource):
    try:
        scan = pipeline.scan()
    except (LibraryUnavailable, LibraryNotGiven) as exc:
        # a missing or unmounted library is a state to explain, not a failed tick every 15 s
        return dg.SkipReason(f"waiting for the library: {exc}")
    hashes = {t.key: t.content_hash for t in scan.tracks}
    # cursor: {key: hash} requested but maybe not finished, so an in-flight run is not requested twice
    requested: dict[str, str] = json.loads(context.cursor) if context.cursor else {}

    analysed = pipeline.analysed_hashes()  # one listing per store, not a file check per track

    def needs_run(t) -> bool:
        if not t.content_hash or t.content_hash in analysed:
            return False
        return requested.get(t.key) != t.content_hash

    registered = list(context.instance.get_dynamic_partitions(tracks_partitions.name))
    plan = plan_sync(scan, registered, needs_run, BATCH_SIZE)
    pending = {k: h for k, h in requested.items() if hashes.get(k) == h and h not in analysed}
    pending.update({k: hashes[k] or "" for k in plan.to_run})
    context.update_cursor(json.dumps(pending, sort_keys=True))
    if not plan.changed:
        return dg.SkipReason(f"{len(scan.tracks)} tracks, nothing new, changed or removed")
    context.log.info(f"library: +{len(plan.to_add)} new, -{len(plan.to_remove)} removed, {len(plan.to_run)} to extract in {len(plan.ranges)} run(s)")
    dynamic = []
    if plan.to_add:
        dynamic.append(tracks_partitions.build_add_request(plan.to_add))
    if plan.to_remove:
        dynamic.append(tracks_partitions.build_delete_request(plan.to_remove))
    return dg.SensorResult(run_requests=run_requests_for(plan, hashes, "library_sensor"), dynamic_partitions_requests=dynamic)


@dg.run_status_sensor(
    name="reports_index",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitor_all_code_locations=False,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "After a successful run, renders every Markdown report in `<data>/reports/` as HTML and "
        "rewrites `<data>/reports/index.html`, the page that links reports, maps and plots."
    ),
)
def reports_index(context: dg.RunStatusSensorContext, pipeline: MusicPipelineResource):
    from music_pipeline.reports import write_reports

    layout = pipeline.layout
    if not layout.reports_dir.exists() and not layout.embeddings_path.exists():
        return dg.SkipReason(f"nothing built in {layout.root} yet")
    index = write_reports(layout.root)
    return dg.SkipReason(f"reports refreshed after run {context.dagster_run.run_id[:8]}: {index}")

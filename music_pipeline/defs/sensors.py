"""library_sensor: keep the per-track partitions in step with the folder and request extraction."""

import hashlib
import json

import dagster as dg

from music_pipeline.audio.sync import SyncPlan
from music_pipeline.defs.partitions import TRACK_BATCH, Partitioning, known_track_keys, plan_partitions
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.settings import LibraryNotGiven, LibraryUnavailable

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
LIBRARY_ASSETS = [dg.AssetKey("library_manifest"), dg.AssetKey("embeddings")]


def _ident(value) -> str:
    return hashlib.sha1(json.dumps(value).encode()).hexdigest()[:16]


def run_requests_for(
    plan: SyncPlan, hashes: dict[str, str | None], trigger: str, kind: str = "tracks", removal: bool = True
) -> list[dg.RunRequest]:
    """One batched range run per block of tracks (or buckets) to (re-)extract, plus one run of the
    library tables when tracks were only removed (so they leave every table)."""
    requests = []
    # the content of everything to run, digested once: per range it made the tick O(N²) (1M tracks: hours)
    content = _ident([hashes.get(k) for k in plan.to_run]) if plan.ranges else ""
    for start, end in plan.ranges:
        ident = _ident([start, end, content])
        requests.append(
            dg.RunRequest(
                run_key=f"{kind}:{ident}", tags={RANGE_START: start, RANGE_END: end, "music_pipeline/trigger": trigger}
            )
        )
    if removal and plan.to_remove and not plan.ranges:
        ident = _ident(sorted(plan.to_remove))
        requests.append(
            dg.RunRequest(
                run_key=f"removed:{ident}", asset_selection=LIBRARY_ASSETS, tags={"music_pipeline/trigger": trigger}
            )
        )
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


def _track_tick(context: dg.SensorEvaluationContext, scan, hashes: dict, analysed: set[str]):
    """Per track: register new partitions, drop removed ones, range runs over the new/changed."""
    # cursor: {key: hash} requested but maybe not finished, so an in-flight run is not requested twice
    requested: dict[str, str] = json.loads(context.cursor) if context.cursor else {}

    def needs_run(t) -> bool:
        if not t.content_hash or t.content_hash in analysed:
            return False
        return requested.get(t.key) != t.content_hash

    planned = plan_partitions(context.instance, Partitioning(), scan, needs_run, [])
    plan = planned.sync
    pending = {k: h for k, h in requested.items() if hashes.get(k) == h and h not in analysed}
    pending.update({k: hashes[k] or "" for k in plan.to_run})
    context.update_cursor(json.dumps(pending, sort_keys=True))
    if not plan.changed:
        return dg.SkipReason(f"{len(scan.tracks)} tracks, nothing new, changed or removed")
    context.log.info(
        f"library: +{len(plan.to_add)} new, -{len(plan.to_remove)} removed, {len(plan.to_run)} to extract in {len(plan.ranges)} run(s)"
    )
    return dg.SensorResult(
        run_requests=run_requests_for(plan, hashes, "library_sensor"),
        dynamic_partitions_requests=planned.dynamic_requests(),
    )


def _bucket_tick(
    context: dg.SensorEvaluationContext,
    pipeline: MusicPipelineResource,
    partitioning: Partitioning,
    track_keys,
    scan,
    hashes: dict,
    analysed: set[str],
):
    """Per bucket: nothing to register; the library manifest of the last ingest is the list of
    known tracks. Runs cover the buckets holding new/changed tracks, plus buckets with tracks
    that were never materialized (the first ingest, a switch from per-track mode)."""
    # cursor: {"pending": {key: hash} requested, "buckets": requested, not yet materialized,
    #          "removed": the removals already sent to a tables run}
    state = json.loads(context.cursor) if context.cursor else {}
    known = known_track_keys(pipeline.layout.manifest_path)
    # kept until its content is analysed and the manifest lists it (a rename only needs the latter)
    pending = {
        k: h
        for k, h in state.get("pending", {}).items()
        if hashes.get(k, 0) == h and (h not in analysed or known is None or k not in known)
    }

    def needs_run(t) -> bool:
        return bool(t.content_hash) and t.content_hash not in analysed and pending.get(t.key) != t.content_hash

    requested_buckets = set(state.get("buckets", []))
    planned = plan_partitions(
        context.instance,
        partitioning,
        scan,
        needs_run,
        track_keys,
        known=(known or set()) | set(pending),
        skip_buckets=requested_buckets,
    )
    plan, done = planned.sync, planned.materialized
    pending.update({k: hashes[k] for k in plan.to_run})
    removed = _ident(sorted(plan.to_remove)) if plan.to_remove else None
    send_removal = removed is not None and removed != state.get("removed")
    context.update_cursor(
        json.dumps(
            {
                "pending": pending,
                "buckets": sorted((requested_buckets | set(plan.buckets)) - done),
                "removed": removed,
            },
            sort_keys=True,
        )
    )
    if not plan.ranges and not send_removal:
        return dg.SkipReason(
            f"{len(scan.tracks)} tracks in {partitioning.buckets} buckets, nothing new, changed or removed"
        )
    context.log.info(
        f"library: +{len(plan.to_add)} new, -{len(plan.to_remove)} removed, {len(plan.to_run)} to analyse "
        f"in {len(plan.buckets)} bucket(s), {len(plan.ranges)} run(s)"
    )
    return dg.SensorResult(
        run_requests=run_requests_for(plan, hashes, "library_sensor", kind="buckets", removal=send_removal)
    )


def build_library_sensor(partitioning: Partitioning, track_keys) -> dg.SensorDefinition:
    """The library sensor for the definitions' partitioning (``track_keys``: the per-track assets,
    whose materialized buckets it reads in bucket mode)."""
    track_keys = list(track_keys)
    if partitioning.buckets:
        what = (
            f"Scans the library and launches `ingest_tracks` over ranges of the {partitioning.buckets} hash-bucket "
            "partitions that hold new tracks or tracks whose content changed (several buckets per run, at most "
            f"{partitioning.buckets_per_run} buckets and {TRACK_BATCH} tracks to analyse); a run re-uses every cached track "
            "of its buckets. Removed files leave the tables in a tables-only run. Nothing is registered per track."
        )
    else:
        what = (
            "Scans the library: adds a `tracks` partition for each new file, removes partitions of "
            "deleted files, and launches `ingest_tracks` over batched partition ranges (not one run "
            "per file) for new tracks and tracks whose content changed"
        )

    @dg.sensor(
        name="library_sensor",
        job_name="ingest_tracks",
        minimum_interval_seconds=15,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=what
        + "; that run also refreshes the tables, difficulty scores and similarity index. Unchanged files cost a stat, not a read.",
    )
    def library_sensor(context: dg.SensorEvaluationContext, pipeline: MusicPipelineResource):
        try:
            scan = pipeline.scan()
        except (LibraryUnavailable, LibraryNotGiven) as exc:
            # a missing or unmounted library is a state to explain, not a failed tick every 15 s
            return dg.SkipReason(f"waiting for the library: {exc}")
        hashes = {t.key: t.content_hash for t in scan.tracks}
        analysed = pipeline.analysed_hashes()  # one listing per store, not a file check per track
        if partitioning.buckets:
            return _bucket_tick(context, pipeline, partitioning, track_keys, scan, hashes, analysed)
        return _track_tick(context, scan, hashes, analysed)

    return library_sensor


# the per-track sensor (build_definitions builds the one for its partitioning)
library_sensor = build_library_sensor(Partitioning(), [])


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

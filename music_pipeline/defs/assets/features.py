"""group features: the per-track pass (partitioned by track or by bucket of tracks, see
defs/partitions.py) and the library embedding table."""

import dagster as dg

from music_pipeline import progress
from music_pipeline.analysis import PASSES, TrackJob, analyse_many
from music_pipeline.artifacts import read_parquet
from music_pipeline.defs.partitions import TRACK_BATCH, tracks_for_run, tracks_partitions
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.features.embedding import EMBEDDING_DIM
from music_pipeline.features.extract import feature_version
from music_pipeline.features.segments import SEGMENT_FRAMES
from music_pipeline.features.spectra import N_MELS
from music_pipeline.features.tables import InvalidTable, refresh_tables, validate_embedding_table

TRACK_EMBEDDING = dg.AssetKey("track_embedding")
TRACK_DIFFICULTY = dg.AssetKey("track_difficulty")
MEL_SEGMENTS = dg.AssetKey("mel_segments")
TRACK_ASSETS = [TRACK_EMBEDDING, TRACK_DIFFICULTY, MEL_SEGMENTS]
_TRACK_TAGS = {"owner": "features"}
SEGMENTS_CHECK = "segments_complete"
# run tag: analyse again the tracks recorded as permanently broken (`music-pipeline build --retry-failed`)
RETRY_FAILED_TAG = "music_pipeline/retry_failed"

# Many tracks per run, parallel inside it: one run per track would cost seconds of overhead each.
# (Per track; in bucket mode Partitioning.apply sets the bucket-mode policy.)
TRACK_BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=TRACK_BATCH)


def _track_spec(key: dg.AssetKey, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key,
        description=description,
        group_name="features",
        kinds={"python", "numpy"},
        owners=["team:music-pipeline"],
        partitions_def=tracks_partitions,
        code_version=feature_version(),
        automation_condition=None,
    )


@dg.multi_asset(
    name="track_features",
    specs=[
        _track_spec(
            TRACK_EMBEDDING, f"The {EMBEDDING_DIM} named hand-crafted features of one track (see FEATURE_NAMES)."
        ),
        _track_spec(
            TRACK_DIFFICULTY,
            "Difficulty descriptors of one track (structural complexity and performance intensity families).",
        ),
        _track_spec(MEL_SEGMENTS, "Beginning/middle/end 128×128 log-mel segments of one track (float16)."),
    ],
    partitions_def=tracks_partitions,
    backfill_policy=TRACK_BACKFILL_POLICY,
    check_specs=[
        dg.AssetCheckSpec(
            SEGMENTS_CHECK,
            asset=MEL_SEGMENTS,
            description=(
                "Stored segments of this run's analysed tracks = tracks × segments per track, each "
                "128×128 (read from the files' headers, not from what extraction meant to write)."
            ),
        )
    ],
    can_subset=False,
    retry_policy=dg.RetryPolicy(max_retries=1, delay=5),
    description=(
        "One decode and one STFT/CQT pass per track producing the embedding, the difficulty "
        "descriptors and the mel segments. Stored once per content hash in "
        "`<data>/features/<version>/<hash>.npz`; a broken file (unreadable, not audio, truncated, "
        "silent, too short) is recorded with its reason and does not fail the run; any other "
        "error fails the run and the track is retried. Run tag `music_pipeline/retry_failed=true` "
        "analyses recorded broken files again."
    ),
)
def track_features(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource):
    run = tracks_for_run(context, pipeline.scan())
    run.log_missing(context.log)
    retry_failed = context.run.tags.get(RETRY_FAILED_TAG, "").lower() == "true"
    outcomes, pass_seconds = analyse_run(context, pipeline, run, "features")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("extracted", "cached", "failed", "error")}
    audio_s = sum(o.duration_s or 0.0 for o in outcomes if o.status == "extracted")
    cpu_s = sum(o.seconds for o in outcomes if o.status == "extracted")
    context.log.info(f"{len(outcomes)} tracks: {counts}")
    fail_on_transient(outcomes, counts)
    failures = [o for o in outcomes if not o.ok]
    common = {
        **run.metadata(),
        **{k: counts[k] for k in ("extracted", "cached", "failed")},
        "feature_version": feature_version(pipeline.n_segments),
        "x_realtime_per_worker": float(audio_s / cpu_s) if cpu_s else 0.0,
        "retry_failed": retry_failed,
        "failures": dg.MetadataValue.md("\n".join(f"- `{o.relpath}`: {o.reason}" for o in failures) or "none"),
        **pass_seconds,
    }
    if len(outcomes) == 1:  # one partition: per-track detail
        o = outcomes[0]
        common.update({"status": o.status, "content_hash": o.content_hash or "", "relpath": o.relpath})
    for asset_key in (TRACK_EMBEDDING, TRACK_DIFFICULTY, MEL_SEGMENTS):
        yield dg.MaterializeResult(asset_key=asset_key, metadata=common)
    yield _segments_check(pipeline.store, [o for o in outcomes if o.ok], pipeline.n_segments)


def _segments_check(store, analysed, n_segments: int) -> dg.AssetCheckResult:
    expected_shape = (n_segments, N_MELS, SEGMENT_FRAMES)
    found, wrong = 0, []
    for o in analysed:
        try:
            shape = store.segments_shape(o.content_hash)
        except Exception as exc:  # noqa: BLE001 - a missing or unreadable file is exactly what this check is for
            wrong.append(f"`{o.relpath}`: unreadable ({type(exc).__name__}: {exc})")
            continue
        found += shape[0] if len(shape) == 3 else 0
        if shape != expected_shape:
            wrong.append(f"`{o.relpath}`: segments {shape}, expected {expected_shape}")
    expected = len(analysed) * n_segments
    return dg.AssetCheckResult(
        asset_key=MEL_SEGMENTS,
        check_name=SEGMENTS_CHECK,
        passed=not wrong and found == expected,
        metadata={
            "tracks": len(analysed),
            "segments": found,
            "expected": expected,
            "problems": dg.MetadataValue.md("\n".join(f"- {w}" for w in wrong) or "none"),
        },
    )


# the asset keys of each per-track pass (music_pipeline.analysis.PASSES)
PASS_ASSETS = {
    "features": TRACK_ASSETS,
    "notes": [dg.AssetKey("track_notes")],
    "learned": [dg.AssetKey("track_learned_embedding")],
    "fingerprints": [dg.AssetKey("track_fingerprints")],
}


PASS_SECONDS = "pass_cpu_seconds"  # metadata: {pass: CPU seconds its analyses took in this step}


def analyse_run(context, pipeline: MusicPipelineResource, run, this_pass: str) -> tuple[list, dict]:
    """This step's outcomes for the tracks of ``run``. The first per-track step of a run reads each
    file once and fills the stores of every per-track pass the run selected (``analysis.py``); the
    later steps answer from those stores. Every step reports the one ``extract`` phase the build
    shows, naming the passes that run per track."""
    selected = context.run.asset_selection  # empty or None: the whole job
    passes = tuple(p for p in PASSES if p == this_pass or not selected or set(PASS_ASSETS[p]) & selected)
    retry_failed = context.run.tags.get(RETRY_FAILED_TAG, "").lower() == "true"
    data_dir = str(pipeline.settings.data_dir)
    jobs = [
        TrackJob(
            t.key, t.path, t.relpath, t.content_hash, data_dir, passes, t.scan_error, pipeline.n_segments, retry_failed
        )
        for t in run.tracks
    ]
    meter = progress.TrackMeter(
        "extract", len(jobs), progress.dagster_reporter(context.log.info), what=" + ".join(passes)
    )

    def on_result(outcomes: dict) -> None:
        mine = outcomes[this_pass]
        computed = [o for o in outcomes.values() if o.ok and o.status != "cached"]
        meter.track_done(max((_audio_seconds(o) for o in computed), default=None))
        if not mine.ok:
            context.log.warning(f"track {mine.key}: {this_pass} failed: {mine.reason}")

    results = analyse_many(jobs, pipeline.settings.workers, on_result, context.log.info)
    seconds = {p: round(sum(r[p].seconds for r in results if r[p].ok and r[p].status != "cached"), 2) for p in passes}
    return [r[this_pass] for r in results], {PASS_SECONDS: dg.MetadataValue.json(seconds)}


def _audio_seconds(outcome) -> float:
    """Seconds of the track an outcome analysed (the whole track for features and notes)."""
    return float(getattr(outcome, "duration_s", None) or 0.0)


def fail_on_transient(outcomes, counts: dict) -> None:
    """Tracks that failed for reasons that are not the file's fault (status ``error``: a vanished
    file, memory, disk, a bug) fail the step, naming each track and why, so the step and the next
    build try them again; the tracks that worked are stored and are not analysed again."""
    errors = [o for o in outcomes if o.status == "error"]
    if errors:
        listing = "\n".join(f"- `{o.relpath}`: {o.reason}" for o in errors)
        raise dg.Failure(
            description=f"{len(errors)} of {len(outcomes)} tracks failed for reasons that are not the file's "
            f"fault; they are tried again on the next run:\n{listing}",
            metadata={"errors": dg.MetadataValue.md(listing), **counts},
        )


@dg.asset(
    group_name="features",
    deps=[TRACK_EMBEDDING, TRACK_DIFFICULTY, dg.AssetKey("library_manifest")],
    kinds={"python", "parquet"},
    owners=["team:music-pipeline"],
    # carries the extraction version: changing the extraction code marks the table stale too
    code_version=f"1-{feature_version()}",
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "All analysed tracks in one table: key, relpath, label, group, duration_s, source_sr, "
        f"content_hash and the {EMBEDDING_DIM} named features (`<data>/tables/embeddings.parquet`). "
        "Tracks that were not analysed are in `skipped_tracks.parquet` with the reason; the "
        "difficulty descriptors go to `difficulty_descriptors.parquet`."
    ),
)
def embeddings(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    layout = pipeline.layout
    try:
        tables, rounds = refresh_tables(pipeline.scan(), pipeline.store, layout)
    except InvalidTable as exc:
        raise dg.Failure(str(exc)) from exc
    if rounds > 1:
        context.log.info(f"features of other runs appeared while writing: table rewritten ({rounds} rounds)")
    for r in tables.skipped.itertuples():
        context.log.warning(f"skipped {r.relpath}: {r.reason}")
    preview = tables.embeddings[["key", "label", "duration_s", "tempo_bpm", "spectral_centroid_mean", "rms_mean"]].head(
        10
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(layout.embeddings_path)),
            "dagster/row_count": len(tables.embeddings),
            "width": EMBEDDING_DIM,
            "skipped": len(tables.skipped),
            "skipped_tracks": dg.MetadataValue.md(
                tables.skipped[["relpath", "reason"]].to_markdown(index=False) if len(tables.skipped) else "none"
            ),
            "labels": dg.MetadataValue.json(tables.embeddings["label"].fillna("(unlabelled)").value_counts().to_dict()),
            "total_hours": float(tables.embeddings["duration_s"].sum() / 3600),
            "feature_files_read": tables.files_read,  # the other rows came from the previous table
            "write_rounds": rounds,
            "preview": dg.MetadataValue.md(preview.to_markdown(index=False, floatfmt=".3g")),
        }
    )


@dg.asset_check(asset=embeddings, blocking=True, description="641 columns, all finite, unique track keys.")
def embeddings_valid(pipeline: MusicPipelineResource) -> dg.AssetCheckResult:
    df = read_parquet(pipeline.layout.embeddings_path)
    problems = validate_embedding_table(df)
    return dg.AssetCheckResult(
        passed=not problems, metadata={"problems": "; ".join(problems) or "none", "rows": len(df)}
    )


@dg.asset_check(asset=embeddings, description="Warns when tracks of the library could not be analysed; lists them.")
def no_skipped_tracks(pipeline: MusicPipelineResource) -> dg.AssetCheckResult:
    skipped = read_parquet(pipeline.layout.skipped_path)
    return dg.AssetCheckResult(
        passed=len(skipped) == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "skipped": len(skipped),
            "tracks": dg.MetadataValue.md(
                skipped[["relpath", "reason"]].to_markdown(index=False) if len(skipped) else "none"
            ),
        },
    )


__all__ = ["embeddings", "embeddings_valid", "no_skipped_tracks", "track_features"]

"""group features (learned): the pretrained network's embedding per track and its library table."""

import time

import dagster as dg

from music_pipeline import progress
from music_pipeline.defs.assets.features import TRACK_BACKFILL_POLICY, analyse_run, fail_on_transient
from music_pipeline.defs.partitions import tracks_for_run, tracks_partitions
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.learned.store import LEARNED_DIM, TAG_NAMES, learned_version

TRACK_LEARNED = dg.AssetKey("track_learned_embedding")
LEARNED_TABLE = dg.AssetKey("learned_embeddings")


def _jobs(tracks):
    from music_pipeline.learned.store import LearnedJob

    return [LearnedJob(t.key, t.path, t.relpath, t.content_hash, t.scan_error) for t in tracks]


def _run(context, pipeline: MusicPipelineResource, jobs) -> dict:
    from music_pipeline.learned.store import LearnedStore, embed_many

    store = LearnedStore(pipeline.settings.data_dir)
    t0 = time.perf_counter()
    meter = progress.TrackMeter("learned", len(jobs), progress.dagster_reporter(context.log.info))

    def on_result(o):
        meter.track_done(o.audio_seconds if o.status == "computed" else None)
        if not o.ok:
            context.log.warning(f"learned embedding of {o.relpath} failed: {o.reason}")

    outcomes = embed_many(jobs, store, on_result, log=context.log.info, workers=pipeline.settings.workers)
    return _summary(outcomes, store.version, time.perf_counter() - t0)


def _summary(outcomes, version: str, seconds: float) -> dict:
    """The metadata of a learned pass over some tracks; failures not the files' fault fail the step."""
    fail_on_transient(
        outcomes, {s: sum(o.status == s for o in outcomes) for s in ("computed", "cached", "failed", "error")}
    )
    computed = [o for o in outcomes if o.status == "computed"]
    cpu = sum(o.seconds for o in computed)
    return {
        "tracks": len(outcomes),
        **{s: sum(o.status == s for o in outcomes) for s in ("computed", "cached", "failed")},
        "version": version,
        "seconds": seconds,
        # analysed audio per second of wall time in this process (decode + front end + both networks)
        "x_realtime_analysed": float(sum(o.audio_seconds for o in computed) / cpu) if cpu else 0.0,
        "failures": dg.MetadataValue.md(
            "\n".join(f"- `{o.relpath}`: {o.reason}" for o in outcomes if not o.ok) or "none"
        ),
    }


@dg.multi_asset(
    name="track_learned_embedding",
    specs=[
        dg.AssetSpec(
            TRACK_LEARNED,
            group_name="features",
            kinds={"python", "onnx"},
            owners=["team:music-pipeline"],
            partitions_def=tracks_partitions,
            code_version=learned_version(),
            description=(
                "The pretrained musicnn taggers (weights from the pinned musicnn 0.1.0 wheel, run as ONNX graphs on onnxruntime) "
                "on at most 20 three-second patches spread over the track: per patch the 200-unit penultimate "
                "layer and 50 tag scores of the MSD and of the MTT model. Cached per content hash in "
                f"`<data>/learned/{learned_version()}/<hash>.npz`; a file that cannot be decoded is recorded with "
                "its reason and does not fail the run."
            ),
        )
    ],
    partitions_def=tracks_partitions,
    backfill_policy=TRACK_BACKFILL_POLICY,  # many tracks per run, as the hand-crafted features
    retry_policy=dg.RetryPolicy(max_retries=1, delay=5),
)
def track_learned_embedding(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    run = tracks_for_run(context, pipeline.scan())
    run.log_missing(context.log)
    t0 = time.perf_counter()
    outcomes, pass_seconds = analyse_run(context, pipeline, run, "learned")
    summary = _summary(outcomes, learned_version(), time.perf_counter() - t0)
    return dg.MaterializeResult(metadata={**summary, **run.metadata(), **pass_seconds})


@dg.asset(
    key=LEARNED_TABLE,
    group_name="features",
    deps=[TRACK_LEARNED, dg.AssetKey("embeddings")],
    kinds={"python", "parquet"},
    owners=["team:music-pipeline"],
    code_version=f"1-{learned_version()}",
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Learned embedding of every track of the embedding table: key, content_hash, n_patches, "
        f"the {LEARNED_DIM} pooled penultimate values (MSD model, mean and max over patches) and "
        f"{len(TAG_NAMES)} mean tag scores (MTT and MSD tags) in `<data>/tables/learned_embeddings.parquet`. "
        "Tracks the per-track asset has not covered (a data directory built before it existed) are "
        "embedded here, so the table is always complete."
    ),
)
def learned_embeddings(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    from music_pipeline.artifacts import read_parquet, read_parquet_metadata, write_parquet
    from music_pipeline.learned.store import LearnedStore
    from music_pipeline.learned.table import build_learned_table

    layout = pipeline.layout
    emb = read_parquet(layout.embeddings_path, columns=["key", "relpath", "content_hash"])
    store = LearnedStore(pipeline.settings.data_dir)
    lacking = sorted(set(emb["content_hash"]) - store.hashes() - store.failed_hashes())
    md = {}
    if lacking:
        wanted = set(emb.loc[emb["content_hash"].isin(lacking), "key"])
        context.log.info(f"{len(wanted)} tracks have no learned embedding yet: computing them now")
        md["caught_up"] = _run(context, pipeline, _jobs(t for t in pipeline.scan().tracks if t.key in wanted))[
            "computed"
        ]
    path = layout.learned_table_path
    previous = None
    if path.is_file() and read_parquet_metadata(path).get("music_pipeline.learned_version") == store.version:
        previous = read_parquet(path)  # rows of unchanged content are reused, not re-read from the store
    table, skipped = build_learned_table(emb, store, previous)
    path = write_parquet(path, table, {"music_pipeline.learned_version": store.version})
    for r in skipped:
        context.log.warning(f"no learned embedding for {r[0]}: {r[1]}")
    return dg.MaterializeResult(
        metadata={
            **md,
            "path": dg.MetadataValue.path(str(path)),
            "dagster/row_count": len(table),
            "width": LEARNED_DIM,
            "tags": len(TAG_NAMES),
            "without_learned_embedding": dg.MetadataValue.md("\n".join(f"- `{a}`: {b}" for a, b in skipped) or "none"),
            "version": store.version,
        }
    )


__all__ = ["learned_embeddings", "track_learned_embedding"]

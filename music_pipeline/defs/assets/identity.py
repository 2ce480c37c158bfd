"""Fingerprints of every track (partitioned by track or bucket), the library's lookup index and the
groups of tracks holding the same recording."""

import dagster as dg

from music_pipeline.defs.assets.features import TRACK_BACKFILL_POLICY, analyse_run, fail_on_transient
from music_pipeline.defs.partitions import tracks_for_run, tracks_partitions
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.identity.duplicates import DUPLICATES_VERSION, IDENTICAL
from music_pipeline.identity.fingerprint import FRAME_S, PEAKS_PER_S
from music_pipeline.identity.store import FINGERPRINT_VERSION

TRACK_FINGERPRINTS = dg.AssetKey("track_fingerprints")
FINGERPRINT_INDEX = dg.AssetKey("fingerprint_index")


@dg.asset(
    key=TRACK_FINGERPRINTS,
    group_name="features",
    kinds={"python", "numpy"},
    owners=["team:music-pipeline"],
    partitions_def=tracks_partitions,
    backfill_policy=TRACK_BACKFILL_POLICY,
    code_version=FINGERPRINT_VERSION,
    retry_policy=dg.RetryPolicy(max_retries=1, delay=5),
    description=(
        "Landmark fingerprints of one track (Wang 2003): pairs of spectral peaks (at most "
        f"{PEAKS_PER_S} peaks per second) as 32-bit hashes with their anchor time ({1000 * FRAME_S:.1f} ms frames), "
        "from the one decode the other per-track passes share. Stored once per content hash in "
        f"`<data>/fingerprints/{FINGERPRINT_VERSION}/<hash>.npz`; a broken file is recorded with its reason and "
        "fails only itself."
    ),
)
def track_fingerprints(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    run = tracks_for_run(context, pipeline.scan())
    run.log_missing(context.log)
    outcomes, pass_seconds = analyse_run(context, pipeline, run, "fingerprints")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("computed", "cached", "failed", "error")}
    fail_on_transient(outcomes, counts)
    audio_s = sum(o.duration_s or 0.0 for o in outcomes if o.status == "computed")
    cpu_s = sum(o.seconds for o in outcomes if o.status == "computed")
    context.log.info(f"{len(outcomes)} tracks: {counts}")
    return dg.MaterializeResult(
        metadata={
            **run.metadata(),
            **{k: counts[k] for k in ("computed", "cached", "failed")},
            "fingerprint_version": FINGERPRINT_VERSION,
            **pass_seconds,
            "x_realtime_per_worker": float(audio_s / cpu_s) if cpu_s else 0.0,
            "failures": dg.MetadataValue.md(
                "\n".join(f"- `{o.relpath}`: {o.reason}" for o in outcomes if not o.ok) or "none"
            ),
        }
    )


@dg.asset(
    key=FINGERPRINT_INDEX,
    group_name="features",
    deps=[TRACK_FINGERPRINTS, dg.AssetKey("library_manifest")],
    kinds={"python", "numpy"},
    owners=["team:music-pipeline"],
    code_version=f"1-{FINGERPRINT_VERSION}",
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "The lookup index of every stored fingerprint (hashes sorted, with track and time), which "
        "`music-pipeline identify` asks, memory-mapped: `<data>/tables/fingerprint_index/`."
    ),
)
def fingerprint_index(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    from music_pipeline.identity.library import build_index

    lib, missing = build_index(pipeline.settings.data_dir)
    for relpath in missing:
        context.log.warning(f"{relpath}: no fingerprint stored (left out of the index)")
    return dg.MaterializeResult(
        metadata={
            "tracks": len(lib.keys),
            "distinct_contents": len(lib.index),
            "landmarks": len(lib.index.hashes),
            "without_fingerprint": len(missing),
        }
    )


@dg.asset(
    group_name="features",
    deps=[FINGERPRINT_INDEX],
    kinds={"python", "parquet"},
    owners=["team:music-pipeline"],
    code_version=DUPLICATES_VERSION,
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Groups of tracks holding the same recording (identical bytes, another encoding, level, light "
        "noise, a trim), found once per build from the fingerprint index: "
        "`<data>/tables/duplicate_groups.parquet` (group, kind, track, path). Read by `duplicates`, the "
        "build summary, the explorer and similar/radio (which never offer a track's own copy)."
    ),
)
def duplicate_groups(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    from music_pipeline.identity.duplicates import duplicate_groups as find_groups
    from music_pipeline.identity.duplicates import extra_copies, write_duplicates
    from music_pipeline.identity.library import load_index

    data_dir = pipeline.settings.data_dir
    groups = find_groups(data_dir, load_index(data_dir))
    write_duplicates(data_dir, groups)
    return dg.MaterializeResult(
        metadata={
            "groups": len(groups),
            "extra_copies": extra_copies(groups),
            "identical_bytes": sum(g["kind"] == IDENTICAL for g in groups),
        }
    )


__all__ = ["duplicate_groups", "fingerprint_index", "track_fingerprints"]

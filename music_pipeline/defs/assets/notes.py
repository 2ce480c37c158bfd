"""The notes of every track (partitioned by track or bucket): transcription with basic-pitch's ONNX model."""

import dagster as dg

from music_pipeline.defs.assets.features import TRACK_BACKFILL_POLICY, analyse_run, fail_on_transient
from music_pipeline.defs.partitions import tracks_for_run, tracks_partitions
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.notes.store import NotesStore, notes_version
from music_pipeline.notes.transcribe import DEFAULT_BUDGET

TRACK_NOTES = dg.AssetKey("track_notes")


@dg.asset(
    key=TRACK_NOTES,
    group_name="features",
    kinds={"python", "onnx"},
    owners=["team:music-pipeline"],
    partitions_def=tracks_partitions,
    backfill_policy=TRACK_BACKFILL_POLICY,
    code_version=notes_version(),
    retry_policy=dg.RetryPolicy(max_retries=1, delay=5),
    description=(
        "Note events of one track (onset, offset, MIDI pitch, confidence) and its note descriptors, "
        "from basic-pitch's ICASSP-2022 model (nmp.onnx from the pinned basic-pitch 0.4.0 wheel, run "
        f"by onnxruntime; no TensorFlow). At most {DEFAULT_BUDGET.max_seconds:g} s per track, in "
        f"{DEFAULT_BUDGET.excerpts} excerpts spread over it, after loudness normalisation. Stored once per "
        "content hash in `<data>/notes/<version>/<hash>.npz`; a broken or silent file is recorded "
        "with its reason and fails only itself."
    ),
)
def track_notes(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    run = tracks_for_run(context, pipeline.scan())
    data_dir = str(pipeline.settings.data_dir)
    run.log_missing(context.log)
    outcomes, pass_seconds = analyse_run(context, pipeline, run, "notes")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("transcribed", "cached", "failed", "error")}
    fail_on_transient(outcomes, counts)
    audio_s = sum(o.duration_s or 0.0 for o in outcomes if o.status == "transcribed")
    cpu_s = sum(o.seconds for o in outcomes if o.status == "transcribed")
    context.log.info(f"{len(outcomes)} tracks: {counts}")
    metadata = {
        **run.metadata(),
        **{k: counts[k] for k in ("transcribed", "cached", "failed")},
        "notes_version": notes_version(),
        **pass_seconds,
        "x_realtime_per_worker": float(audio_s / cpu_s) if cpu_s else 0.0,
        "failures": dg.MetadataValue.md(
            "\n".join(f"- `{o.relpath}`: {o.reason}" for o in outcomes if not o.ok) or "none"
        ),
    }
    if len(outcomes) == 1 and outcomes[0].ok and outcomes[0].content_hash:
        o = outcomes[0]
        stored = NotesStore(data_dir).load(o.content_hash)
        metadata.update(
            {
                "status": o.status,
                "relpath": o.relpath,
                "notes": len(stored.notes),
                **{k: float(v) for k, v in stored.descriptors.items()},
            }
        )
    return dg.MaterializeResult(metadata=metadata)


__all__ = ["track_notes"]

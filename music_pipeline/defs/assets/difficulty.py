"""group difficulty: the Perceptual Difficulty Index of every track (from its notes), and the segment CNN."""

import math

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from music_pipeline.artifacts import read_json, read_parquet, read_parquet_metadata, write_json, write_parquet
from music_pipeline.defs.assets.notes import TRACK_NOTES
from music_pipeline.defs.metadata import png_md, table_md
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.retraining import record_trained, retraining_metadata
from music_pipeline.difficulty import pdi
from music_pipeline.notes.store import (
    NOTES_VERSION_KEY,
    NotesJob,
    NotesStore,
    note_table,
    notes_version,
    transcribe_many,
)


class DifficultyConfig(dg.Config):
    intensity_weight: float = Field(
        0.0,
        description="w_I: share of the intensity subscore (loudness, brightness, tempo…) in the PDI; 0 = the PDI describes the notes only",
    )
    threshold_quantiles: list[float] = Field(
        [1 / 3, 2 / 3], description="library PDI quantiles cutting Easy|Medium|Hard (tertiles)"
    )
    fixed_thresholds: list[float] = Field([], description="two PDI values; when given they replace the quantiles")
    gallery_per_level: int = Field(3, description="example spectrograms per level in the gallery")


class DifficultyCnnConfig(dg.Config):
    architecture: str = Field(
        "compact",
        description="compact (CPU default, ~15k params on 64×64 pooled input) | efficientnet (EfficientNet-B0, weights=None)",
    )
    epochs: int = Field(8, description="maximum epochs per fit (early stopping on held-out training tracks)")
    batch_size: int = Field(32)
    folds: int = Field(3, description="grouped cross-validation folds over tracks")
    patience: int = Field(3, description="early-stopping patience in epochs")
    learning_rate: float = Field(3e-3)
    max_tracks: int = Field(
        2000,
        description="tracks used at most (a seeded, level-stratified subsample above this): bounds time and memory on large libraries",
    )
    seed: int = Field(0)


def _note_table(context, pipeline: MusicPipelineResource, audio: pd.DataFrame) -> pd.DataFrame:
    """Note descriptors of every track of the audio table; tracks never transcribed (a library
    built before track_notes existed) are transcribed here, failures are left out and named."""
    layout = pipeline.layout
    path = layout.note_descriptors_table_path
    store = NotesStore(pipeline.settings.data_dir)
    previous = None
    try:
        if path.exists() and read_parquet_metadata(path).get(NOTES_VERSION_KEY) == store.version:
            previous = read_parquet(path)
    except (OSError, ValueError):
        previous = None
    tracks = audio[["key", "relpath", "content_hash"]]
    table, missing = note_table(tracks, store, previous)
    failed = {h: store.failure(h) for h in missing["content_hash"]}
    todo = missing[[failed[h] is None for h in missing["content_hash"]]]
    if len(todo):
        context.log.info(f"{len(todo)} tracks have no notes yet: transcribing them now")
        by_key = pipeline.scan().by_key()
        jobs = [
            NotesJob(k, by_key[k].path, by_key[k].relpath, h, str(pipeline.settings.data_dir))
            for k, h in zip(todo["key"], todo["content_hash"])
            if k in by_key
        ]
        transcribe_many(jobs, workers=pipeline.settings.workers, log_fn=context.log.info)
        table, missing = note_table(tracks, store, table)
    for r in missing.itertuples():
        context.log.warning(
            f"{r.relpath}: no notes, left out of the PDI ({store.failure(r.content_hash) or 'not transcribed'})"
        )
    write_parquet(path, table, {NOTES_VERSION_KEY: store.version})
    return table


@dg.asset(
    group_name="difficulty",
    deps=[dg.AssetKey("embeddings"), TRACK_NOTES],
    kinds={"python", "parquet"},
    owners=["team:music-pipeline"],
    code_version=f"2-{notes_version()}",
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Perceptual Difficulty Index of every track from its notes: note descriptors (density, "
        "polyphony, pitch, rhythm) mapped through the library's distribution, family subscores, "
        "PDI = their equal-weighted mean (weightings fitted on an outside reference of rendered "
        "scores did not beat equal weights on held-out collections), an intensity subscore (loudness, brightness, tempo) shown beside it, and the "
        "level Easy/Medium/Hard by library tertiles. Writes `<data>/tables/note_descriptors.parquet`, "
        "`<data>/tables/difficulty.parquet` and the scale + weights + thresholds "
        "`<data>/models/difficulty/difficulty_model.json` (used to score files outside the library), "
        "plots, a piano roll of one example track per level and a spectrogram gallery under "
        "`<data>/plots/difficulty/`."
    ),
)
def difficulty(
    context: dg.AssetExecutionContext, config: DifficultyConfig, pipeline: MusicPipelineResource
) -> dg.MaterializeResult:
    from music_pipeline.difficulty import plots

    layout = pipeline.layout
    audio = read_parquet(layout.descriptors_table_path)
    if audio.empty:
        raise dg.Failure("no analysed tracks: the descriptor table is empty")
    notes = _note_table(context, pipeline, audio)
    descriptors = pdi.merge_descriptors(audio, notes)
    if descriptors.empty:
        raise dg.Failure("no track has notes: nothing to score")
    try:
        scores, model = pdi.score_library(
            descriptors,
            intensity_weight=config.intensity_weight,
            quantiles=config.threshold_quantiles,
            thresholds=config.fixed_thresholds or None,
        )
    except ValueError as exc:
        raise dg.Failure(f"cannot score the library: {exc}") from exc
    # a refit on a changed library may move existing tracks: say so instead of doing it silently
    previous_path = layout.difficulty_table_path
    try:
        previous = read_parquet(previous_path, columns=["key", "pdi", "level"]) if previous_path.exists() else None
    except Exception:  # written by an older version with other columns
        previous = None
    moved = _moves_since(previous, scores)
    if moved["tracks_changing_level"]:
        context.log.warning(
            f"{moved['tracks_changing_level']} tracks changed level after refitting on the current library"
        )
    table_path = write_parquet(previous_path, scores)
    model_path = model.save(layout.difficulty_dir)

    pdir = layout.difficulty_plots_dir
    store, note_store = pipeline.store, NotesStore(pipeline.settings.data_dir)
    hist = plots.pdi_histogram(scores, model, pdir / "pdi_histogram.png")
    scatter = plots.subscore_scatter(scores, pdir / "subscores.png")
    pca = plots.descriptor_pca(scores, pdir / "descriptor_pca.png")
    examples = plots.piano_roll_examples(
        scores, descriptors, lambda h: note_store.load(h).notes, pdir / "piano_rolls.png"
    )
    gallery = plots.spectrogram_gallery(
        scores, lambda h: store.load(h).segments, pdir / "gallery.png", config.gallery_per_level
    )
    counts = pdi.level_counts(scores)
    context.log.info(f"PDI levels {counts}, thresholds {model.thresholds}")
    by_label = (
        scores.assign(label=scores["label"].fillna("(unlabelled)"))
        .groupby("label")[["pdi", "structural", "intensity"]]
        .mean()
        .reset_index()
    )
    left_out = sorted(set(audio["relpath"]) - set(descriptors["relpath"]))
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(table_path)),
            "model": dg.MetadataValue.path(str(model_path)),
            "dagster/row_count": len(scores),
            "levels": dg.MetadataValue.json(counts),
            "thresholds": dg.MetadataValue.json({"values": list(model.thresholds), "rule": model.threshold_rule}),
            "weights": dg.MetadataValue.json({**model.weights, "intensity (w_I)": model.intensity_weight}),
            "pdi_mean": float(scores["pdi"].mean()),
            "structural_intensity_correlation": float(np.corrcoef(scores["structural"], scores["intensity"])[0, 1])
            if len(scores) > 2
            else 0.0,
            "piano_rolls": png_md(examples, "piano roll of one example track per level"),
            "piano_roll_path": dg.MetadataValue.path(str(examples)),
            "pdi_histogram": png_md(hist, "PDI histogram"),
            "structural_vs_intensity": png_md(scatter, "subscores"),
            "descriptor_pca": png_md(pca, "PCA"),
            "gallery": png_md(gallery, "spectrograms per level"),
            "gallery_path": dg.MetadataValue.path(str(gallery)),
            "extremes": table_md(pdi.extremes(scores, 5), floatfmt=".3f"),
            "mean_by_label": table_md(by_label, floatfmt=".3f"),
            "tracks_without_notes": dg.MetadataValue.md("\n".join(f"- `{r}`" for r in left_out) or "none"),
            "since_last_build": dg.MetadataValue.json(moved),
        }
    )


def _moves_since(previous: pd.DataFrame | None, scores: pd.DataFrame) -> dict:
    if previous is None or previous.empty:
        return {"tracks_compared": 0, "tracks_changing_level": 0, "max_abs_pdi_change": 0.0}
    both = previous.merge(scores[["key", "pdi", "level"]], on="key", suffixes=("_before", "_now"))
    return {
        "tracks_compared": len(both),
        "tracks_changing_level": int((both["level_before"] != both["level_now"]).sum()),
        "max_abs_pdi_change": float((both["pdi_now"] - both["pdi_before"]).abs().max()) if len(both) else 0.0,
    }


@dg.asset_check(
    asset=difficulty,
    blocking=True,
    description="Every level (Easy, Medium, Hard) has at least one track (a warning only when the library has fewer distinct PDI values than levels).",
)
def difficulty_levels_nonempty(pipeline: MusicPipelineResource) -> dg.AssetCheckResult:
    scores = read_parquet(pipeline.layout.difficulty_table_path, columns=["level", "pdi"])
    counts = pdi.level_counts(scores)
    # with fewer tracks (or fewer distinct PDI values: music of identical note statistics) than
    # levels an empty level is arithmetic, not a fault: warn, do not block
    distinct = int(scores["pdi"].round(12).nunique())
    severity = dg.AssetCheckSeverity.ERROR if distinct >= len(counts) else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        passed=all(c > 0 for c in counts.values()),
        severity=severity,
        metadata={"levels": dg.MetadataValue.json(counts), "tracks": len(scores), "distinct_pdi_values": distinct},
    )


@dg.asset_check(
    asset=difficulty,
    description="The saved scale + weights + thresholds, reloaded, give exactly the stored scores (scores of "
    "existing tracks cannot drift, and a file scored later uses the same scale).",
)
def difficulty_model_reproduces_scores(pipeline: MusicPipelineResource) -> dg.AssetCheckResult:
    layout = pipeline.layout
    stored = read_parquet(layout.difficulty_table_path)
    descriptors = pdi.merge_descriptors(
        read_parquet(layout.descriptors_table_path), read_parquet(layout.note_descriptors_table_path)
    )
    gone = sorted(set(stored["key"]) - set(descriptors["key"]))
    if gone:  # the descriptor table moved on since the scores were written: they are stale
        return dg.AssetCheckResult(
            passed=False,
            metadata={"stale": f"{len(gone)} scored tracks no longer in the descriptor table (first: {gone[0]})"},
        )
    descriptors = descriptors.set_index("key").loc[stored["key"]].reset_index()
    again = pdi.DifficultyModel.load(layout.difficulty_dir).score_frame(descriptors)
    diff = np.abs(again["pdi"].to_numpy() - stored["pdi"].to_numpy())
    same_levels = bool((again["level"].to_numpy() == stored["level"].to_numpy()).all())
    return dg.AssetCheckResult(
        passed=bool(diff.max(initial=0.0) == 0.0 and same_levels),
        metadata={"max_abs_pdi_difference": float(diff.max(initial=0.0)), "levels_identical": same_levels},
    )


@dg.asset(
    group_name="difficulty",
    deps=[dg.AssetKey("difficulty"), dg.AssetKey("embeddings")],
    kinds={"python", "tensorflow"},
    owners=["team:music-pipeline"],
    code_version="1",
    description=(
        "Segment CNN (Keras on TensorFlow; compact CNN by default, EfficientNet-B0 from scratch by "
        "config) predicting the PDI level (from the notes) from a 128×128 log-mel segment. Budget: 3 "
        "grouped folds × ≤ 8 epochs + one final fit, ≤ 2,000 tracks (a stratified subsample above). Evaluated over grouped "
        "folds assigned to tracks before segmenting (no track on both sides): segment and track "
        "accuracy, macro-F1, within-one accuracy, confusion matrix and Spearman ρ, each beside the "
        "majority-class and uniform-random baselines; then fitted on all tracks. Writes "
        "`<data>/models/difficulty/difficulty_cnn.keras` and `difficulty_cnn_report.json`, curves in "
        "`<data>/plots/difficulty/`."
    ),
)
def difficulty_cnn(
    context: dg.AssetExecutionContext, config: DifficultyCnnConfig, pipeline: MusicPipelineResource
) -> dg.MaterializeResult:
    from music_pipeline.difficulty import cnn, plots

    layout = pipeline.layout
    try:
        cfg = cnn.CnnConfig(**config.model_dump())
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    scores = read_parquet(layout.difficulty_table_path)
    store = pipeline.store
    data = cnn.load_segment_dataset(scores, lambda h: store.load(h).segments, max_tracks=cfg.max_tracks, seed=cfg.seed)
    if len(scores) > cfg.max_tracks:
        context.log.info(
            f"{len(scores)} tracks: training on a level-stratified subsample of {cfg.max_tracks} (max_tracks)"
        )
    for key in data.missing:
        context.log.warning(f"track {key}: no segments stored, left out of the CNN")
    if len(data.tracks) < 2 * cfg.folds:
        # a small library is not an error: say why no model exists instead of failing the build
        reason = (
            f"{len(data.tracks)} tracks with segments: too few for {cfg.folds} grouped folds (need {2 * cfg.folds})"
        )
        context.log.warning(f"difficulty CNN not trained: {reason}")
        write_json(
            layout.difficulty_dir / cnn.REPORT_FILE, {"trained": False, "reason": reason, "n_tracks": len(data.tracks)}
        )
        (layout.difficulty_dir / cnn.MODEL_FILE).unlink(missing_ok=True)
        return dg.MaterializeResult(metadata={"trained": False, "reason": reason, "tracks": len(data.tracks)})
    why = retraining_metadata(context, layout)
    report = cnn.run_difficulty_cnn(data, cfg, layout.difficulty_dir, context.log.info)
    record_trained(context, layout)
    pdir = layout.difficulty_plots_dir
    curves = plots.training_curves(report["histories"], pdir / "cnn_training_curves.png")
    confusion = plots.confusion_plot(
        report["metrics"]["confusion_matrix"], pdir / "cnn_confusion.png", title="CNN, out-of-fold tracks"
    )
    m, base = report["metrics"], report["baselines"]
    return dg.MaterializeResult(
        metadata={
            **why,
            "model": dg.MetadataValue.path(report["final_model"]["path"]),
            "report": dg.MetadataValue.path(str(layout.difficulty_dir / cnn.REPORT_FILE)),
            "architecture": cfg.architecture,
            "tracks": report["n_tracks"],
            "segments": report["n_segments"],
            "folds": report["folds"],
            "grouping": report["grouping"],
            "track_accuracy": m["track_accuracy"],
            "majority_track_accuracy": base["majority"]["track_accuracy"],
            "random_track_accuracy": base["uniform_random"]["track_accuracy"],
            "metrics_vs_baselines": table_md(cnn.metrics_table(report), floatfmt=".3f"),
            "per_fold": table_md(pd.DataFrame(report["per_fold"]), floatfmt=".3g"),
            "final_epochs": report["final_model"]["epochs"],
            "params": report["final_model"]["params"],
            "training_curves": png_md(curves, "training curves"),
            "confusion_matrix": png_md(confusion, "confusion matrix"),
            "seconds": float(report["seconds"]),
            "budget": dg.MetadataValue.json(
                {
                    "folds": report["folds"],
                    "max_epochs": cfg.epochs,
                    "segments": report["n_segments"],
                    "tracks_used": report["n_tracks"],
                    "library_tracks": len(scores),
                    "max_tracks": cfg.max_tracks,
                }
            ),
        }
    )


def _cnn_report(pipeline: MusicPipelineResource) -> dict:
    from music_pipeline.difficulty.cnn import REPORT_FILE

    return read_json(pipeline.layout.difficulty_dir / REPORT_FILE)


@dg.asset_check(
    asset=difficulty_cnn,
    description="The CNN report has both baselines and a finite track accuracy for model and baselines.",
)
def difficulty_cnn_report_complete(pipeline: MusicPipelineResource) -> dg.AssetCheckResult:
    report = _cnn_report(pipeline)
    if report.get("trained") is False:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"not_trained": report.get("reason", "")}
        )
    problems = []
    acc = report.get("metrics", {}).get("track_accuracy")
    if not isinstance(acc, (int, float)) or not math.isfinite(acc):
        problems.append(f"track accuracy is not a number: {acc!r}")
    for name in ("majority", "uniform_random"):
        b = report.get("baselines", {}).get(name, {}).get("track_accuracy")
        if not isinstance(b, (int, float)) or not math.isfinite(b):
            problems.append(f"baseline {name} missing")
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": "; ".join(problems) or "none"})


@dg.asset_check(
    asset=difficulty_cnn,
    description="Warns when the CNN's out-of-fold track accuracy does not beat both the majority-class "
    "and the uniform-random baselines.",
)
def difficulty_cnn_beats_baselines(pipeline: MusicPipelineResource) -> dg.AssetCheckResult:
    report = _cnn_report(pipeline)
    if report.get("trained") is False:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"not_trained": report.get("reason", "")}
        )
    acc = float(report["metrics"]["track_accuracy"])
    best_baseline = max(float(report["baselines"][b]["track_accuracy"]) for b in ("majority", "uniform_random"))
    return dg.AssetCheckResult(
        passed=acc > best_baseline,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"track_accuracy": acc, "best_baseline": best_baseline, "margin": acc - best_baseline},
    )


__all__ = [
    "difficulty",
    "difficulty_cnn",
    "difficulty_cnn_beats_baselines",
    "difficulty_cnn_report_complete",
    "difficulty_levels_nonempty",
    "difficulty_model_reproduces_scores",
]

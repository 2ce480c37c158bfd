"""group difficulty: the Perceptual Difficulty Index of every track (from its notes), and the segment CNN.

The assets only adapt the core's records (``difficulty/pdi.py``, ``difficulty/cnn.py``) to Dagster."""

import math

import dagster as dg
from pydantic import Field

from music_pipeline.artifacts import read_parquet
from music_pipeline.defs.assets.notes import TRACK_NOTES
from music_pipeline.defs.metadata import to_metadata
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.retraining import record_trained, retraining_metadata
from music_pipeline.difficulty import cnn, pdi
from music_pipeline.notes.store import notes_version

_PDI, _CNN = pdi.PdiConfig(), cnn.CnnConfig()  # every default lives in the core


class DifficultyConfig(dg.Config):
    intensity_weight: float = Field(
        _PDI.intensity_weight,
        description="w_I: share of the intensity subscore (loudness, brightness, tempo…) in the PDI; 0 = the PDI describes the notes only",
    )
    threshold_quantiles: list[float] = Field(
        list(_PDI.threshold_quantiles), description="library PDI quantiles cutting Easy|Medium|Hard (tertiles)"
    )
    fixed_thresholds: list[float] = Field(
        list(_PDI.fixed_thresholds), description="two PDI values; when given they replace the quantiles"
    )
    gallery_per_level: int = Field(_PDI.gallery_per_level, description="example spectrograms per level in the gallery")

    def pdi_config(self) -> pdi.PdiConfig:
        return pdi.PdiConfig(
            intensity_weight=self.intensity_weight,
            threshold_quantiles=tuple(self.threshold_quantiles),
            fixed_thresholds=tuple(self.fixed_thresholds),
            gallery_per_level=self.gallery_per_level,
        )


class DifficultyCnnConfig(dg.Config):
    architecture: str = Field(
        _CNN.architecture,
        description="compact (CPU default, ~15k params on 64×64 pooled input) | efficientnet (EfficientNet-B0, weights=None)",
    )
    epochs: int = Field(_CNN.epochs, description="maximum epochs per fit (early stopping on held-out training tracks)")
    batch_size: int = Field(_CNN.batch_size)
    folds: int = Field(_CNN.folds, description="grouped cross-validation folds over tracks")
    patience: int = Field(_CNN.patience, description="early-stopping patience in epochs")
    learning_rate: float = Field(_CNN.learning_rate)
    max_tracks: int = Field(
        _CNN.max_tracks,
        description="tracks used at most (a seeded, level-stratified subsample above this): bounds time and memory on large libraries",
    )
    seed: int = Field(_CNN.seed)


@dg.asset(
    group_name="difficulty",
    deps=[dg.AssetKey("embeddings"), TRACK_NOTES],
    kinds={"python", "parquet"},
    owners=["team:music-pipeline"],
    code_version=f"2-{notes_version()}",
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Perceptual Difficulty Index of every track from the notes track_notes stored (tracks without notes are "
        "named and left out): family subscores, their mean, an intensity subscore beside it and the level "
        "Easy/Medium/Hard by library tertiles. Writes the tables, the model JSON and plots under `plots/difficulty/`."
    ),
)
def difficulty(
    context: dg.AssetExecutionContext, config: DifficultyConfig, pipeline: MusicPipelineResource
) -> dg.MaterializeResult:
    # difficulty.plots imports matplotlib at its top level: loaded when the asset runs
    from music_pipeline.difficulty import plots

    try:
        record = pdi.run_pdi(pipeline.layout, config.pdi_config())
    except pdi.NotScorable as exc:
        raise dg.Failure(str(exc)) from exc
    for warning in record.warnings:
        context.log.warning(warning)
    store = pipeline.store
    figures = plots.pdi_figures(
        record, pipeline.layout.difficulty_plots_dir, lambda h: store.load(h).segments, config.gallery_per_level
    )
    context.log.info(f"PDI levels {record.counts}, thresholds {record.thresholds}")
    return dg.MaterializeResult(metadata=to_metadata({**record.metadata, **figures}))


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
    facts = pdi.stored_scores_reproduced(pipeline.layout)
    if "stale" in facts:
        return dg.AssetCheckResult(passed=False, metadata=facts)
    return dg.AssetCheckResult(
        passed=facts["max_abs_pdi_difference"] == 0.0 and facts["levels_identical"], metadata=facts
    )


@dg.asset(
    group_name="difficulty",
    deps=[dg.AssetKey("difficulty"), dg.AssetKey("embeddings")],
    kinds={"python", "tensorflow"},
    owners=["team:music-pipeline"],
    code_version="1",
    description=(
        "Segment CNN (Keras) predicting the PDI level from a 128×128 log-mel segment, evaluated on grouped track "
        "folds beside the majority and uniform-random baselines, then fitted on all tracks: "
        "`<data>/models/difficulty/difficulty_cnn.keras`, its report and curves in `plots/difficulty/`."
    ),
)
def difficulty_cnn(
    context: dg.AssetExecutionContext, config: DifficultyCnnConfig, pipeline: MusicPipelineResource
) -> dg.MaterializeResult:
    try:
        cfg = cnn.CnnConfig(**config.model_dump())
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc
    why = retraining_metadata(context, pipeline.layout)
    store = pipeline.store
    record = cnn.publish_difficulty_cnn(pipeline.layout, lambda h: store.load(h).segments, cfg, context.log.info)
    for line in record.infos:
        context.log.info(line)
    for line in record.warnings:
        context.log.warning(line)
    if not record.trained:
        return dg.MaterializeResult(metadata=to_metadata(record.metadata))
    record_trained(context, pipeline.layout)
    return dg.MaterializeResult(metadata={**why, **to_metadata(record.metadata)})


@dg.asset_check(
    asset=difficulty_cnn,
    description="The CNN report has both baselines and a finite track accuracy for model and baselines.",
)
def difficulty_cnn_report_complete(pipeline: MusicPipelineResource) -> dg.AssetCheckResult:
    report = cnn.cnn_report(pipeline.layout)
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
    report = cnn.cnn_report(pipeline.layout)
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

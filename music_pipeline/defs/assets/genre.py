"""group genre: the deployed genre classifier and the comparison of approaches.

The assets only adapt the core's records (``genre/training.py``, ``genre/serving.py``,
``genre/comparison.py``) to Dagster's metadata. No automation condition on the two that train:
they train models, so a schedule rebuilds them.
"""

import dagster as dg

from music_pipeline.artifacts import read_json
from music_pipeline.defs.metadata import to_metadata
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.retraining import record_trained, retraining_metadata
from music_pipeline.genre.candidates import Candidate, XgbSettings
from music_pipeline.genre.comparison import ComparisonConfig, run_genre_comparison
from music_pipeline.genre.cv import SearchConfig
from music_pipeline.genre.serving import write_track_genres
from music_pipeline.genre.training import BOUNDARY_MARGIN, is_beating_baseline, run_genre_classifier

GENRE_CLASSIFIER = dg.AssetKey("genre_classifier")
_SEARCH, _XGB, _CMP = SearchConfig(), XgbSettings(), ComparisonConfig()  # every default lives in the core


class GenreClassifierConfig(dg.Config):
    """What the grouped-CV selection chooses among (defaults: ``genre/cv.SearchConfig``)."""

    candidates: list[str] = [c.name for c in _SEARCH.candidates]  # noqa: RUF012 - a Dagster (pydantic) config field: pydantic copies the default for each instance
    nested: bool = _SEARCH.nested
    max_splits: int = _SEARCH.max_splits
    logo_max_groups: int = _SEARCH.logo_max_groups
    shuffled: bool = _SEARCH.shuffled
    bootstrap: int = _SEARCH.bootstrap
    n_estimators: int = _XGB.n_estimators  # only for xgb candidates
    learning_rate: float = _XGB.learning_rate
    boundary_margin: float = BOUNDARY_MARGIN
    waterfall_track: str = ""  # key or part of a relpath; default: the closest boundary song
    max_tracks: int = (
        _SEARCH.max_tracks
    )  # labelled tracks used at most (a seeded, label-stratified subsample above); 0: no budget
    seed: int = _SEARCH.seed

    def search(self) -> SearchConfig:
        return SearchConfig(
            candidates=tuple(Candidate.parse(n) for n in self.candidates),
            xgb=XgbSettings(n_estimators=self.n_estimators, learning_rate=self.learning_rate),
            nested=self.nested,
            max_splits=self.max_splits,
            logo_max_groups=self.logo_max_groups,
            shuffled=self.shuffled,
            bootstrap=self.bootstrap,
            max_tracks=self.max_tracks,
            seed=self.seed,
        )


@dg.asset(
    group_name="genre",
    deps=[dg.AssetKey("embeddings"), dg.AssetKey("learned_embeddings")],
    kinds={"python", "scikitlearn"},
    owners=["team:music-pipeline"],
    code_version="2",
    description=(
        "Genre classifier: candidates scored on folds that keep sources apart, the best deployed with a nested-CV "
        "estimate and its CI. Writes a model version under `<data>/models/genre/`, the per-track predictions, "
        "`reports/genre_classifier.md` and `plots/genre/`; unlabelled tracks are predicted, never trained on."
    ),
)
def genre_classifier(
    context: dg.AssetExecutionContext, config: GenreClassifierConfig, pipeline: MusicPipelineResource
) -> dg.MaterializeResult:
    why = retraining_metadata(context, pipeline.layout)
    record = run_genre_classifier(
        pipeline.layout, config.search(), config.boundary_margin, config.waterfall_track, context.log.info
    )
    if not record.trained:
        context.log.warning(record.message)
        return dg.MaterializeResult(metadata=to_metadata(record.metadata))
    context.log.info(record.message)
    record_trained(context, pipeline.layout)
    return dg.MaterializeResult(metadata={**why, **to_metadata(record.metadata)})


@dg.asset(
    group_name="genre",
    deps=[dg.AssetKey("embeddings"), dg.AssetKey("learned_embeddings"), GENRE_CLASSIFIER],
    kinds={"python", "parquet"},
    owners=["team:music-pipeline"],
    code_version="1",
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "The genre of every track by the deployed classifier, refreshed with the library tables (no retraining): "
        "`<data>/tables/track_genres.parquet`. Tracks whose inputs are not computed yet are left out and counted."
    ),
)
def track_genres(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    written = write_track_genres(pipeline.layout)
    if written is None:
        return dg.MaterializeResult(
            metadata={"classified": 0, "reason": "no genre model deployed yet (genre_classifier trains one)"}
        )
    return dg.MaterializeResult(metadata=to_metadata(written.metadata))


@dg.asset_check(
    asset=genre_classifier,
    description="The deployed procedure's estimate beats the majority-class baseline (or chance, whichever is higher) in balanced accuracy.",
)
def genre_classifier_beats_baseline(pipeline: MusicPipelineResource) -> dg.AssetCheckResult:
    path = pipeline.layout.genre_status_path
    if not path.is_file():
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no status.json: the classifier never ran"})
    st = read_json(path)
    if not st.get("trained"):
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"reason": st.get("reason", "not trained")}
        )
    if not st.get("cv_possible"):
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"reason": st.get("note", "no grouped CV possible")},
        )
    est, base = st["estimate"], st["baseline"]
    return dg.AssetCheckResult(
        passed=is_beating_baseline(st),
        metadata={
            "estimate_kind": st["estimate_kind"],
            "balanced_accuracy": float(est["balanced_accuracy"]),
            "ci95": dg.MetadataValue.json(est.get("ci95")),
            "baseline_balanced_accuracy": float(base["balanced_accuracy"]),
            "accuracy": float(est["accuracy"]),
            "baseline_accuracy": float(base["accuracy"]),
        },
    )


class GenreComparisonConfig(dg.Config):
    """Defaults: ``genre/comparison.ComparisonConfig``."""

    comparators: list[str] = list(_CMP.names)  # noqa: RUF012 - a Dagster (pydantic) config field: pydantic copies the default for each instance
    max_folds: int = _CMP.max_folds
    cnn_epochs: int = _CMP.cnn_epochs
    cnn_max_segments: int = _CMP.cnn_max_segments
    reference_candidates: list[str] = [c.name for c in _CMP.reference_candidates]  # noqa: RUF012 - a Dagster (pydantic) config field: pydantic copies the default for each instance
    shuffled: bool = _CMP.shuffled
    max_tracks: int = _CMP.max_tracks  # keep equal to genre_classifier's so both see the same subsample; 0: no budget
    seed: int = _CMP.seed

    def comparison(self) -> ComparisonConfig:
        return ComparisonConfig(
            names=tuple(self.comparators),
            max_folds=self.max_folds,
            cnn_epochs=self.cnn_epochs,
            cnn_max_segments=self.cnn_max_segments,
            shuffled=self.shuffled,
            seed=self.seed,
            max_tracks=self.max_tracks,
            reference_candidates=tuple(Candidate.parse(n) for n in self.reference_candidates),
        )


@dg.asset(
    group_name="genre",
    deps=[dg.AssetKey("embeddings"), dg.AssetKey("learned_embeddings"), GENRE_CLASSIFIER],
    kinds={"python", "tensorflow", "scikitlearn"},
    owners=["team:music-pipeline"],
    code_version="2",
    description=(
        "Every approach (the classifier's candidates, PCA + XGBoost, CNNs on mel patches, GLCM, segment pooling) "
        "on the genre_classifier's grouped folds, ranked by grouped balanced accuracy beside the shuffled score "
        "and the baseline: `<data>/reports/genre_models.md` and `.json`."
    ),
)
def genre_comparison(
    context: dg.AssetExecutionContext, config: GenreComparisonConfig, pipeline: MusicPipelineResource
) -> dg.MaterializeResult:
    why = retraining_metadata(context, pipeline.layout)
    store = pipeline.store
    record = run_genre_comparison(
        pipeline.layout, lambda content_hash: store.load(content_hash).segments, config.comparison(), context.log.info
    )
    if not record.compared:
        return dg.MaterializeResult(metadata=to_metadata(record.metadata))
    record_trained(context, pipeline.layout)
    return dg.MaterializeResult(metadata={**why, **to_metadata(record.metadata)})


__all__ = ["genre_classifier", "genre_classifier_beats_baseline", "genre_comparison", "track_genres"]

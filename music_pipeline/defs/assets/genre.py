"""group genre: the deployed genre classifier and the comparison of approaches.

The assets only wire the core (``models/genre/``, ``models/comparators.py``) to the data directory
and to Dagster's metadata. No automation condition on either: they train models, so a schedule
rebuilds them.
"""

import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from music_pipeline.artifacts import read_json, read_parquet, write_json, write_parquet, write_text
from music_pipeline.defs.metadata import png_md, table_md
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.retraining import record_trained, retraining_metadata
from music_pipeline.genre.candidates import Candidate, XgbSettings
from music_pipeline.genre.comparison import ComparisonConfig
from music_pipeline.genre.cv import SearchConfig
from music_pipeline.genre.training import BOUNDARY_MARGIN
from music_pipeline.layout import DataLayout

GENRE_CLASSIFIER = dg.AssetKey("genre_classifier")
_SEARCH, _XGB, _CMP = SearchConfig(), XgbSettings(), ComparisonConfig()  # every default lives in the core


def genre_table(pipeline: MusicPipelineResource) -> pd.DataFrame:
    """The embeddings table with the learned columns joined (absent before the learned table exists)."""
    from music_pipeline.learned.table import read_learned_table, with_learned

    return with_learned(read_parquet(pipeline.layout.embeddings_path), read_learned_table(pipeline.settings.data_dir))


class GenreClassifierConfig(dg.Config):
    """What the grouped-CV selection chooses among (defaults: ``models/genre/cv.SearchConfig``)."""

    candidates: list[str] = [c.name for c in _SEARCH.candidates]
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


def _write_track_genres(pipeline: MusicPipelineResource) -> tuple[pd.DataFrame, str] | None:
    """Every track classified by the deployed model (None when there is no model yet)."""
    from music_pipeline.genre.persistence import ModelFileError
    from music_pipeline.genre.serving import GenreService, classify_library

    try:
        service = GenreService.open(pipeline.settings.data_dir)
    except ModelFileError:
        return None
    genres = classify_library(service, genre_table(pipeline))
    write_parquet(pipeline.layout.track_genres_path, genres)
    return genres, service.version_dir.name


def _no_classifier(
    layout: DataLayout, data_n: int, n_unlabelled: int, labels: dict, reason: str
) -> dg.MaterializeResult:
    write_json(layout.genre_status_path, {"trained": False, "reason": reason, "labelled_tracks": data_n})
    return dg.MaterializeResult(
        metadata={
            "trained": False,
            "reason": reason,
            "labelled_tracks": data_n,
            "unlabelled_tracks": n_unlabelled,
            "labels": dg.MetadataValue.json(labels),
        }
    )


@dg.asset(
    group_name="genre",
    deps=[dg.AssetKey("embeddings"), dg.AssetKey("learned_embeddings")],
    kinds={"python", "scikitlearn"},
    owners=["team:music-pipeline"],
    code_version="2",
    description=(
        "Genre classifier. Candidates on the 641 hand-crafted dims, the learned (musicnn) embedding and their "
        "fusion — logistic regression, RBF SVM, KNN — scored on the same folds that keep sources apart "
        "(leave one group out up to 20 groups, else 10 grouped folds); the best is deployed and its estimate, "
        "with a 95 % CI from a bootstrap over groups, comes from a nested CV of the choice. Writes "
        "`<data>/models/genre/<version>/` (deployed/ model: JSON + .npz, no pickle; folds.json; cv_report.json; "
        "card.json; tag_profiles.json; CURRENT.json points at it), `<data>/tables/genre_predictions.parquet` "
        "(prediction, boundary flag and the deployed model's explanation per track), "
        "`<data>/reports/genre_classifier.md` and plots in `<data>/plots/genre/`. Unlabelled tracks are "
        "predicted, never trained on."
    ),
)
def genre_classifier(
    context: dg.AssetExecutionContext, config: GenreClassifierConfig, pipeline: MusicPipelineResource
) -> dg.MaterializeResult:
    from music_pipeline.genre.cv import fold_assignment, headline
    from music_pipeline.genre.persistence import save_model
    from music_pipeline.genre.report import model_card, report_markdown, write_plots
    from music_pipeline.genre.training import NotTrainable, train_genre_classifier
    from music_pipeline.genre.versions import publish_version

    layout = pipeline.layout
    why = retraining_metadata(context, layout)
    table = genre_table(pipeline)
    try:
        result = train_genre_classifier(table, config.search(), config.boundary_margin, on_progress=context.log.info)
    except NotTrainable as exc:
        context.log.warning(str(exc))
        labels = table["label"].dropna().astype(str)
        return _no_classifier(
            layout, len(labels), int(table["label"].isna().sum()), labels.value_counts().to_dict(), str(exc)
        )
    data, ev, deployed, report = result.data, result.ev, result.deployed, result.report
    trained_at = time.time()

    def write(vdir: Path) -> None:
        save_model(deployed, vdir / "deployed")
        write_json(vdir / "folds.json", fold_assignment(data, ev.plan))
        write_json(vdir / "cv_report.json", report)
        write_json(vdir / "tag_profiles.json", result.tag_profiles)
        write_json(vdir / "card.json", model_card(report, vdir.name, trained_at))

    vdir = publish_version(layout.genre_dir, write)
    card = read_json(vdir / "card.json")
    _write_track_genres(pipeline)  # every track, unlabelled ones too, by the model just deployed
    preds_path = write_parquet(layout.genre_predictions_path, result.predictions)
    plots = write_plots(result, layout.genre_plots_dir, config.waterfall_track)
    boundary = _boundary_df(result.predictions, result.boundary)
    examples = [(r.relpath, r.explanation) for r in result.predictions.itertuples()]
    report_path = write_text(layout.genre_report_path, report_markdown(report, ev.table(), boundary, examples))
    est = ev.estimate
    # the baseline to beat: the majority label per training fold, or chance when that scores lower
    # (under grouped folds the training majority can be anti-correlated with the held-out label)
    baseline = max(ev.baseline_grouped["balanced_accuracy"], 1 / len(data.classes)) if ev.baseline_grouped else None
    beats = bool(est.balanced_accuracy is not None and baseline is not None and est.balanced_accuracy > baseline)
    write_json(
        layout.genre_status_path,
        {
            "trained": True,
            "version": vdir.name,
            "deployed": deployed.candidate.name,
            "cv_possible": ev.plan.possible,
            "estimate_kind": est.method,
            "estimate": report["estimate"],
            "baseline": {**headline(ev.baseline_grouped), "balanced_accuracy": baseline},
            "beats_baseline": beats,
            "note": ev.note,
        },
    )
    context.log.info(f"deployed {deployed.candidate.name}; estimate {card['estimate']}")

    record_trained(context, layout)
    md = {
        **why,
        "trained": True,
        "deployed_model": deployed.candidate.name,
        "feature_view": deployed.candidate.features,
        "version": vdir.name,
        "trained_at": card["trained_at"],
        "training_size": data.n,
        "labelled_left_out_by_budget": data.n_over_budget,
        "model_dir": dg.MetadataValue.path(str(vdir)),
        "model_card": dg.MetadataValue.json(card),
        "unlabelled_tracks": data.n_unlabelled,
        "labels": dg.MetadataValue.json(pd.Series(data.labels).value_counts().to_dict()),
        "folds": ev.plan.note,
        "estimate_kind": est.method,
        "seconds": round(result.seconds, 1),
    }
    if est.balanced_accuracy is not None:
        md["grouped_balanced_accuracy"] = float(est.balanced_accuracy)  # the estimate (see estimate_kind)
        md["estimate_ci95_low"], md["estimate_ci95_high"] = float(est.ci95[0]), float(est.ci95[1])
        md["nested_balanced_accuracy_before_step"] = float(est.uncorrected)
        md.update({f"grouped_{k}": float(ev.nested[k]) for k in ("accuracy", "macro_f1")})
        md.update({f"baseline_{k}": float(v) for k, v in headline(ev.baseline_grouped).items()})
        if ev.result(ev.selected).shuffled:
            md.update({f"shuffled_{k}": float(v) for k, v in headline(ev.result(ev.selected).shuffled).items()})
        md["per_class"] = table_md(_per_class_df(ev.nested["per_class"], data.classes))
    md.update(
        {
            "candidates": table_md(ev.table().drop(columns=["kind", "family"], errors="ignore")),
            "nested_choices": ", ".join(ev.nested_choices) or "not run",
            "boundary_songs": table_md(boundary, floatfmt=".2f"),
            "explanations": dg.MetadataValue.md("\n".join(f"- `{p}`: {t}" for p, t in examples[:10])),
            "predictions_path": dg.MetadataValue.path(str(preds_path)),
            "report_path": dg.MetadataValue.path(str(report_path)),
        }
    )
    if result.shap is not None:
        md["explanation_method"] = result.shap.kind
        md["components"] = dg.MetadataValue.md(
            "\n".join(f"- {n}: {t}" for n, t in zip(result.shap.component_names, result.shap.component_text))
        )
    else:
        md["explanation_method"] = (
            f"nearest training tracks ({deployed.candidate.family} has no exact per-feature attribution)"
        )
    for name, path in plots.items():
        md[name] = png_md(path, name.replace("_", " ")) if not isinstance(path, str) else path
    return dg.MaterializeResult(metadata=md)


@dg.asset(
    group_name="genre",
    deps=[dg.AssetKey("embeddings"), dg.AssetKey("learned_embeddings"), GENRE_CLASSIFIER],
    kinds={"python", "parquet"},
    owners=["team:music-pipeline"],
    code_version="1",
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "The genre of every track by the deployed classifier, new and unlabelled tracks included, "
        "refreshed with the library tables (no retraining): `<data>/tables/track_genres.parquet` "
        "(key, relpath, label, genre, probability, runner_up, p_runner_up, model, version). Tracks "
        "whose inputs are not computed yet are left out and counted."
    ),
)
def track_genres(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    written = _write_track_genres(pipeline)
    if written is None:
        return dg.MaterializeResult(
            metadata={"classified": 0, "reason": "no genre model deployed yet (genre_classifier trains one)"}
        )
    genres, version = written
    n_tracks = len(read_parquet(pipeline.layout.embeddings_path, columns=["key"]))
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(pipeline.layout.track_genres_path)),
            "dagster/row_count": len(genres),
            "classified": len(genres),
            "without_inputs": n_tracks - len(genres),
            "model_version": version,
            "genres": dg.MetadataValue.json(genres["genre"].value_counts().to_dict()),
        }
    )


def _per_class_df(per_class: dict, classes: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"label": c, **{k: per_class[c][k] for k in ("precision", "recall", "f1-score", "support")}} for c in classes]
    )


def _boundary_df(preds: pd.DataFrame, bnd: pd.DataFrame) -> pd.DataFrame:
    if bnd.empty:
        return pd.DataFrame()
    p = preds.iloc[bnd["row"].to_numpy()]
    return pd.DataFrame(
        {
            "track": p["relpath"],
            "label": p["label"],
            "first": bnd["first"].to_numpy(),
            "p_first": bnd["p_first"].to_numpy(),
            "second": bnd["second"].to_numpy(),
            "p_second": bnd["p_second"].to_numpy(),
            "source": p["probability_source"],
        }
    )


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
        passed=bool(st["beats_baseline"]),
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
    """Defaults: ``models/comparators.ComparisonConfig``."""

    comparators: list[str] = list(_CMP.names)
    max_folds: int = _CMP.max_folds
    cnn_epochs: int = _CMP.cnn_epochs
    cnn_max_segments: int = _CMP.cnn_max_segments
    reference_candidates: list[str] = [c.name for c in _CMP.reference_candidates]
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
        "Every approach on the same grouped folds (the genre_classifier's, merged into at most `max_folds` "
        "folds over the same groups so the costly comparators train a bounded number of times), ranked by "
        "grouped balanced accuracy with the shuffled score and the majority baseline beside it: the "
        "classifier's candidates (641 dims, learned embedding, fusion), the reference design (PCA + XGBoost), "
        "CNNs on MFCC and chroma patches of the mel segments, the CNN+KNN hybrid, GLCM texture + SVM and "
        "GLCM fused with the embedding, and a level-free segment-pooled model. Writes "
        "`<data>/reports/genre_models.md` and `<data>/reports/genre_models.json`."
    ),
)
def genre_comparison(
    context: dg.AssetExecutionContext, config: GenreComparisonConfig, pipeline: MusicPipelineResource
) -> dg.MaterializeResult:
    from music_pipeline.genre.comparison import compare_all

    layout = pipeline.layout
    out_md, out_json = layout.genre_comparison_paths
    st = (
        read_json(layout.genre_status_path)
        if layout.genre_status_path.is_file()
        else {"trained": False, "reason": "genre_classifier has not run"}
    )
    if not st.get("trained"):
        reason = f"no comparison: {st.get('reason')}"
        write_text(out_md, f"# Genre models\n\n{reason}\n")
        return dg.MaterializeResult(
            metadata={"compared": False, "reason": reason, "report_path": dg.MetadataValue.path(str(out_md))}
        )

    store = pipeline.store

    def load_segments(content_hash: str) -> np.ndarray:
        return store.load(content_hash).segments

    why = retraining_metadata(context, layout)
    outcome = compare_all(
        genre_table(pipeline), layout.genre_dir, load_segments, config.comparison(), on_progress=context.log.info
    )
    write_text(out_md, outcome.markdown)
    write_json(out_json, outcome.json)
    record_trained(context, layout)
    md = {
        **why,
        "compared": True,
        "models": len(outcome.table),
        "ranked_table": table_md(outcome.table.drop(columns=["note"])),
        "notes": table_md(outcome.table[["rank", "model", "note"]]),
        "remarks": dg.MetadataValue.md("\n".join(f"- {r}" for r in outcome.remarks)),
        "folds": outcome.folds_note,
        "seconds": round(outcome.seconds, 1),
        "report_path": dg.MetadataValue.path(str(out_md)),
    }
    if outcome.best is not None:
        md["best_model"], md["best_grouped_balanced_accuracy"] = outcome.best
    return dg.MaterializeResult(metadata=md)


__all__ = ["genre_classifier", "genre_classifier_beats_baseline", "genre_comparison", "track_genres"]

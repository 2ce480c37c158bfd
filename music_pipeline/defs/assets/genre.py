"""group genre: the deployed genre classifier (with SHAP explanations) and the comparison of approaches.

No automation condition on either asset: they train models, so a schedule rebuilds them.
"""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from music_pipeline.defs.metadata import png_md, table_md
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.features.embedding import FEATURE_NAMES
from music_pipeline.models.comparators import ALL_COMPARATORS
from music_pipeline.models.genre import FAMILIES, FEATURE_SETS
from music_pipeline.storage import DataLayout, read_json, read_parquet, write_json, write_parquet, write_text

GENRE_CLASSIFIER = dg.AssetKey("genre_classifier")


def genre_root(layout: DataLayout) -> Path:
    return layout.models_dir / "genre"


def status_path(layout: DataLayout) -> Path:
    return genre_root(layout) / "status.json"


class GenreClassifierConfig(dg.Config):
    """Search space of the grouped-CV selection (defaults: see models/genre.SearchConfig)."""

    families: list[str] = list(FAMILIES)
    feature_sets: list[str] = list(FEATURE_SETS)
    pca_components: list[int] = [15, 40]
    max_depth: list[int] = [2, 3]
    logreg_c: list[float] = [0.02, 0.2]
    knn_k: list[int] = [7]
    n_estimators: int = 200
    learning_rate: float = 0.05
    nested: bool = True
    boundary_margin: float = 0.15
    waterfall_track: str = ""  # key or part of a relpath; default: the closest boundary song
    seed: int = 0

    def search(self):
        from music_pipeline.models.genre import SearchConfig, XgbSettings

        return SearchConfig(
            families=tuple(self.families), feature_sets=tuple(self.feature_sets), pca_grid=tuple(self.pca_components),
            depth_grid=tuple(self.max_depth), logreg_C=tuple(self.logreg_c), knn_k=tuple(self.knn_k),
            xgb=XgbSettings(n_estimators=self.n_estimators, learning_rate=self.learning_rate), nested=self.nested, seed=self.seed,
        )


def _candidate_json(r) -> dict:
    from music_pipeline.models.genre import headline

    c = r.candidate
    return {"name": c.name, "kind": c.kind, "family": c.family, "features": c.features, "grouped": headline(r.grouped), "shuffled": headline(r.shuffled)}


def _no_classifier(layout: DataLayout, data, reason: str) -> dg.MaterializeResult:
    write_json(status_path(layout), {"trained": False, "reason": reason, "labelled_tracks": data.n})
    return dg.MaterializeResult(metadata={
        "trained": False,
        "reason": reason,
        "labelled_tracks": data.n,
        "unlabelled_tracks": data.n_unlabelled,
        "labels": dg.MetadataValue.json(pd.Series(data.labels).value_counts().to_dict()),
    })


@dg.asset(
    group_name="genre",
    deps=[dg.AssetKey("embeddings")],
    kinds={"python", "xgboost", "scikitlearn"},
    owners=["team:music-pipeline"],
    code_version="1",
    description=(
        "Genre classifier on the 641-D embedding. Grouped CV (StratifiedGroupKFold on the `group` column, "
        "else per track) beside shuffled CV and the majority baseline; XGBoost (scaler → PCA → regularised "
        "trees), logistic regression and KNN candidates; the best on grouped CV is deployed and its estimate "
        "comes from a nested grouped CV of the selection. Writes `<data>/models/genre/<version>/` "
        "(deployed/ and explainer/ models: JSON + .npz + XGBoost UBJ, no pickle; folds.json; cv_report.json; "
        "CURRENT.json points at it), `<data>/tables/genre_predictions.parquet` (prediction, boundary flag and "
        "plain-language explanation per track), `<data>/reports/genre_classifier.md` and SHAP / confusion "
        "plots in `<data>/plots/genre/`. Unlabelled tracks are predicted, never trained on."
    ),
)
def genre_classifier(context: dg.AssetExecutionContext, config: GenreClassifierConfig, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    from music_pipeline.models import explain as ex
    from music_pipeline.models.genre import Candidate, best_xgb, evaluate, fit_deployed, fold_assignment, headline, labelled_data, publish_version

    layout = pipeline.layout
    df = read_parquet(layout.embeddings_path)
    data = labelled_data(df)
    if len(data.classes) < 2:
        found = f"found {len(data.classes)} ({', '.join(data.classes) or 'none'})"
        reason = f"no classifier can be trained: at least 2 labels are needed, {found} among {data.n} labelled tracks"
        context.log.warning(reason)
        return _no_classifier(layout, data, reason)

    search = config.search()
    ev = evaluate(data, search, on_progress=context.log.info)
    deployed = fit_deployed(data, ev.selected, search)
    explainer_c = ev.selected if ev.selected.family == "xgb" else (best_xgb(ev) or Candidate("xgb", ev.selected.features, pca=15))
    explainer = deployed if explainer_c == ev.selected else fit_deployed(data, explainer_c, search)
    estimate_kind, estimate = ev.estimate()

    # per-track outputs: every track of the table, labelled or not
    X_all = df[FEATURE_NAMES].to_numpy(dtype=np.float64)
    deployed_proba = deployed.predict_proba(X_all)
    shap_res = ex.tree_shap(explainer, X_all)
    expl_proba = explainer.predict_proba(X_all)
    explanations = [ex.explain_track(explainer, shap_res, i, expl_proba[i]) for i in range(len(df))]
    # boundary songs from honest probabilities: out-of-fold for labelled tracks, the model's for unlabelled
    proba_for_boundary = deployed_proba.copy()
    source = np.array(["deployed model (unlabelled)"] * len(df), dtype=object)
    labelled_rows = np.flatnonzero(df["key"].astype(str).isin(set(data.keys)).to_numpy())
    if ev.plan.possible:
        oof = ev.result(ev.selected).grouped_proba
        row_of = {k: i for i, k in enumerate(data.keys)}
        for r in labelled_rows:
            proba_for_boundary[r] = oof[row_of[str(df["key"].iloc[r])]]
            source[r] = "out-of-fold (grouped CV)"
    else:
        source[labelled_rows] = "deployed model (in-sample: no CV possible)"
    bnd = ex.boundary_songs(proba_for_boundary, deployed.classes, config.boundary_margin)
    order = np.argsort(-proba_for_boundary, axis=1)
    preds = pd.DataFrame({
        "key": df["key"].astype(str), "relpath": df["relpath"].astype(str), "label": df["label"],
        "predicted": [deployed.classes[i] for i in deployed_proba.argmax(1)],
        "p_predicted": deployed_proba.max(1),
        "first": [deployed.classes[o[0]] for o in order], "p_first": proba_for_boundary[np.arange(len(df)), order[:, 0]],
        "second": [deployed.classes[o[1]] for o in order], "p_second": proba_for_boundary[np.arange(len(df)), order[:, 1]],
        "probability_source": source,
        "boundary": np.isin(np.arange(len(df)), bnd["row"].to_numpy()),
        "explanation": [e["text"] for e in explanations],
    })
    for c, name in enumerate(deployed.classes):
        preds[f"p_{name}"] = deployed_proba[:, c]

    # files
    plots = layout.plots_dir / "genre"
    confusion_m = estimate or (ev.result(ev.selected).grouped if ev.results else None)
    cm_png = ex.plot_confusion(confusion_m["confusion"], data.classes, plots / "confusion_grouped_cv.png", f"{estimate_kind}: {deployed.candidate.name}") if confusion_m else None
    bar_png = ex.plot_global_bar(shap_res, plots / "shap_bar.png")
    bee_png = ex.plot_beeswarm(shap_res, expl_proba, plots / "shap_beeswarm.png")
    dep_png, dep_component = ex.plot_dependence(shap_res, plots / "shap_dependence_top.png")
    wf_row = _waterfall_row(df, config.waterfall_track, bnd)
    wf_png = ex.plot_waterfall(shap_res, wf_row, plots / "shap_waterfall.png", title=f"{df['relpath'].iloc[wf_row]}: toward {explanations[wf_row]['label']} (log-odds)")

    report = {
        "classes": data.classes, "n_labelled": data.n, "n_unlabelled": data.n_unlabelled, "n_with_group": data.n_with_group,
        "fold_note": ev.plan.note, "n_splits": ev.plan.n_splits, "cv_possible": ev.plan.possible,
        "candidates": [_candidate_json(r) for r in ev.results],
        "selected": ev.selected.name, "deployed": deployed.candidate.name, "explainer": explainer.candidate.name,
        "estimate_kind": estimate_kind, "nested": headline(ev.nested), "nested_choices": ev.nested_choices,
        "estimate": headline(estimate), "per_class": (estimate or {}).get("per_class"), "confusion": (estimate or {}).get("confusion"),
        "baseline_grouped": headline(ev.baseline_grouped), "baseline_shuffled": headline(ev.baseline_shuffled),
        "selected_shuffled": headline(ev.result(ev.selected).shuffled) if ev.results else {},
        "selected_grouped_flat": headline(ev.result(ev.selected).grouped) if ev.results else {},
    }

    def write(vdir: Path) -> None:
        deployed.save(vdir / "deployed")
        if explainer is not deployed:  # SHAP needs the trees; classify falls back to deployed/ otherwise
            explainer.save(vdir / "explainer")
        write_json(vdir / "folds.json", fold_assignment(data, ev.plan))
        write_json(vdir / "cv_report.json", report)

    vdir = publish_version(genre_root(layout), write)
    preds_path = write_parquet(layout.tables_dir / "genre_predictions.parquet", preds)
    cand_table = ev.table()
    report_md = _classifier_markdown(report, cand_table, preds, bnd)
    report_path = write_text(layout.reports_dir / "genre_classifier.md", report_md)
    beats = bool(estimate and ev.baseline_grouped and estimate["balanced_accuracy"] > ev.baseline_grouped["balanced_accuracy"])
    write_json(status_path(layout), {
        "trained": True, "version": vdir.name, "deployed": deployed.candidate.name, "cv_possible": ev.plan.possible,
        "estimate_kind": estimate_kind, "estimate": headline(estimate), "baseline": headline(ev.baseline_grouped),
        "beats_baseline": beats, "note": ev.note,
    })
    if ev.selected.family != "xgb":
        context.log.info(f"deployed {ev.selected.name} (best on grouped CV); SHAP explanations come from {explainer.candidate.name}")

    md = {
        "trained": True,
        "deployed_model": deployed.candidate.name,
        "explainer_model": explainer.candidate.name,
        "model_dir": dg.MetadataValue.path(str(vdir)),
        "labelled_tracks": data.n,
        "unlabelled_tracks": data.n_unlabelled,
        "labels": dg.MetadataValue.json(pd.Series(data.labels).value_counts().to_dict()),
        "folds": ev.plan.note,
        "estimate_kind": estimate_kind,
    }
    if estimate:
        md.update({f"grouped_{k}": float(v) for k, v in headline(estimate).items()})
        md.update({f"baseline_{k}": float(v) for k, v in headline(ev.baseline_grouped).items()})
        md.update({f"shuffled_{k}": float(v) for k, v in headline(ev.result(ev.selected).shuffled).items()})
        md["per_class"] = table_md(_per_class_df(estimate["per_class"], data.classes))
    md.update({
        "candidates": table_md(cand_table.drop(columns=["kind", "family"], errors="ignore")),
        "nested_choices": ", ".join(ev.nested_choices) or "not run",
        "boundary_songs": table_md(_boundary_df(preds, bnd), floatfmt=".2f"),
        "explanations": dg.MetadataValue.md("\n".join(f"- `{r.relpath}`: {r.explanation}" for r in preds.head(10).itertuples())),
        "dependence_component": f"{dep_component}: {shap_res.component_text[int(dep_component[2:]) - 1]}",
        "components": dg.MetadataValue.md("\n".join(f"- {n}: {t}" for n, t in zip(shap_res.component_names, shap_res.component_text))),
        "shap_bar": png_md(bar_png, "SHAP bar"),
        "shap_beeswarm": png_md(bee_png, "SHAP beeswarm"),
        "shap_dependence": png_md(dep_png, "SHAP dependence"),
        "shap_waterfall": png_md(wf_png, "SHAP waterfall"),
        "predictions_path": dg.MetadataValue.path(str(preds_path)),
        "report_path": dg.MetadataValue.path(str(report_path)),
    })
    if cm_png:
        md["confusion_matrix"] = png_md(cm_png, "confusion matrix")
    return dg.MaterializeResult(metadata=md)


def _waterfall_row(df: pd.DataFrame, wanted: str, bnd: pd.DataFrame) -> int:
    if wanted:
        hits = np.flatnonzero((df["key"].astype(str) == wanted) | df["relpath"].astype(str).str.contains(wanted, regex=False))
        if len(hits):
            return int(hits[0])
    return int(bnd["row"].iloc[0]) if len(bnd) else 0


def _per_class_df(per_class: dict, classes: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{"label": c, **{k: per_class[c][k] for k in ("precision", "recall", "f1-score", "support")}} for c in classes])


def _boundary_df(preds: pd.DataFrame, bnd: pd.DataFrame) -> pd.DataFrame:
    if bnd.empty:
        return pd.DataFrame()
    p = preds.iloc[bnd["row"].to_numpy()]
    return pd.DataFrame({"track": p["relpath"], "label": p["label"], "first": bnd["first"].to_numpy(), "p_first": bnd["p_first"].to_numpy(),
                         "second": bnd["second"].to_numpy(), "p_second": bnd["p_second"].to_numpy(), "source": p["probability_source"]})


def _fmt(m: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in m.items()) if m else "n/a"


def _classifier_markdown(report: dict, cand_table: pd.DataFrame, preds: pd.DataFrame, bnd: pd.DataFrame) -> str:
    lines = [
        "# Genre classifier", "",
        f"- deployed: **{report['deployed']}** (SHAP explainer: {report['explainer']})"
        + ("" if report["deployed"].startswith("xgb") else " — XGBoost is not the best on grouped CV here, so the winner is deployed"),
        f"- tracks: {report['n_labelled']} labelled ({report['n_with_group']} with a group), {report['n_unlabelled']} unlabelled (not trained on)",
        f"- folds: {report['fold_note']}",
        f"- estimate ({report['estimate_kind']}): {_fmt(report['estimate'])}",
        f"- majority baseline (grouped): {_fmt(report['baseline_grouped'])}",
        f"- selected config, flat grouped CV: {_fmt(report['selected_grouped_flat'])}; shuffled CV: {_fmt(report['selected_shuffled'])}",
        f"- nested choices per outer fold: {', '.join(report['nested_choices']) or 'not run'}", "",
        "## Candidates (same folds)", "", cand_table.to_markdown(index=False, floatfmt=".3f") if len(cand_table) else "_none_", "",
        "## Boundary songs", "", _boundary_df(preds, bnd).to_markdown(index=False, floatfmt=".2f") if len(bnd) else "_none_", "",
        "## Explanations", "",
    ]
    lines += [f"- `{r.relpath}`: {r.explanation}" for r in preds.itertuples()]
    return "\n".join(lines) + "\n"


@dg.asset_check(asset=genre_classifier, description="The deployed procedure beats the majority-class baseline in balanced accuracy on grouped CV.")
def genre_classifier_beats_baseline(pipeline: MusicPipelineResource) -> dg.AssetCheckResult:
    path = status_path(pipeline.layout)
    if not path.is_file():
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no status.json: the classifier never ran"})
    st = read_json(path)
    if not st.get("trained"):
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"reason": st.get("reason", "not trained")})
    if not st.get("cv_possible"):
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"reason": st.get("note", "no grouped CV possible")})
    est, base = st["estimate"], st["baseline"]
    return dg.AssetCheckResult(
        passed=bool(st["beats_baseline"]),
        metadata={
            "estimate_kind": st["estimate_kind"],
            "balanced_accuracy": float(est["balanced_accuracy"]),
            "baseline_balanced_accuracy": float(base["balanced_accuracy"]),
            "accuracy": float(est["accuracy"]),
            "baseline_accuracy": float(base["accuracy"]),
        },
    )


class GenreComparisonConfig(dg.Config):
    comparators: list[str] = list(ALL_COMPARATORS)
    cnn_epochs: int = 20
    cnn_patience: int = 3
    shuffled: bool = True
    seed: int = 0


@dg.asset(
    group_name="genre",
    deps=[dg.AssetKey("embeddings"), GENRE_CLASSIFIER],
    kinds={"python", "tensorflow", "scikitlearn"},
    owners=["team:music-pipeline"],
    code_version="1",
    description=(
        "Every approach on the genre_classifier's own folds, ranked by grouped balanced accuracy with the "
        "shuffled score and the majority baseline beside it: the embedding models (XGBoost, logistic "
        "regression, KNN; full and level-invariant views), CNNs on MFCC and chroma patches of the mel "
        "segments, the CNN+KNN hybrid, GLCM texture + SVM and GLCM fused with the embedding, and a "
        "level-free segment-pooled model. Writes `<data>/reports/genre_models.md` and "
        "`<data>/reports/genre_models.json`."
    ),
)
def genre_comparison(context: dg.AssetExecutionContext, config: GenreComparisonConfig, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    from music_pipeline.models.comparators import (
        ComparisonConfig, ComparisonData, classifier_rows, comparator_rows, ranked_table, report_markdown, run_comparison,
    )
    from music_pipeline.models.genre import current_version, labelled_data, make_folds, plan_from_assignment, to_jsonable

    layout = pipeline.layout
    out_md, out_json = layout.reports_dir / "genre_models.md", layout.reports_dir / "genre_models.json"
    st = read_json(status_path(layout)) if status_path(layout).is_file() else {"trained": False, "reason": "genre_classifier has not run"}
    if not st.get("trained"):
        reason = f"no comparison: {st.get('reason')}"
        write_text(out_md, f"# Genre models\n\n{reason}\n")
        return dg.MaterializeResult(metadata={"compared": False, "reason": reason, "report_path": dg.MetadataValue.path(str(out_md))})

    df = read_parquet(layout.embeddings_path)
    data = labelled_data(df)
    vdir = current_version(genre_root(layout))
    cv_report = read_json(vdir / "cv_report.json")
    plan = plan_from_assignment(read_json(vdir / "folds.json"), data.keys)
    folds_note = "the genre_classifier's folds (folds.json)"
    if plan is None:  # the table changed since the classifier ran: same procedure, same seed
        plan = make_folds(data.y, data.groups, seed=config.seed, classes=data.classes)
        folds_note = "recomputed folds: the labelled tracks changed since genre_classifier ran (rebuild it to compare like with like)"
        context.log.warning(folds_note)

    store = pipeline.store
    hashes = df.set_index(df["key"].astype(str))["content_hash"]
    try:
        segments = np.stack([store.load(hashes[k]).segments for k in data.keys])
    except Exception as exc:  # features not on disk (different n_segments, pruned cache): skip the segment models
        context.log.warning(f"mel segments unavailable, segment comparators skipped: {exc}")
        segments = None
    cmp_config = ComparisonConfig(names=tuple(config.comparators), cnn_epochs=config.cnn_epochs, cnn_patience=config.cnn_patience, shuffled=config.shuffled, seed=config.seed)
    results = run_comparison(ComparisonData(data.X, data.y, data.classes, data.groups, segments), plan, cmp_config, on_progress=context.log.info)
    table = ranked_table(classifier_rows(cv_report) + comparator_rows(results))

    remarks = []
    scored = table.dropna(subset=["grouped_bal_acc"])
    scored = scored[scored["approach"] != "baseline"]
    if len(scored):
        top = scored.iloc[0]
        remarks.append(f"best on grouped CV: **{top['model']}** (balanced accuracy {top['grouped_bal_acc']:.3f}).")
        if not str(top["deployable"]).startswith("yes"):
            remarks.append(f"it is not deployed ({top['deployable'][4:]}); deployed instead: {cv_report['deployed']}, the best model that saves without pickle.")
    if not cv_report["deployed"].startswith("xgb"):
        remarks.append(f"the reference design (scaler → PCA → XGBoost) is not the winner on grouped CV, so {cv_report['deployed']} is "
                       f"deployed; SHAP explanations stay available from {cv_report['explainer']}.")
    remarks.append(f"deployed: {cv_report['deployed']}; its honest estimate ({cv_report['estimate_kind']}): {_fmt(cv_report['estimate'])}.")
    if data.n_with_group == 0:
        remarks.append("no track has a group (artist/album/source), so every track is its own group: grouped and shuffled "
                       "CV are the same kind of split and neither measures generalisation to unseen sources.")
    gaps = table["gap"].dropna()
    if len(gaps):
        remarks.append(f"shuffled − grouped balanced accuracy: median {gaps.median():+.3f}, largest {gaps.max():+.3f}.")
    header = {
        "labelled tracks": data.n, "labels": ", ".join(data.classes), "folds": f"{plan.note} — {folds_note}",
        "comparators": ", ".join(config.comparators) or "none", "CNN epochs (max, early stopping)": config.cnn_epochs,
    }
    write_text(out_md, report_markdown(table, header, remarks))
    write_json(out_json, to_jsonable({"header": header, "remarks": remarks, "table": table.to_dict(orient="records")}))
    md = {
        "compared": True,
        "models": len(table),
        "ranked_table": table_md(table.drop(columns=["note"])),
        "notes": table_md(table[["rank", "model", "note"]]),
        "remarks": dg.MetadataValue.md("\n".join(f"- {r}" for r in remarks)),
        "folds": folds_note,
        "report_path": dg.MetadataValue.path(str(out_md)),
    }
    if len(scored):
        md["best_model"] = str(scored.iloc[0]["model"])
        md["best_grouped_balanced_accuracy"] = float(scored.iloc[0]["grouped_bal_acc"])
    return dg.MaterializeResult(metadata=md)


__all__ = ["genre_classifier", "genre_classifier_beats_baseline", "genre_comparison"]

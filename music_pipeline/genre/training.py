"""One training run of the genre classifier, from the library tables to everything it publishes.

``train_genre_classifier`` trains: every candidate on the same grouped folds, the nested
estimate with its CI, the deployed model fitted on all labelled tracks, a prediction and an
explanation of the *deployed* model for every track (labelled or not), boundary songs from
out-of-fold probabilities, and the tagger's label profiles for the plain-language layer.
``run_genre_classifier`` is what the ``genre_classifier`` asset runs: it trains, publishes a model
version, writes the predictions, every track's genre, the plots, the report and ``status.json``, and
returns a ``GenreClassifierRecord`` (its metadata and the facts the asset check judges).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from music_pipeline.artifacts import ArtifactPath, read_json, write_json, write_parquet, write_text
from music_pipeline.genre import explain as ex
from music_pipeline.genre.candidates import GenreModel
from music_pipeline.genre.cv import Evaluation, SearchConfig, evaluate, fit_deployed, fold_assignment, headline
from music_pipeline.genre.data import (
    BLOCK_COLUMNS,
    TAGS,
    LabelledData,
    labelled_data,
    view_blocks,
    within_budget,
)
from music_pipeline.genre.persistence import save_model
from music_pipeline.genre.report import build_report, model_card, report_markdown, write_plots
from music_pipeline.genre.serving import library_table, write_track_genres
from music_pipeline.genre.versions import publish_version
from music_pipeline.layout import DataLayout
from music_pipeline.records import FilePath, Json, Markdown, Plot, Table

BOUNDARY_MARGIN = 0.15  # top two probabilities closer than this make a "boundary song"


class NotTrainable(ValueError):
    """Fewer than 2 labels: no classifier can be trained (the message says what was found)."""


@dataclass
class TrainingResult:
    data: LabelledData
    ev: Evaluation
    deployed: GenreModel
    report: dict
    predictions: pd.DataFrame  # one row per track of the table
    boundary: pd.DataFrame  # rows of predictions whose top two classes are close
    shap: object | None  # explain.ShapResult of the deployed model over the predicted rows, when exact
    shap_rows: np.ndarray  # rows of ``predictions`` that ``shap`` covers
    tag_profiles: dict = field(default_factory=dict)
    seconds: float = 0.0


def _rows_with(inputs: dict, blocks) -> np.ndarray:
    n = len(next(iter(inputs.values())))
    ok = np.ones(n, dtype=bool)
    for b in blocks:
        ok &= np.isfinite(inputs[b]).all(axis=1) if b in inputs else False
    return np.flatnonzero(ok)


def _all_inputs(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every block present in the table, NaN rows kept (a track without a learned embedding)."""
    return {
        block: table[cols].to_numpy(dtype=np.float64)
        for block, cols in BLOCK_COLUMNS.items()
        if all(c in table for c in cols)
    }


def train_genre_classifier(
    table: pd.DataFrame,
    config: SearchConfig,
    boundary_margin: float = BOUNDARY_MARGIN,
    on_progress: Callable[[str], None] | None = None,
) -> TrainingResult:
    """``table``: the embeddings table joined with the learned table (``learned.table.with_learned``)."""
    t0 = time.perf_counter()
    say = on_progress or (lambda _m: None)
    data = within_budget(labelled_data(table), config.max_tracks, config.seed)
    if data.n_over_budget:
        say(
            f"training on {data.n} of {data.n + data.n_over_budget} labelled tracks (budget max_tracks={config.max_tracks}, each label's share kept)"
        )
    if len(data.classes) < 2:
        found = f"found {len(data.classes)} ({', '.join(data.classes) or 'none'})"
        raise NotTrainable(
            f"no classifier can be trained: at least 2 labels are needed, {found} among {data.n} labelled tracks"
        )
    ev = evaluate(data, config, say)
    say(f"fitting the deployed model {ev.selected.name} on {data.n} tracks")
    deployed = fit_deployed(data, ev.selected, config)
    deployed.info.update(train_relpaths=data.relpaths.tolist(), train_labels=data.labels.tolist())

    inputs = _all_inputs(table)
    rows = _rows_with(inputs, view_blocks(deployed.candidate.features))
    n = len(table)
    proba = np.full((n, len(deployed.classes)), np.nan)
    if len(rows):
        proba[rows] = deployed.predict_proba({k: v[rows] for k, v in inputs.items()})
    # boundary songs from honest probabilities: out-of-fold for labelled tracks, the model's for the rest
    honest = proba.copy()
    source = np.array(["deployed model (unlabelled)"] * n, dtype=object)
    keys = table["key"].astype(str).to_numpy()
    if data.n_over_budget:  # labelled, but not trained on: the deployed model's own probability is honest for them
        left_out = (
            table["label"].notna().to_numpy()
            & (table["label"].astype(str).str.strip() != "").to_numpy()
            & ~np.isin(keys, data.keys)
        )
        source[left_out] = "deployed model (labelled, left out by the training budget)"
    labelled_rows = np.flatnonzero(np.isin(keys, data.keys))
    if ev.plan.possible:
        oof = ev.result(ev.selected).grouped_proba
        pos = {k: i for i, k in enumerate(data.keys)}
        for r in labelled_rows:
            honest[r] = oof[pos[keys[r]]]
            source[r] = "out-of-fold (grouped CV)"
    else:
        source[labelled_rows] = "deployed model (in-sample: no CV possible)"
    predicted = np.isfinite(proba).all(axis=1)
    source[~predicted] = "not predicted: inputs missing"
    bnd = ex.boundary_songs(np.nan_to_num(honest[predicted]), deployed.classes, boundary_margin)
    bnd["row"] = np.flatnonzero(predicted)[bnd["row"].to_numpy()] if len(bnd) else bnd["row"]

    profiles = ex.tag_profiles(data.blocks[TAGS], data.labels) if TAGS in data.blocks else {}
    say("explaining the deployed model's predictions")
    sub = {k: v[rows] for k, v in inputs.items()}
    shap_res = ex.attribution(deployed, sub) if len(rows) else None
    texts = np.array(["not predicted: the track lacks the inputs of the deployed model"] * n, dtype=object)
    for j, r in enumerate(rows):
        tags_row = inputs[TAGS][r] if TAGS in inputs else None
        texts[r] = ex.explain_prediction(deployed, sub, j, proba[r], shap_res, tags_row, profiles)["text"]

    order = np.argsort(-np.nan_to_num(honest, nan=-1), axis=1)
    top = lambda k: [deployed.classes[o[k]] if ok else None for o, ok in zip(order, predicted, strict=True)]
    pick = lambda k: np.where(predicted, honest[np.arange(n), order[:, k]], np.nan)
    preds = pd.DataFrame(
        {
            "key": keys,
            "relpath": table["relpath"].astype(str).to_numpy(),
            "label": table["label"].to_numpy(),
            "predicted": [
                deployed.classes[int(i)] if ok else None
                for i, ok in zip(np.nan_to_num(proba, nan=-1).argmax(1), predicted, strict=True)
            ],
            "p_predicted": np.nanmax(np.where(predicted[:, None], proba, -np.inf), axis=1).clip(min=0),
            "first": top(0),
            "p_first": pick(0),
            "second": top(1),
            "p_second": pick(1),
            "probability_source": source,
            "boundary": np.isin(np.arange(n), bnd["row"].to_numpy()),
            "explanation": texts,
        }
    )
    preds.loc[~predicted, "p_predicted"] = np.nan
    for c, name in enumerate(deployed.classes):
        preds[f"p_{name}"] = proba[:, c]
    seconds = time.perf_counter() - t0
    report = build_report(data, ev, deployed.candidate.name, seconds)
    return TrainingResult(data, ev, deployed, report, preds, bnd, shap_res, rows, profiles, seconds)


# ---------------------------------------------------------------- the published run


@dataclass
class GenreClassifierRecord:
    """What one ``genre_classifier`` run published: its metadata (``music_pipeline.records`` values)
    and the facts the asset check judges (the same facts ``status.json`` holds)."""

    trained: bool
    metadata: dict
    status: dict  # as written to status.json
    message: str = ""  # one line for the run log


def is_beating_baseline(status: dict) -> bool:
    """The deployed procedure's estimate is above the baseline (the higher of the per-fold majority
    label and chance) in balanced accuracy."""
    est = (status.get("estimate") or {}).get("balanced_accuracy")
    base = (status.get("baseline") or {}).get("balanced_accuracy")
    return bool(est is not None and base is not None and est > base)


def run_genre_classifier(
    layout: DataLayout,
    config: SearchConfig,
    boundary_margin: float = BOUNDARY_MARGIN,
    waterfall_track: str = "",
    on_progress: Callable[[str], None] | None = None,
) -> GenreClassifierRecord:
    """Train on the library tables and publish everything (see the module docstring). Fewer than 2
    labels: nothing is trained, ``status.json`` says why."""
    say = on_progress or (lambda _m: None)
    table = library_table(layout)
    try:
        result = train_genre_classifier(table, config, boundary_margin, on_progress=say)
    except NotTrainable as exc:
        labels = table["label"].dropna().astype(str)
        status = {"trained": False, "reason": str(exc), "labelled_tracks": len(labels)}
        write_json(layout.genre_status_path, status)
        metadata = {
            "trained": False,
            "reason": str(exc),
            "labelled_tracks": len(labels),
            "unlabelled_tracks": int(table["label"].isna().sum()),
            "labels": Json(labels.value_counts().to_dict()),
        }
        return GenreClassifierRecord(False, metadata, status, message=str(exc))
    vdir, card = _publish(result, layout.genre_dir)
    write_track_genres(layout, table)  # every track, unlabelled ones too, by the model just deployed
    preds_path = write_parquet(layout.genre_predictions_path, result.predictions)
    plots = write_plots(result, layout.genre_plots_dir, waterfall_track)
    boundary = _boundary_df(result.predictions, result.boundary)
    examples = [(r.relpath, r.explanation) for r in result.predictions.itertuples()]
    markdown = report_markdown(result.report, result.ev.table(), boundary, examples)
    report_path = write_text(layout.genre_report_path, markdown)
    status = _status(result, vdir.name)
    write_json(layout.genre_status_path, status)
    metadata = _metadata(result, vdir, card, boundary, examples, plots, preds_path, report_path)
    message = f"deployed {result.deployed.candidate.name}; estimate {card['estimate']}"
    return GenreClassifierRecord(True, metadata, status, message)


def _publish(result: TrainingResult, root: ArtifactPath) -> tuple[ArtifactPath, dict]:
    data, ev, report = result.data, result.ev, result.report
    trained_at = time.time()

    def write(vdir: Path) -> None:
        save_model(result.deployed, vdir / "deployed")
        write_json(vdir / "folds.json", fold_assignment(data, ev.plan))
        write_json(vdir / "cv_report.json", report)
        write_json(vdir / "tag_profiles.json", result.tag_profiles)
        write_json(vdir / "card.json", model_card(report, vdir.name, trained_at))

    vdir = publish_version(root, write)
    return vdir, read_json(vdir / "card.json")


def _status(result: TrainingResult, version: str) -> dict:
    ev, est = result.ev, result.ev.estimate
    # the baseline to beat: the majority label per training fold, or chance when that scores lower
    # (under grouped folds the training majority can be anti-correlated with the held-out label)
    baseline = (
        max(ev.baseline_grouped["balanced_accuracy"], 1 / len(result.data.classes)) if ev.baseline_grouped else None
    )
    status = {
        "trained": True,
        "version": version,
        "deployed": result.deployed.candidate.name,
        "cv_possible": ev.plan.possible,
        "estimate_kind": est.method,
        "estimate": result.report["estimate"],
        "baseline": {**headline(ev.baseline_grouped), "balanced_accuracy": baseline},
    }
    status["beats_baseline"] = is_beating_baseline(status)
    status["note"] = ev.note
    return status


def _metadata(result, vdir, card, boundary, examples, plots, preds_path, report_path) -> dict:
    data, ev, deployed, est = result.data, result.ev, result.deployed, result.ev.estimate
    md = {
        "trained": True,
        "deployed_model": deployed.candidate.name,
        "feature_view": deployed.candidate.features,
        "version": vdir.name,
        "trained_at": card["trained_at"],
        "training_size": data.n,
        "labelled_left_out_by_budget": data.n_over_budget,
        "model_dir": FilePath(vdir),
        "model_card": Json(card),
        "unlabelled_tracks": data.n_unlabelled,
        "labels": Json(pd.Series(data.labels).value_counts().to_dict()),
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
        md["per_class"] = Table(_per_class_df(ev.nested["per_class"], data.classes))
    md.update(
        {
            "candidates": Table(ev.table().drop(columns=["kind", "family"], errors="ignore")),
            "nested_choices": ", ".join(ev.nested_choices) or "not run",
            "boundary_songs": Table(boundary, floatfmt=".2f"),
            "explanations": Markdown("\n".join(f"- `{p}`: {t}" for p, t in examples[:10])),
            "predictions_path": FilePath(preds_path),
            "report_path": FilePath(report_path),
        }
    )
    if result.shap is not None:
        md["explanation_method"] = result.shap.kind
        md["components"] = Markdown(
            "\n".join(
                f"- {n}: {t}" for n, t in zip(result.shap.component_names, result.shap.component_text, strict=True)
            )
        )
    else:
        md["explanation_method"] = (
            f"nearest training tracks ({deployed.candidate.family} has no exact per-feature attribution)"
        )
    for name, path in plots.items():
        md[name] = Plot(path, name.replace("_", " ")) if not isinstance(path, str) else path
    return md


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

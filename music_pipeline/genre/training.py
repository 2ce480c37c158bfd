"""One training run of the genre classifier, from the library tables to everything it publishes.

``train_genre_classifier`` is what the ``genre_classifier`` asset runs (the asset only wires it to
the data directory and Dagster's metadata): every candidate on the same grouped folds, the nested
estimate with its CI, the deployed model fitted on all labelled tracks, a prediction and an
explanation of the *deployed* model for every track (labelled or not), boundary songs from
out-of-fold probabilities, and the tagger's label profiles for the plain-language layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from music_pipeline.genre.candidates import GenreModel
from music_pipeline.genre.cv import Evaluation, SearchConfig, evaluate, fit_deployed
from music_pipeline.genre.data import (
    BLOCK_COLUMNS,
    TAGS,
    LabelledData,
    labelled_data,
    view_blocks,
    within_budget,
)
from music_pipeline.genre.report import build_report

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
    from music_pipeline.genre import explain as ex

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
    top = lambda k: [deployed.classes[o[k]] if ok else None for o, ok in zip(order, predicted)]
    pick = lambda k: np.where(predicted, honest[np.arange(n), order[:, k]], np.nan)
    preds = pd.DataFrame(
        {
            "key": keys,
            "relpath": table["relpath"].astype(str).to_numpy(),
            "label": table["label"].to_numpy(),
            "predicted": [
                deployed.classes[int(i)] if ok else None
                for i, ok in zip(np.nan_to_num(proba, nan=-1).argmax(1), predicted)
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

"""Cross-validation: folds that keep sources apart, the candidates' scores, and an honest estimate.

* **Folds** (``make_folds``). With the library's ``group`` column (artist/album/source; a track
  without one is its own group) no group is ever on both sides of a split. Up to
  ``logo_max_groups`` groups the split is *leave one group out*: every training fold holds all
  sources but one, as close as CV gets to the deployed model trained on all of them (with few
  groups, a 2- or 3-fold split trains on half the sources and model selection chooses on noise).
  With more groups, ``max_splits`` StratifiedGroupKFold folds. Beside them, StratifiedKFold over
  tracks (the "shuffled" score, which lets a source sit on both sides) shows the leak's size. No
  estimate is possible when a label has fewer than 2 groups; ``FoldPlan.note`` says why.
* **Evaluation** (``evaluate``). Every candidate on the same folds (out-of-fold probabilities).
  The deployed model is the best on these folds, so its flat score is optimistic; the estimate
  reported for it is a *nested* CV of the whole procedure: in each outer fold the choice is made on
  inner grouped folds of the outer training part only, and the chosen candidate is scored on the
  outer test part. Its 95 % interval comes from a bootstrap over groups (whole sources resampled,
  as an unseen library would differ).
* **The learning-curve step** (leave-one-group-out only). A held-out source is scored by a model
  that lacks it, so its label has one source fewer in training than the deployed model will have;
  with 2–4 sources per label that is a large share, and the plain estimate ran ~0.1 below the
  scores on unseen sources in our own simulations. For every held-out group whose label keeps at
  least two other sources, the chosen candidate is refitted without one more source of that label;
  the difference (accuracy with k−1 sources − with k−2) is added once to that group's held-out
  accuracy (clipped to [0, 1]). Both figures are reported (``Estimate.uncorrected``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from music_pipeline.genre.candidates import Candidate, GenreModel, XgbSettings
from music_pipeline.genre.data import LabelledData

MAX_SPLITS = 10
LOGO_MAX_GROUPS = 20
MAX_INNER_SPLITS = 4
BOOTSTRAP_RESAMPLES = 1000

Folds = list[tuple[np.ndarray, np.ndarray]]


@dataclass
class FoldPlan:
    grouped: Folds
    shuffled: Folds
    n_splits: int
    note: str  # how the groups were formed, or why there is no CV
    groups_per_class: dict[str, int] = field(default_factory=dict)
    method: str = ""  # "leave-one-group-out" | "StratifiedGroupKFold"

    @property
    def possible(self) -> bool:
        return self.n_splits >= 2

    def fold_ids(self, n: int, scheme: str = "grouped") -> np.ndarray:
        ids = np.full(n, -1)
        for k, (_, test) in enumerate(getattr(self, scheme)):
            ids[test] = k
        return ids


def _quiet_split(cv, y, groups=None) -> Folds:
    import warnings

    with warnings.catch_warnings():  # "the least populated class has only N members": expected with few sources
        warnings.simplefilter("ignore", UserWarning)
        return [(np.sort(tr), np.sort(te)) for tr, te in cv.split(np.zeros(len(y)), y, groups)]


def make_folds(
    y: np.ndarray,
    groups: np.ndarray,
    max_splits: int = MAX_SPLITS,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    logo_max_groups: int = LOGO_MAX_GROUPS,
) -> FoldPlan:
    """Grouped folds (leave-one-group-out up to ``logo_max_groups`` groups, else StratifiedGroupKFold)
    and shuffled StratifiedKFold folds beside them."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y, groups = np.asarray(y), np.asarray(groups)
    codes = np.unique(y)
    per_class = {
        (str(classes[int(c)]) if classes is not None else str(c)): len(np.unique(groups[y == c])) for c in codes
    }
    if len(codes) < 2:
        return FoldPlan([], [], 0, "cross-validation needs at least 2 labels", per_class)
    fewest = min(per_class.values())
    if fewest < 2:
        small = [c for c, g in per_class.items() if g < 2]
        return FoldPlan(
            [],
            [],
            1,
            f"no grouped cross-validation possible: {', '.join(small)} {'has' if len(small) == 1 else 'have'} fewer than 2 groups (sources); "
            "add tracks from another artist/album/source for every label",
            per_class,
        )
    unique = np.unique(groups)
    singletons = len(unique) == len(groups)
    if len(unique) <= logo_max_groups:
        grouped = [(np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in unique]
        method, note = (
            "leave-one-group-out",
            f"leave one group out: {len(unique)} folds, one per group (fewest groups in a label: {fewest})",
        )
    else:
        k = min(max_splits, len(unique))
        grouped = _quiet_split(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed), y, groups)
        method, note = (
            "StratifiedGroupKFold",
            f"{k}-fold StratifiedGroupKFold over {len(unique)} groups (fewest groups in a label: {fewest})",
        )
    k_shuffled = int(min(len(grouped), max_splits, np.bincount(np.searchsorted(codes, y)).min()))
    shuffled = (
        _quiet_split(StratifiedKFold(n_splits=max(2, k_shuffled), shuffle=True, random_state=seed), y)
        if k_shuffled >= 2
        else []
    )
    if singletons:
        note += "; no track shares a group, so these folds hold out tracks, not sources (tracks of one source may sit on both sides)"
    return FoldPlan(grouped, shuffled, len(grouped), note, per_class, method)


# ---------------------------------------------------------------- metrics


def metrics(y: np.ndarray, pred: np.ndarray, classes: Sequence[str]) -> dict:
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        classification_report,
        confusion_matrix,
        f1_score,
    )

    labels = np.arange(len(classes))
    # balanced accuracy over the labels present in y (sklearn's definition), so a fold or a
    # bootstrap sample without some label is still scored on the labels it has
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "per_class": classification_report(
            y, pred, labels=labels, target_names=list(classes), output_dict=True, zero_division=0
        ),
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
    }


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    present = np.unique(y)
    return float(np.mean([np.mean(pred[y == c] == c) for c in present]))


def majority_baseline(y: np.ndarray, folds: Folds) -> np.ndarray:
    """Out-of-fold predictions of 'always the training fold's most common label'."""
    pred = np.full(len(y), -1)
    for tr, te in folds:
        pred[te] = np.bincount(y[tr]).argmax()
    return pred


def headline(m: dict | None) -> dict:
    return {k: m[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")} if m else {}


# ---------------------------------------------------------------- the search


DEFAULT_CANDIDATES = (
    Candidate("logreg", "full", C=0.05),
    Candidate("logreg", "level_invariant", C=0.05),
    Candidate("logreg", "learned", C=0.05),
    Candidate("svm", "learned", C=1.0),
    Candidate("knn", "learned", k=7),
    Candidate("logreg", "fusion", C=0.05),
    Candidate("svm", "fusion", C=1.0),
    Candidate("logreg", "tags", C=0.05),
)


@dataclass
class SearchConfig:
    """What the classifier chooses among, and how it measures itself. The Dagster config of the
    genre_classifier asset takes its defaults from here."""

    candidates: tuple[Candidate, ...] = DEFAULT_CANDIDATES
    xgb: XgbSettings = field(default_factory=XgbSettings)
    nested: bool = True
    max_splits: int = MAX_SPLITS
    logo_max_groups: int = LOGO_MAX_GROUPS
    shuffled: bool = (
        False  # also score every candidate on shuffled folds (genre_comparison shows the leak's size anyway)
    )
    bootstrap: int = BOOTSTRAP_RESAMPLES
    # labelled tracks used at most (``data.within_budget``): keeps rebuild_models at 10k tracks
    # inside its time budget on 2 cores; the effect on accuracy is measured in benchmarks/bench_budget.py
    max_tracks: int = 2000
    source_step: bool = True  # correct leave-one-group-out for the held-out label's missing source (see evaluate)
    seed: int = 0

    def usable(self, views: Sequence[str]) -> tuple[list[Candidate], list[Candidate]]:
        """(candidates whose view is available, the others)."""
        ok = [c for c in self.candidates if c.features in views]
        return ok, [c for c in self.candidates if c.features not in views]


def oof_proba(
    c: Candidate, data: LabelledData, folds: Folds, config: SearchConfig, rows: np.ndarray | None = None
) -> np.ndarray:
    """Out-of-fold probabilities (n, classes) of ``c`` over ``folds`` (indices into ``rows``, or
    into all of ``data``); a class absent from a training fold gets 0."""
    rows = np.arange(data.n) if rows is None else rows
    y = data.y[rows]
    proba = np.zeros((len(rows), len(data.classes)))
    for tr, te in folds:
        present = np.unique(y[tr])
        if len(present) < 2:  # degenerate fold: predict its only label
            proba[np.ix_(te, present)] = 1.0
            continue
        m = GenreModel.fit(c, data.take(rows[tr]), y[tr].astype(str), seed=config.seed, xgb_settings=config.xgb)
        local = np.array([int(s) for s in m.classes])
        proba[np.ix_(te, local)] = m.predict_proba(data.take(rows[te]))
    return proba


def _score(m: dict) -> tuple[float, float]:
    return (round(m["balanced_accuracy"], 10), round(m["macro_f1"], 10))


def select(results: dict[Candidate, dict], order: Sequence[Candidate]) -> Candidate:
    """Best balanced accuracy (macro-F1 breaks ties; then the earlier candidate)."""
    return max(order, key=lambda c: (_score(results[c]), -order.index(c)))


@dataclass
class CandidateResult:
    candidate: Candidate
    grouped: dict
    shuffled: dict | None
    grouped_proba: np.ndarray
    seconds: float = 0.0


@dataclass
class Estimate:
    """The deployed procedure's expected balanced accuracy on sources it has not seen."""

    balanced_accuracy: float | None
    ci95: tuple[float, float] | None
    method: str
    metrics: dict | None  # of the nested out-of-fold predictions
    per_group: dict  # group -> held-out accuracy of its tracks (after the learning-curve step, if any)
    n_folds: int
    uncorrected: float | None = None  # the nested balanced accuracy before the learning-curve step

    def as_dict(self) -> dict:
        return {
            "balanced_accuracy": self.balanced_accuracy,
            "ci95": list(self.ci95) if self.ci95 else None,
            "method": self.method,
            "n_folds": self.n_folds,
            "uncorrected": self.uncorrected,
            **({k: self.metrics[k] for k in ("accuracy", "macro_f1")} if self.metrics else {}),
        }


@dataclass
class Evaluation:
    plan: FoldPlan
    classes: list[str]
    results: list[CandidateResult]
    selected: Candidate | None
    nested: dict | None  # metrics of the nested CV of the selection procedure
    nested_pred: np.ndarray | None
    nested_choices: list[str]
    baseline_grouped: dict | None
    baseline_shuffled: dict | None
    estimate: Estimate
    note: str
    skipped: list[str] = field(default_factory=list)  # candidates whose view was unavailable

    def result(self, c: Candidate) -> CandidateResult:
        return next(r for r in self.results if r.candidate == c)

    @property
    def estimate_kind(self) -> str:
        return self.estimate.method

    def table(self) -> pd.DataFrame:
        rows = []
        for r in self.results:
            rows.append(
                {
                    "model": r.candidate.name,
                    "kind": r.candidate.kind,
                    "family": r.candidate.family,
                    "view": r.candidate.features,
                    **{f"grouped_{k}": v for k, v in headline(r.grouped).items()},
                    **{f"shuffled_{k}": v for k, v in headline(r.shuffled).items()},
                }
            )
        df = pd.DataFrame(rows)
        return df.sort_values("grouped_balanced_accuracy", ascending=False, kind="stable") if len(df) else df


def evaluate(data: LabelledData, config: SearchConfig, on_progress: Callable[[str], None] | None = None) -> Evaluation:
    """Every usable candidate on the same folds, the choice, and the nested estimate with its CI."""
    from threadpoolctl import threadpool_limits

    # hundreds of small fits: one BLAS thread each is 3-10x faster than two fighting (measured on 2 cores)
    with threadpool_limits(limits=1):
        return _evaluate(data, config, on_progress)


def _evaluate(data: LabelledData, config: SearchConfig, on_progress: Callable[[str], None] | None = None) -> Evaluation:
    import time

    say = on_progress or (lambda _m: None)
    K = len(data.classes)
    plan = make_folds(data.y, data.groups, config.max_splits, config.seed, data.classes, config.logo_max_groups)
    cands, missing = config.usable(data.available_views)
    skipped = [f"{c.name}: needs {', '.join(c.blocks)} (not available for every labelled track)" for c in missing]
    if not cands:
        raise ValueError(f"no candidate can be trained on the available inputs {data.available_views}: {skipped}")
    if not plan.possible:
        est = Estimate(None, None, "none: " + plan.note, None, {}, 0)
        return Evaluation(
            plan,
            data.classes,
            [],
            cands[0] if K >= 2 else None,
            None,
            None,
            [],
            None,
            None,
            est,
            plan.note + "; deployed with the first candidate's settings, unvalidated",
            skipped,
        )
    results = []
    for i, c in enumerate(cands):
        t0 = time.perf_counter()
        say(f"candidate {i + 1}/{len(cands)} {c.name} · {plan.n_splits} grouped folds")
        pg = oof_proba(c, data, plan.grouped, config)
        ps = oof_proba(c, data, plan.shuffled, config) if config.shuffled and plan.shuffled else None
        results.append(
            CandidateResult(
                c,
                metrics(data.y, pg.argmax(1), data.classes),
                metrics(data.y, ps.argmax(1), data.classes) if ps is not None else None,
                pg,
                time.perf_counter() - t0,
            )
        )
    by_c = {r.candidate: r.grouped for r in results}
    selected = select(by_c, cands)
    chosen: list[Candidate] = []
    if config.nested and len(cands) > 1:
        nested_pred = np.full(data.n, -1)
        oof = {r.candidate: r.grouped_proba for r in results}
        for k, (tr, te) in enumerate(plan.grouped):
            say(f"nested selection · outer fold {k + 1}/{plan.n_splits}")
            chosen.append(_inner_select(data, tr, cands, config))
            nested_pred[te] = oof[chosen[-1]][te].argmax(
                1
            )  # the flat OOF of this fold is exactly "fit on tr, predict te"
        method = f"nested {plan.method} (choice among {len(cands)} candidates made inside each training fold)"
    else:  # nothing is selected, so the flat score is already honest
        nested_pred = (
            results[0].grouped_proba.argmax(1)
            if len(cands) == 1
            else results[cands.index(selected)].grouped_proba.argmax(1)
        )
        chosen = [selected] * plan.n_splits
        method = plan.method + (" (one candidate)" if len(cands) == 1 else " (flat: selection not nested, optimistic)")
    choices = [c.name for c in chosen]
    nested = metrics(data.y, nested_pred, data.classes)
    held = _held_out_groups(data, nested_pred)
    step = _source_step(data, plan, chosen, config, say) if config.source_step else {}
    if step:
        # LOGO scores a model that lacks one source of the held-out label; the deployed model has it.
        # Add what the last source added, measured one source earlier on the learning curve.
        held = {
            g: (float(np.clip(2 * a - step[g], 0, 1)) if g in step else a, n, lab) for g, (a, n, lab) in held.items()
        }
        method += (
            f"; + a learning-curve step for the held-out label's missing source (refit without one more source of that label "
            f"for {len(step)} of {len(held)} groups)"
        )
    value = _balanced_from_groups(held)
    ci = _group_ci(held, config.bootstrap, config.seed)
    est = Estimate(
        value,
        ci,
        method,
        nested,
        {g: a for g, (a, _, _) in held.items()},
        plan.n_splits,
        uncorrected=nested["balanced_accuracy"],
    )
    base_g = metrics(data.y, majority_baseline(data.y, plan.grouped), data.classes)
    base_s = metrics(data.y, majority_baseline(data.y, plan.shuffled), data.classes) if plan.shuffled else None
    return Evaluation(
        plan, data.classes, results, selected, nested, nested_pred, choices, base_g, base_s, est, plan.note, skipped
    )


def _held_out_groups(data: LabelledData, pred: np.ndarray) -> dict[str, tuple[float, int, int]]:
    """group -> (held-out accuracy of its tracks, number of tracks, label code)."""
    out = {}
    for g in np.unique(data.groups):
        m = data.groups == g
        out[str(g)] = (float(np.mean(pred[m] == data.y[m])), int(m.sum()), int(np.bincount(data.y[m]).argmax()))
    return out


def _balanced_from_groups(held: dict) -> float:
    """Balanced accuracy from per-group accuracies: per label the track-weighted mean, then the mean
    over labels (equal to the pooled balanced accuracy when no group was corrected)."""
    labels = sorted({lab for _, _, lab in held.values()})
    per_label = []
    for lab in labels:
        acc = [(a, n) for a, n, lb in held.values() if lb == lab]
        per_label.append(sum(a * n for a, n in acc) / sum(n for _, n in acc))
    return float(np.mean(per_label))


def _group_ci(held: dict, resamples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval when whole groups (sources) are resampled."""
    rng = np.random.default_rng(seed)
    items = list(held.values())
    stats = []
    for _ in range(resamples):
        sample = [items[i] for i in rng.integers(0, len(items), len(items))]
        if len({lab for _, _, lab in sample}) >= 2:
            stats.append(_balanced_from_groups(dict(enumerate(sample))))
    if not stats:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a))


def _source_step(
    data: LabelledData, plan: FoldPlan, chosen: list[Candidate], config: SearchConfig, say
) -> dict[str, float]:
    """Leave one group out, one source earlier: per held-out group whose label has at least two
    other sources in training, the accuracy of the same candidate refitted without one more
    (seeded, randomly chosen) source of that label. Only for leave-one-group-out folds."""
    if plan.method != "leave-one-group-out":
        return {}
    rng = np.random.default_rng(config.seed + 17)
    out = {}
    for k, ((tr, te), c) in enumerate(zip(plan.grouped, chosen, strict=True)):
        label = int(np.bincount(data.y[te]).argmax())
        others = sorted(set(data.groups[tr][data.y[tr] == label]))
        if len(others) < 2:
            continue
        say(f"learning-curve step · group {k + 1}/{plan.n_splits}")
        keep = tr[data.groups[tr] != others[int(rng.integers(len(others)))]]
        if len(np.unique(data.y[keep])) < 2:
            continue
        m = GenreModel.fit(c, data.take(keep), data.labels[keep], seed=config.seed, xgb_settings=config.xgb)
        out[str(data.groups[te][0])] = float(np.mean(m.predict(data.take(te)).astype(str) == data.labels[te]))
    return out


def _inner_select(
    data: LabelledData, outer_train: np.ndarray, cands: list[Candidate], config: SearchConfig
) -> Candidate:
    """Choose a candidate using only the outer training part (grouped inner folds)."""
    from sklearn.model_selection import StratifiedGroupKFold

    y, g = data.y[outer_train], data.groups[outer_train]
    n_groups = len(np.unique(g))
    k = min(MAX_INNER_SPLITS, n_groups)
    if k < 2:
        return cands[0]
    inner = _quiet_split(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=config.seed + 1), y, g)
    scores = {}
    for c in cands:
        p = oof_proba(c, data, inner, config, rows=outer_train)
        scores[c] = metrics(y, p.argmax(1), data.classes)
    return select(scores, cands)


def fit_deployed(data: LabelledData, candidate: Candidate, config: SearchConfig) -> GenreModel:
    return GenreModel.fit(candidate, data.blocks, data.labels, seed=config.seed, xgb_settings=config.xgb)


def fold_assignment(data: LabelledData, plan: FoldPlan) -> dict:
    """The folds as JSON (by track key), so other models can be scored on exactly the same splits."""
    return {
        "keys": data.keys.tolist(),
        "groups": data.groups.tolist(),
        "labels": data.labels.tolist(),
        "n_splits": plan.n_splits,
        "method": plan.method,
        "grouped": plan.fold_ids(data.n, "grouped").tolist() if plan.possible else [],
        "shuffled": plan.fold_ids(data.n, "shuffled").tolist() if plan.possible and plan.shuffled else [],
        "note": plan.note,
    }


def plan_from_assignment(assign: dict, keys: Sequence[str]) -> FoldPlan | None:
    """Rebuild a FoldPlan for ``keys`` from ``fold_assignment`` output; None when the tracks differ."""
    if list(assign.get("keys", [])) != list(keys) or not assign.get("grouped"):
        return None

    def folds(ids):
        ids = np.asarray(ids)
        if not len(ids):
            return []
        return [(np.flatnonzero(ids != k), np.flatnonzero(ids == k)) for k in range(int(ids.max()) + 1)]

    return FoldPlan(
        folds(assign["grouped"]),
        folds(assign["shuffled"]),
        int(assign["n_splits"]),
        str(assign["note"]),
        method=str(assign.get("method", "")),
    )


def coarser_plan(plan: FoldPlan, y: np.ndarray, groups: np.ndarray, max_splits: int, seed: int = 0) -> FoldPlan:
    """At most ``max_splits`` grouped folds over the same groups (for comparators too costly to
    train once per source); the plan itself when it is already that small."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if plan.n_splits <= max_splits or not plan.possible:
        return plan
    grouped = _quiet_split(StratifiedGroupKFold(n_splits=max_splits, shuffle=True, random_state=seed), y, groups)
    k = min(max_splits, len(plan.shuffled))
    shuffled = _quiet_split(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed), y) if k >= 2 else []
    return FoldPlan(
        grouped,
        shuffled,
        max_splits,
        f"{max_splits}-fold StratifiedGroupKFold over the same {len(np.unique(groups))} groups",
        plan.groups_per_class,
        "StratifiedGroupKFold",
    )


def to_jsonable(obj):
    return json.loads(
        json.dumps(
            obj,
            default=lambda o: (
                o.tolist() if isinstance(o, np.ndarray) else (o.item() if isinstance(o, np.generic) else str(o))
            ),
        )
    )

"""Data preparation: the labelled tracks and the feature views a genre model can be trained on.

A track reaches the models as up to three *blocks* (``Inputs``): the 641 hand-crafted dims
(``FEATURE_NAMES``), the learned embedding (``LEARNED_NAMES``: musicnn MSD penultimate layer,
mean and max over patches) and the tagger's tag scores (``TAG_NAMES``). A *view* picks and
prepares blocks:

* ``full`` — the 641 dims as stored;
* ``level_invariant`` — the 641 dims without what a mastering engineer changes without changing
  the music: mel levels relative to the track's mean mel level, MFCC 1 and RMS mean/std replaced by
  the RMS coefficient of variation (a gain change leaves this view unchanged; tested);
* ``learned`` — the learned embedding;
* ``fusion`` — ``level_invariant`` and ``learned`` side by side; after standardising, each block
  is weighted so that both carry half of the total variance (the 641 dims would otherwise
  outweigh the 400 learned ones in a distance or an L2 penalty);
* ``tags`` — the 100 tag scores as logits (an interpretable, low-dimensional view).

``VIEW_BLOCKS`` says which blocks a view needs; ``block_weights`` gives the per-column weights the
fitted model applies after its scaler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from music_pipeline.features.embedding import FEATURE_NAMES
from music_pipeline.learned.store import LEARNED_NAMES, TAG_NAMES

HANDCRAFTED, LEARNED, TAGS = "handcrafted", "learned", "tags"
BLOCK_COLUMNS = {HANDCRAFTED: FEATURE_NAMES, LEARNED: LEARNED_NAMES, TAGS: TAG_NAMES}
VIEW_BLOCKS = {
    "full": (HANDCRAFTED,),
    "level_invariant": (HANDCRAFTED,),
    "learned": (LEARNED,),
    "fusion": (HANDCRAFTED, LEARNED),
    "tags": (TAGS,),
}
FEATURE_SETS = tuple(VIEW_BLOCKS)
HANDCRAFTED_VIEWS = ("full", "level_invariant")

_NAME_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}
_MEL_COLS = np.array([i for i, n in enumerate(FEATURE_NAMES) if n.startswith("mel_")])
_MEL_MEAN_COLS = np.array([i for i, n in enumerate(FEATURE_NAMES) if n.startswith("mel_mean_")])
_LEVEL_ONLY = ["mfcc_mean_01", "rms_mean", "rms_std"]
_KEEP_COLS = np.array([i for i, n in enumerate(FEATURE_NAMES) if n not in _LEVEL_ONLY])
LEVEL_INVARIANT_NAMES = [FEATURE_NAMES[i] for i in _KEEP_COLS] + ["rms_cv"]

Inputs = Mapping[str, np.ndarray]  # block name -> (n, width) rows


class MissingInputs(ValueError):
    """A view needs a block (e.g. the learned embedding) that the caller did not provide."""


def as_inputs(X) -> dict[str, np.ndarray]:
    """Blocks from a mapping, or a bare (n, 641) array (the hand-crafted block alone)."""
    if isinstance(X, Mapping):
        return {k: np.atleast_2d(np.asarray(v, dtype=np.float64)) for k, v in X.items() if v is not None}
    return {HANDCRAFTED: np.atleast_2d(np.asarray(X, dtype=np.float64))}


def _level_invariant(X: np.ndarray) -> np.ndarray:
    out = X.copy()
    # a gain of g dB shifts every mel statistic of every band by g: subtract the track's mean level
    out[:, _MEL_COLS] -= X[:, _MEL_MEAN_COLS].mean(axis=1, keepdims=True)
    rms_mean, rms_std = X[:, _NAME_INDEX["rms_mean"]], X[:, _NAME_INDEX["rms_std"]]
    rms_cv = np.divide(rms_std, rms_mean, out=np.zeros_like(rms_std), where=rms_mean > 0)
    return np.column_stack([out[:, _KEEP_COLS], rms_cv])


def _tag_logits(T: np.ndarray) -> np.ndarray:
    p = np.clip(T, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def feature_view(X, name: str) -> tuple[np.ndarray, list[str]]:
    """Blocks (or a bare (n, 641) array) → the named view and its column names."""
    if name not in VIEW_BLOCKS:
        raise ValueError(f"unknown feature set {name!r} (choose from {FEATURE_SETS})")
    blocks = as_inputs(X)
    for b in VIEW_BLOCKS[name]:
        if b not in blocks:
            raise MissingInputs(
                f"the {name!r} view needs the {b} block ({'run the learned embedding' if b != HANDCRAFTED else 'the 641 features'})"
            )
        width = len(BLOCK_COLUMNS[b])
        if blocks[b].shape[1] != width:
            raise ValueError(f"expected (n, {width}) {b} rows, got {blocks[b].shape}")
    if name == "full":
        return blocks[HANDCRAFTED], list(FEATURE_NAMES)
    if name == "level_invariant":
        return _level_invariant(blocks[HANDCRAFTED]), list(LEVEL_INVARIANT_NAMES)
    if name == "learned":
        return blocks[LEARNED], list(LEARNED_NAMES)
    if name == "tags":
        return _tag_logits(blocks[TAGS]), list(TAG_NAMES)
    return np.hstack([_level_invariant(blocks[HANDCRAFTED]), blocks[LEARNED]]), LEVEL_INVARIANT_NAMES + LEARNED_NAMES


def block_weights(name: str) -> np.ndarray | None:
    """Per-column weights applied after standardising (None: all 1)."""
    if name != "fusion":
        return None
    # each block gets half the total variance (block width w: weight sqrt(total / (2 w))), so the
    # blocks weigh the same and the L2 penalty means what it means on a single view
    a, b = len(LEVEL_INVARIANT_NAMES), len(LEARNED_NAMES)
    return np.concatenate([np.full(a, np.sqrt((a + b) / (2 * a))), np.full(b, np.sqrt((a + b) / (2 * b)))])


def view_blocks(name: str) -> tuple[str, ...]:
    return VIEW_BLOCKS[name]


# ---------------------------------------------------------------- labelled data


@dataclass
class LabelledData:
    blocks: dict[str, np.ndarray]  # block -> (n, width) rows of the labelled tracks
    labels: np.ndarray  # (n,) str
    classes: list[str]  # sorted
    y: np.ndarray  # (n,) int codes into classes
    groups: np.ndarray  # (n,) str: the group column, or the track key when it has none
    keys: np.ndarray
    relpaths: np.ndarray
    n_unlabelled: int
    n_with_group: int
    n_over_budget: int = 0  # labelled tracks left out by the training budget (``within_budget``)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def X(self) -> np.ndarray:
        """The hand-crafted block."""
        return self.blocks[HANDCRAFTED]

    def take(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[rows] for k, v in self.blocks.items()}

    @property
    def available_views(self) -> tuple[str, ...]:
        return tuple(v for v, need in VIEW_BLOCKS.items() if all(b in self.blocks for b in need))


def track_groups(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(groups, has_group): the group column where set, else the track itself."""
    raw = df["group"].tolist() if "group" in df else [None] * len(df)
    has = np.array(
        [g is not None and not (isinstance(g, float) and np.isnan(g)) and str(g).strip() != "" for g in raw], dtype=bool
    )
    groups = np.array(
        [f"group:{g}" if ok else f"track:{k}" for g, ok, k in zip(raw, has, df["key"].astype(str), strict=True)],
        dtype=object,
    )
    return groups, has


def inputs_of(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """The blocks present (and complete) in a table with FEATURE_NAMES and optionally learned/tag columns."""
    out = {HANDCRAFTED: df[FEATURE_NAMES].to_numpy(dtype=np.float64)}
    for block in (LEARNED, TAGS):
        cols = BLOCK_COLUMNS[block]
        if all(c in df for c in cols):
            values = df[cols].to_numpy(dtype=np.float64)
            if len(values) and np.isfinite(values).all():
                out[block] = values
    return out


def labelled_data(df: pd.DataFrame) -> LabelledData:
    """The labelled rows of an embeddings table, joined or not with the learned table (unlabelled
    tracks are left out of training). A block is used only when every labelled track has it."""
    label = df["label"].astype("object")
    has_label = label.notna() & (label.astype(str).str.strip() != "")
    sub = df[has_label.to_numpy()]
    labels = sub["label"].astype(str).to_numpy()
    classes = sorted(set(labels))
    groups, has_group = track_groups(sub)
    return LabelledData(
        blocks=inputs_of(sub),
        labels=labels,
        classes=classes,
        y=np.searchsorted(classes, labels),
        groups=groups,
        keys=sub["key"].astype(str).to_numpy(),
        relpaths=sub["relpath"].astype(str).to_numpy(),
        n_unlabelled=int((~has_label).sum()),
        n_with_group=int(has_group.sum()),
    )


def within_budget(data: LabelledData, max_tracks: int, seed: int = 0) -> LabelledData:
    """At most ``max_tracks`` labelled tracks: a seeded subsample with each label's share kept
    (groups stay whole-or-sampled like any track, and grouped folds still keep them apart). Bounds
    the cost of model selection, the nested estimate and the comparators on large libraries; every
    track is still *predicted* by the deployed model. 0 (no budget) or a larger budget: unchanged."""
    if max_tracks <= 0 or data.n <= max_tracks:
        return data
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for code in range(len(data.classes)):
        rows = np.flatnonzero(data.y == code)
        take = min(len(rows), max(1, round(max_tracks * len(rows) / data.n)))
        keep.extend(rng.choice(rows, take, replace=False).tolist())
    rows = np.sort(np.array(keep[:max_tracks] if len(keep) > max_tracks else keep))
    labels = data.labels[rows]
    return LabelledData(
        blocks={k: v[rows] for k, v in data.blocks.items()},
        labels=labels,
        classes=data.classes,
        y=data.y[rows],
        groups=data.groups[rows],
        keys=data.keys[rows],
        relpaths=data.relpaths[rows],
        n_unlabelled=data.n_unlabelled,
        n_with_group=int(sum(not str(g).startswith("track:") for g in data.groups[rows])),
        n_over_budget=data.n - len(rows),
    )

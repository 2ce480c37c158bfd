"""The segment CNN: predicts a track's PDI level from its 128×128 log-mel segments (Keras on TF).

Honest evaluation, in this order:

1. folds are assigned to *tracks* (``StratifiedGroupKFold`` on the track level, grouped by the
   library's ``group`` column, or by the track itself when the group is unknown), and only then
   expanded to the tracks' segments (``segment_folds``), so no track — and no group — has
   segments on both sides of a split;
2. inside each training fold, a grouped share of the training tracks is held out for early
   stopping (never the test fold);
3. out-of-fold predictions are pooled over the folds: segment accuracy, track accuracy (segment
   probabilities averaged per track), macro-F1, within-one-level accuracy, the confusion matrix
   and Spearman ρ between the expected level Σ_k p_k·k and the true PDI — each beside the
   majority-class baseline (the training fold's majority level) and the uniform-random baseline
   (mean over seeded random draws);
4. the final model is fitted on all tracks for the median of the folds' best epoch counts.

Cost is bounded, because the model is rebuilt with the library: by default 3 folds × at most 8
epochs (early stopping, patience 3) plus one final fit, on the stored segments (3 per track) pooled
2×2 to 64×64 inside the model, with a ~15k-parameter CNN; above ``max_tracks`` (2,000) tracks a
seeded, level-stratified subsample is used, and only its segments are loaded, so time and memory
stop growing there (``benchmarks/bench_difficulty.py cnn`` measures the growth).

Per-segment standardisation is the model's first layer (``LayerNormalization`` over the whole
segment, no trainable scale), so a saved ``.keras`` file takes raw dB segments and needs no
separate statistics; it also means absolute loudness is not a cue (a quiet recording of a hard
piece is not made "easy" by its gain). Seeds are fixed and TF op determinism is enabled.
Heavy imports (TensorFlow/Keras) happen inside functions so importing this module is cheap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from music_pipeline.artifacts import (
    ArtifactPath,
    artifact_path,
    atomic_path,
    local_copy,
    read_json,
    read_parquet,
    write_json,
)
from music_pipeline.difficulty.pdi import LEVELS
from music_pipeline.layout import DataLayout
from music_pipeline.records import FilePath, Json, Plot, Table

log = logging.getLogger(__name__)

ARCHITECTURES = ("compact", "efficientnet")
INPUT_SHAPE = (128, 128, 1)
MODEL_FILE = "difficulty_cnn.keras"
REPORT_FILE = "difficulty_cnn_report.json"
RANDOM_DRAWS = 1000
# The CNN would stand in for the note-based PDI (9× cheaper per track: benchmarks/bench_difficulty.py
# cnn-estimator) only where its out-of-fold Spearman ρ with the PDI on unseen groups reaches this.
# Measured 0.39 on the development library: it is a reference model, never used to score.
ESTIMATOR_MIN_RHO = 0.8


def role(spearman_rho: float | None) -> str:
    """What the trained CNN is good for, from its out-of-fold ρ with the PDI."""
    if spearman_rho is not None and spearman_rho >= ESTIMATOR_MIN_RHO:
        return f"cheap estimator of the PDI (out-of-fold ρ {spearman_rho:.2f} ≥ {ESTIMATOR_MIN_RHO})"
    shown = "n/a" if spearman_rho is None else f"{spearman_rho:.2f}"
    return f"reference model, not used to score (out-of-fold ρ with the PDI {shown} < {ESTIMATOR_MIN_RHO})"


@dataclass
class CnnConfig:
    architecture: str = "compact"
    epochs: int = 8
    batch_size: int = 32
    folds: int = 3
    patience: int = 3
    learning_rate: float = 3e-3
    validation_fraction: float = 0.2  # share of training tracks (by group) held out for early stopping
    max_tracks: int = 2000  # a seeded, level-stratified subsample above this
    seed: int = 0

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.folds < 2 or self.max_tracks < 2:
            raise ValueError("need epochs >= 1, batch_size >= 1, folds >= 2 and max_tracks >= 2")


@dataclass
class SegmentDataset:
    X: np.ndarray  # (segments, 128, 128) float16 log-mel dB, as stored
    track: np.ndarray  # (segments,) row of ``tracks`` each segment belongs to
    position: np.ndarray  # (segments,) 0..n-1: begin … end
    tracks: pd.DataFrame  # one row per track with segments: key, relpath, label, group, content_hash, pdi, level_index
    missing: list[str] = field(default_factory=list)  # keys whose segments could not be loaded

    @property
    def track_level(self) -> np.ndarray:
        return self.tracks["level_index"].to_numpy(dtype=np.int64)

    @property
    def y(self) -> np.ndarray:
        return self.track_level[self.track]

    @property
    def groups(self) -> np.ndarray:
        return track_groups(self.tracks)


def subsample_tracks(scores: pd.DataFrame, max_tracks: int, seed: int = 0) -> pd.DataFrame:
    """At most ``max_tracks`` rows, the same share of each level, seeded; order kept."""
    if len(scores) <= max_tracks:
        return scores
    rng = np.random.default_rng(seed)
    keep = []
    for _, part in scores.groupby("level_index", sort=True):
        n = max(1, round(max_tracks * len(part) / len(scores)))
        keep.extend(rng.choice(part.index.to_numpy(), min(n, len(part)), replace=False).tolist())
    return scores.loc[sorted(keep)[:max_tracks] if len(keep) > max_tracks else sorted(keep)]


def load_segment_dataset(
    scores: pd.DataFrame, load_segments: Callable[[str], np.ndarray], max_tracks: int | None = None, seed: int = 0
) -> SegmentDataset:
    """Segments of every scored track (of a subsample when ``max_tracks`` is exceeded: only those
    are loaded); each inherits its track's level (``level_index``)."""
    if max_tracks is not None:
        scores = subsample_tracks(scores, max_tracks, seed)
    X, track, position, rows, missing = [], [], [], [], []
    for r in scores.itertuples(index=False):
        try:
            segs = np.asarray(load_segments(r.content_hash))
        except Exception as exc:  # noqa: BLE001 - a missing or damaged feature file costs this track only
            log.warning("no segments for %s: %s", r.key, exc)
            missing.append(r.key)
            continue
        if segs.ndim != 3 or segs.shape[1:] != INPUT_SHAPE[:2]:
            missing.append(r.key)
            continue
        i = len(rows)
        rows.append(r)
        X.append(segs.astype(np.float16))
        track.extend([i] * len(segs))
        position.extend(range(len(segs)))
    cols = ["key", "relpath", "label", "group", "content_hash", "pdi", "level_index"]
    tracks = pd.DataFrame([{c: getattr(r, c, None) for c in cols} for r in rows], columns=cols)
    X_all = np.concatenate(X) if X else np.zeros((0, *INPUT_SHAPE[:2]), np.float16)
    return SegmentDataset(X_all, np.asarray(track, np.int64), np.asarray(position, np.int64), tracks, missing)


def track_groups(tracks: pd.DataFrame) -> np.ndarray:
    """The library group of each track; a track without one is its own group."""
    group = tracks["group"] if "group" in tracks else pd.Series([None] * len(tracks))
    return np.array(
        [f"group:{g}" if isinstance(g, str) and g else f"track:{k}" for g, k in zip(group, tracks["key"], strict=True)]
    )


def grouped_track_folds(
    levels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_tracks, test_tracks) index arrays; every group lands in exactly one test fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    # sklearn refuses more folds than the largest level has tracks
    k = min(n_splits, n_groups, int(np.bincount(levels).max(initial=0)))
    if k < 2:
        raise ValueError(
            f"need at least 2 track groups (and 2 tracks in some level) for grouped folds, got {n_groups} groups"
        )
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(te)) for tr, te in cv.split(np.zeros(len(levels)), levels, groups)]


def segment_folds(
    track_folds: Sequence[tuple[np.ndarray, np.ndarray]], segment_track: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expand track folds to segment indices (after the split, never before)."""
    return [
        (np.flatnonzero(np.isin(segment_track, tr)), np.flatnonzero(np.isin(segment_track, te)))
        for tr, te in track_folds
    ]


def fold_segment_indices(data: SegmentDataset, n_splits: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    return segment_folds(grouped_track_folds(data.track_level, data.groups, n_splits, seed), data.track)


# --- models -------------------------------------------------------------------------------------


def _standardise_layer():
    from keras import layers

    # per-segment (x − mean) / std over the whole 128×128 segment; no trainable parameters
    return layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False, name="per_segment_standardise")


def build_compact_cnn(num_classes: int = len(LEVELS), input_shape=INPUT_SHAPE):
    """2×2 average pooling to 64×64, three conv blocks (8/16/32 filters, BN, max-pool), a 32-filter
    conv, global average pooling, dropout: ~15k params, about a tenth of the convolution work of
    the previous 128×128 16/32/64 design (the levels are about note density and texture, which
    survive the pooling)."""
    import keras
    from keras import layers

    inp = keras.Input(input_shape, name="log_mel_db")
    x = _standardise_layer()(inp)
    x = layers.AveragePooling2D(2, name="pool_to_64")(x)
    for filters in (8, 16, 32):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(num_classes, activation="softmax", name="level")(x)
    return keras.Model(inp, out, name="compact_cnn")


def build_efficientnet(num_classes: int = len(LEVELS), input_shape=INPUT_SHAPE):
    """EfficientNet-B0 from scratch (weights=None: nothing is downloaded) on one-channel input."""
    import keras
    from keras import layers

    inp = keras.Input(input_shape, name="log_mel_db")
    x = _standardise_layer()(inp)
    base = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=input_shape, pooling="avg")
    x = base(x)
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(num_classes, activation="softmax", name="level")(x)
    return keras.Model(inp, out, name="efficientnet_b0")


def build_model(architecture: str, num_classes: int = len(LEVELS), learning_rate: float = 1e-3):
    import keras

    builder = {"compact": build_compact_cnn, "efficientnet": build_efficientnet}[architecture]
    model = builder(num_classes)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # noqa: BLE001, S110 - already enabled / not available: seeds still apply
        pass


def _as_input(X: np.ndarray) -> np.ndarray:
    return X.astype(np.float32)[..., None]


def _class_weight(y: np.ndarray, num_classes: int) -> dict[int, float]:
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    present = counts > 0
    w = np.where(present, counts.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)
    return {int(k): float(w[k]) for k in range(num_classes)}


def _validation_split(
    data: SegmentDataset, train_tracks: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Split the training tracks (by group) into fit and early-stopping tracks; None when too few."""
    groups = data.groups[train_tracks]
    k = round(1 / fraction) if fraction > 0 else 0
    if k < 2 or len(np.unique(groups)) < max(k, 4):
        return None
    fit_idx, val_idx = grouped_track_folds(data.track_level[train_tracks], groups, k, seed)[0]
    return train_tracks[fit_idx], train_tracks[val_idx]


def _progress_callback(on_epoch: Callable[[int, int], None] | None, epochs: int):
    import keras

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if on_epoch:
                on_epoch(epoch + 1, epochs)

    return Progress()


def train_model(
    data: SegmentDataset,
    train_tracks: np.ndarray,
    config: CnnConfig,
    epochs: int | None = None,
    early_stopping: bool = True,
    on_epoch: Callable[[int, int], None] | None = None,
):
    """Fit a fresh model on ``train_tracks``' segments. Returns (model, history, best_epoch).
    ``on_epoch(epoch, epochs)`` is called after every epoch (progress lines)."""
    import keras

    num_classes = len(LEVELS)
    split = _validation_split(data, train_tracks, config.validation_fraction, config.seed) if early_stopping else None
    fit_tracks, val_tracks = split if split else (train_tracks, None)
    fit_seg = np.flatnonzero(np.isin(data.track, fit_tracks))
    _seed_everything(config.seed)
    model = build_model(config.architecture, num_classes, config.learning_rate)
    n_epochs = epochs or config.epochs
    kwargs = {"callbacks": [_progress_callback(on_epoch, n_epochs)]}
    if val_tracks is not None:
        val_seg = np.flatnonzero(np.isin(data.track, val_tracks))
        kwargs["validation_data"] = (_as_input(data.X[val_seg]), data.y[val_seg])
        kwargs["callbacks"].append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
        )
    hist = model.fit(
        _as_input(data.X[fit_seg]),
        data.y[fit_seg],
        epochs=n_epochs,
        batch_size=config.batch_size,
        class_weight=_class_weight(data.y[fit_seg], num_classes),
        shuffle=True,
        verbose=0,
        **kwargs,
    )
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    best = int(np.argmin(history["val_loss"])) + 1 if "val_loss" in history else len(history["loss"])
    return model, history, best


def predict_segments(model, X: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.asarray(model.predict(_as_input(X), batch_size=batch_size, verbose=0), dtype=np.float64)


def pool_tracks(seg_probs: np.ndarray, segment_track: np.ndarray, n_tracks: int) -> np.ndarray:
    """Mean segment probability per track (rows of tracks without segments stay NaN)."""
    sums = np.zeros((n_tracks, seg_probs.shape[1]))
    np.add.at(sums, segment_track, seg_probs)
    counts = np.bincount(segment_track, minlength=n_tracks)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def predict_track(model, segments: np.ndarray) -> np.ndarray:
    """Level probabilities of one track from its (n, 128, 128) segments."""
    return predict_segments(model, np.asarray(segments)).mean(axis=0)


def save_keras(model, dest: ArtifactPath) -> ArtifactPath:
    """Atomic save in Keras's own format (a temp ``.keras`` file, then published as ``dest``)."""
    with atomic_path(dest, suffix=".keras") as tmp:
        model.save(tmp)
    return artifact_path(dest)


def load_keras(path: ArtifactPath):
    import keras

    with local_copy(path) as local:
        return keras.saving.load_model(str(local), safe_mode=True)


# --- evaluation ---------------------------------------------------------------------------------


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None  # a constant prediction has no rank correlation
    return float(spearmanr(a, b).statistic)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = len(LEVELS)) -> dict:
    from sklearn.metrics import confusion_matrix, f1_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
        "macro_f1": float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0)),
        "within_one_accuracy": float(np.mean(np.abs(y_true - y_pred) <= 1)) if len(y_true) else float("nan"),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(range(num_classes))).tolist(),
    }


def evaluate_predictions(
    track_probs: np.ndarray, seg_probs: np.ndarray, data: SegmentDataset, num_classes: int = len(LEVELS)
) -> dict:
    y_track, pdi = data.track_level, data.tracks["pdi"].to_numpy(dtype=np.float64)
    track_pred = track_probs.argmax(axis=1)
    m = classification_metrics(y_track, track_pred, num_classes)
    expected = track_probs @ np.arange(num_classes)
    return {
        "segment_accuracy": float(np.mean(seg_probs.argmax(axis=1) == data.y)),
        "track_accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "within_one_accuracy": m["within_one_accuracy"],
        "spearman_rho": _spearman(expected, pdi),
        "confusion_matrix": m["confusion_matrix"],
    }


def baselines(
    data: SegmentDataset,
    track_folds: Sequence[tuple[np.ndarray, np.ndarray]],
    seed: int = 0,
    num_classes: int = len(LEVELS),
) -> dict:
    """Majority class of each training fold, and uniform random levels (mean over seeded draws)."""
    y_track, pdi = data.track_level, data.tracks["pdi"].to_numpy(dtype=np.float64)
    majority = np.zeros(len(y_track), np.int64)
    for tr, te in track_folds:
        majority[te] = int(np.argmax(np.bincount(y_track[tr], minlength=num_classes)))  # ties → easier level
    m = classification_metrics(y_track, majority, num_classes)
    maj = {
        "segment_accuracy": float(np.mean(majority[data.track] == data.y)),
        "track_accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "within_one_accuracy": m["within_one_accuracy"],
        "spearman_rho": _spearman(majority.astype(float), pdi),
        "confusion_matrix": m["confusion_matrix"],
    }
    rand = _uniform_random_baseline(y_track, data.y, pdi, num_classes, seed)
    return {"majority": maj, "uniform_random": rand}


def _macro_f1_rows(y: np.ndarray, P: np.ndarray, num_classes: int) -> np.ndarray:
    """Macro-F1 of each row of predictions ``P`` (draws × items) against ``y`` (sklearn's definition,
    zero_division=0)."""
    f1 = np.zeros(P.shape[0])
    for k in range(num_classes):
        pred_k, true_k = P == k, (y == k)[None, :]
        tp = (pred_k & true_k).sum(axis=1)
        denom = pred_k.sum(axis=1) + true_k.sum()
        f1 += np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return f1 / num_classes


def _uniform_random_baseline(
    y_track: np.ndarray, y_seg: np.ndarray, pdi: np.ndarray, num_classes: int, seed: int
) -> dict:
    """Expected metrics of guessing levels uniformly at random: mean over ``RANDOM_DRAWS`` seeded draws."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    T = rng.integers(0, num_classes, (RANDOM_DRAWS, len(y_track)))
    S = rng.integers(0, num_classes, (RANDOM_DRAWS, len(y_seg)))
    # Spearman ρ = Pearson correlation of the ranks, row by row (constant rows give no ρ)
    rt = rankdata(T, axis=1)
    rt -= rt.mean(axis=1, keepdims=True)
    rp = rankdata(pdi) - rankdata(pdi).mean()
    norms = np.linalg.norm(rt, axis=1) * np.linalg.norm(rp)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(norms > 0, (rt @ rp) / norms, np.nan)
    return {
        "segment_accuracy": float((S == y_seg).mean()),
        "track_accuracy": float((T == y_track).mean()),
        "macro_f1": float(_macro_f1_rows(y_track, T, num_classes).mean()),
        "within_one_accuracy": float((np.abs(T - y_track) <= 1).mean()),
        "spearman_rho": float(np.nanmean(rho)) if np.isfinite(rho).any() else None,
        "draws": RANDOM_DRAWS,
    }


METRIC_ROWS = ["track_accuracy", "segment_accuracy", "macro_f1", "within_one_accuracy", "spearman_rho"]


def metrics_table(report: dict) -> pd.DataFrame:
    """metric | model | majority | uniform random (for the UI and the README)."""
    rows = []
    for name in METRIC_ROWS:
        rows.append(
            {
                "metric": name,
                "cnn": report["metrics"].get(name),
                "majority": report["baselines"]["majority"].get(name),
                "uniform_random": report["baselines"]["uniform_random"].get(name),
            }
        )
    return pd.DataFrame(rows)


@dataclass
class CvResult:
    track_probs: np.ndarray  # (tracks, K) out-of-fold
    seg_probs: np.ndarray  # (segments, K) out-of-fold
    track_folds: list[tuple[np.ndarray, np.ndarray]]
    histories: dict[str, dict[str, list[float]]]
    best_epochs: list[int]
    per_fold: list[dict]


def cross_validate(data: SegmentDataset, config: CnnConfig, on_fold: Callable[[str], None] | None = None) -> CvResult:
    num_classes = len(LEVELS)
    track_folds = grouped_track_folds(data.track_level, data.groups, config.folds, config.seed)
    seg_probs = np.full((len(data.y), num_classes), np.nan)
    histories, best_epochs, per_fold = {}, [], []
    for i, (tr, te) in enumerate(track_folds):
        t0 = time.perf_counter()

        def on_epoch(epoch, epochs, i=i):
            if on_fold:
                on_fold(f"fold {i + 1}/{len(track_folds)} · epoch {epoch}/{epochs}")

        model, history, best = train_model(data, tr, config, on_epoch=on_epoch)
        te_seg = np.flatnonzero(np.isin(data.track, te))
        seg_probs[te_seg] = predict_segments(model, data.X[te_seg])
        fold_track = pool_tracks(seg_probs[te_seg], data.track[te_seg], len(data.tracks))[te]
        acc = float(np.mean(fold_track.argmax(axis=1) == data.track_level[te]))
        histories[f"fold {i + 1}"] = history
        best_epochs.append(best)
        per_fold.append(
            {
                "fold": i + 1,
                "train_tracks": len(tr),
                "test_tracks": len(te),
                "epochs_run": len(history["loss"]),
                "best_epoch": best,
                "track_accuracy": acc,
                "seconds": time.perf_counter() - t0,
            }
        )
        if on_fold:
            on_fold(
                f"fold {i + 1}/{len(track_folds)}: {len(te)} test tracks, track accuracy {acc:.3f}, best epoch {best}"
            )
    track_probs = pool_tracks(seg_probs, data.track, len(data.tracks))
    return CvResult(track_probs, seg_probs, track_folds, histories, best_epochs, per_fold)


def run_difficulty_cnn(
    data: SegmentDataset, config: CnnConfig, model_dir: Path, on_progress: Callable[[str], None] | None = None
) -> dict:
    """Grouped cross-validation, then the final fit on all tracks; saves the model and the JSON
    report in ``model_dir`` and returns the report (histories included for the curves)."""
    if len(data.tracks) < 2:
        raise ValueError(f"need at least 2 tracks with segments, got {len(data.tracks)}")
    t0 = time.perf_counter()
    cv = cross_validate(data, config, on_progress)
    metrics = evaluate_predictions(cv.track_probs, cv.seg_probs, data)
    base = baselines(data, cv.track_folds, config.seed)
    final_epochs = max(1, int(np.median(cv.best_epochs)))

    def on_epoch(epoch, epochs):
        if on_progress:
            on_progress(f"final fit · epoch {epoch}/{epochs}")

    model, final_history, _ = train_model(
        data, np.arange(len(data.tracks)), config, epochs=final_epochs, early_stopping=False, on_epoch=on_epoch
    )
    model_path = save_keras(model, artifact_path(model_dir) / MODEL_FILE)
    if on_progress:
        on_progress(f"final model: {final_epochs} epochs on {len(data.tracks)} tracks → {model_path}")
    counts = np.bincount(data.track_level, minlength=len(LEVELS))
    report = {
        "config": asdict(config),
        "n_tracks": len(data.tracks),
        "n_segments": len(data.y),
        "missing_tracks": data.missing,
        "class_counts": {lv: int(c) for lv, c in zip(LEVELS, counts, strict=True)},
        "grouping": "library group" if any(g.startswith("group:") for g in data.groups) else "track",
        "folds": len(cv.track_folds),
        "metrics": metrics,
        "baselines": base,
        "per_fold": cv.per_fold,
        "histories": {**cv.histories, "final": final_history},
        "final_model": {"path": str(model_path), "epochs": final_epochs, "params": int(model.count_params())},
        "out_of_fold": {
            "key": data.tracks["key"].tolist(),
            "true_level": data.track_level.tolist(),
            "predicted_level": cv.track_probs.argmax(axis=1).tolist(),
            "expected_level": (cv.track_probs @ np.arange(len(LEVELS))).tolist(),
        },
        "seconds": time.perf_counter() - t0,
    }
    write_json(artifact_path(model_dir) / REPORT_FILE, report)
    return report


# ---------------------------------------------------------------- the published run


@dataclass
class CnnRecord:
    """What one ``difficulty_cnn`` run published: its metadata (``music_pipeline.records`` values)
    and what the run log says (``infos``, ``warnings``)."""

    trained: bool
    metadata: dict
    infos: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def publish_difficulty_cnn(
    layout: DataLayout,
    load_segments: Callable[[str], np.ndarray],
    config: CnnConfig,
    on_progress: Callable[[str], None] | None = None,
) -> CnnRecord:
    """Train the CNN on the library's PDI levels (``run_difficulty_cnn``) and draw its curves and
    confusion matrix; too few tracks: no model, the report says why."""
    # difficulty.plots imports matplotlib at its top level: only a publishing run draws
    from music_pipeline.difficulty import plots

    scores = read_parquet(layout.difficulty_table_path)
    data = load_segment_dataset(scores, load_segments, max_tracks=config.max_tracks, seed=config.seed)
    infos, warnings = [], []
    if len(scores) > config.max_tracks:
        infos.append(
            f"{len(scores)} tracks: training on a level-stratified subsample of {config.max_tracks} (max_tracks)"
        )
    warnings += [f"track {key}: no segments stored, left out of the CNN" for key in data.missing]
    if len(data.tracks) < 2 * config.folds:
        # a small library is not an error: say why no model exists instead of failing the build
        reason = f"{len(data.tracks)} tracks with segments: too few for {config.folds} grouped folds (need {2 * config.folds})"
        warnings.append(f"difficulty CNN not trained: {reason}")
        write_json(
            layout.difficulty_dir / REPORT_FILE, {"trained": False, "reason": reason, "n_tracks": len(data.tracks)}
        )
        (layout.difficulty_dir / MODEL_FILE).unlink(missing_ok=True)
        metadata = {"trained": False, "reason": reason, "tracks": len(data.tracks)}
        return CnnRecord(False, metadata, infos, warnings)
    report = run_difficulty_cnn(data, config, layout.difficulty_dir, on_progress)
    pdir = layout.difficulty_plots_dir
    curves = plots.training_curves(report["histories"], pdir / "cnn_training_curves.png")
    confusion = plots.confusion_plot(
        report["metrics"]["confusion_matrix"], pdir / "cnn_confusion.png", title="CNN, out-of-fold tracks"
    )
    m, base = report["metrics"], report["baselines"]
    metadata = {
        "model": FilePath(report["final_model"]["path"]),
        "report": FilePath(layout.difficulty_dir / REPORT_FILE),
        "architecture": config.architecture,
        "tracks": report["n_tracks"],
        "segments": report["n_segments"],
        "folds": report["folds"],
        "grouping": report["grouping"],
        "role": role(m["spearman_rho"]),
        "track_accuracy": m["track_accuracy"],
        "majority_track_accuracy": base["majority"]["track_accuracy"],
        "random_track_accuracy": base["uniform_random"]["track_accuracy"],
        "metrics_vs_baselines": Table(metrics_table(report), floatfmt=".3f"),
        "per_fold": Table(pd.DataFrame(report["per_fold"]), floatfmt=".3g"),
        "final_epochs": report["final_model"]["epochs"],
        "params": report["final_model"]["params"],
        "training_curves": Plot(curves, "training curves"),
        "confusion_matrix": Plot(confusion, "confusion matrix"),
        "seconds": float(report["seconds"]),
        "budget": Json(
            {
                "folds": report["folds"],
                "max_epochs": config.epochs,
                "segments": report["n_segments"],
                "tracks_used": report["n_tracks"],
                "library_tracks": len(scores),
                "max_tracks": config.max_tracks,
            }
        ),
    }
    return CnnRecord(True, metadata, infos, warnings)


def cnn_report(layout: DataLayout) -> dict:
    """The report the last ``difficulty_cnn`` run wrote (``difficulty_cnn_report.json``)."""
    return read_json(layout.difficulty_dir / REPORT_FILE)

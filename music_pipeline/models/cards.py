"""Model cards: what each trained model is, when and on what it was trained, and how good it is.

``collect_cards(data_dir)`` reads the files every model already writes (nothing is retrained or
re-evaluated here, and nothing imports TensorFlow) and returns one card per model:

    {"name", "version", "trained_at", "training_size", "feature_view", "model",
     "estimate": {<metric>: x, "ci95": [lo, hi] | None, "method": …}, "baseline": {…}, "path", "note"}

A model that has not been built yet gets a card with ``"built": false`` and the reason. The
genre classifier and the similarity index write their own cards; the difficulty models' cards are
assembled from their report files.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from music_pipeline.artifacts import ArtifactPath, read_json, read_parquet
from music_pipeline.difficulty import cnn, pdi
from music_pipeline.genre.versions import current_version
from music_pipeline.layout import DataLayout
from music_pipeline.learned.musicnn import WEIGHTS
from music_pipeline.learned.store import LEARNED_DIM, learned_version


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _mtime(p: ArtifactPath) -> float | None:
    try:
        return float(p.stat().st_mtime)
    except (OSError, AttributeError):
        return None


def _missing(name: str, reason: str) -> dict:
    return {"name": name, "built": False, "reason": reason}


def genre_card(layout: DataLayout) -> dict:
    root = layout.genre_dir
    vdir = current_version(root)
    if vdir is None or not (vdir / "card.json").is_file():
        status = layout.genre_status_path
        reason = read_json(status).get("reason") if status.is_file() else "genre_classifier has not run"
        return _missing(
            "genre_classifier", reason or "no card.json in the live version (built by an older version: rebuild)"
        )
    return {"built": True, **read_json(vdir / "card.json"), "path": str(vdir)}


def similarity_card(layout: DataLayout) -> dict:
    path = layout.similarity_dir / "index.json"
    if not path.is_file():
        return _missing("similarity_index", "similarity_index has not run")
    state = read_json(path)
    card = state.get("card")
    if not card:
        return _missing("similarity_index", "index built by an older version without a card: rebuild")
    return {"built": True, **card, "path": str(path.parent)}


def _bootstrap_accuracy(true: np.ndarray, pred: np.ndarray, resamples: int = 1000, seed: int = 0) -> list[float] | None:
    if len(true) < 2:
        return None
    rng = np.random.default_rng(seed)
    stats = [
        float(np.mean(true[i] == pred[i])) for i in (rng.integers(0, len(true), len(true)) for _ in range(resamples))
    ]
    return [float(np.quantile(stats, 0.025)), float(np.quantile(stats, 0.975))]


def difficulty_cnn_card(layout: DataLayout) -> dict:
    """From ``difficulty_cnn_report.json`` (written by the difficulty CNN asset)."""
    path = layout.difficulty_dir / cnn.REPORT_FILE
    if not path.is_file():
        return _missing("difficulty_cnn", "difficulty_cnn has not run")
    r = read_json(path)
    if r.get("trained") is False:
        return _missing("difficulty_cnn", r.get("reason", "not trained"))
    m, oof = r.get("metrics", {}), r.get("out_of_fold", {})
    ci = None
    if oof.get("true_level") and oof.get("predicted_level"):
        # resampling tracks (the report keeps no groups): an interval for this library's tracks
        ci = _bootstrap_accuracy(np.asarray(oof["true_level"]), np.asarray(oof["predicted_level"]))
    t = _mtime(path)
    cfg = r.get("config", {})
    return {
        "built": True,
        "name": "difficulty_cnn",
        "version": _iso(t).replace("-", "").replace(":", "") if t else None,
        "trained_at": _iso(t) if t else None,
        "model": f"{cfg.get('architecture', '?')} CNN, {r.get('final_model', {}).get('params', '?')} parameters",
        "feature_view": "128×128 log-mel segments",
        "role": cnn.role(m.get("spearman_rho")),
        "training_size": r.get("n_tracks"),
        "labels": list(r.get("class_counts", {})),
        "estimate": {
            "accuracy": m.get("track_accuracy"),
            "ci95": ci,
            "method": f"{r.get('folds', '?')}-fold CV grouped by {r.get('grouping', '?')}; track accuracy (segment probabilities averaged); CI: bootstrap over tracks",
        },
        "baseline": {
            "accuracy": (r.get("baselines", {}).get("majority") or {}).get("track_accuracy"),
            "method": "majority level of each training fold",
        },
        "path": str(path.parent),
        "note": "PDI levels as targets; the lead reconciles this card with the difficulty models' own after merge",
    }


def pdi_card(layout: DataLayout) -> dict:
    path = layout.difficulty_dir / pdi.MODEL_FILE
    if not path.is_file():
        return _missing("difficulty_pdi", "difficulty has not run")
    d = read_json(path)
    t = _mtime(path)
    return {
        "built": True,
        "name": "difficulty_pdi",
        "version": str(d.get("format_version")),
        "trained_at": _iso(t) if t else None,
        "model": f"normalised descriptor scale, weights {d.get('weights')}, thresholds {d.get('threshold_rule')}",
        "feature_view": "13 difficulty descriptors",
        "training_size": d.get("n_tracks"),
        "labels": list(d.get("levels", [])),
        "estimate": {
            "value": None,
            "ci95": None,
            "method": "not a supervised model: no labels to measure it against (see README, Difficulty)",
        },
        "path": str(path.parent),
    }


def learned_card(layout: DataLayout) -> dict:
    path = layout.learned_table_path
    t = _mtime(path) if path.is_file() else None
    n = None
    if path.is_file():
        n = len(read_parquet(path, columns=["key"]))
    return {
        "built": path.is_file(),
        "name": "learned_embedding",
        "version": learned_version(),
        "trained_at": None,
        "model": f"musicnn MSD + MTT taggers (Pons & Serra 2019), weights from {WEIGHTS.filename} (sha256 {WEIGHTS.sha256[:12]}…), run as ONNX graphs on onnxruntime",
        "feature_view": f"{LEARNED_DIM} pooled penultimate activations + 100 tag scores",
        "training_size": None,
        "tracks_embedded": n,
        "computed_at": _iso(t) if t else None,
        "estimate": {
            "value": None,
            "ci95": None,
            "method": "pretrained elsewhere, not trained here; its use is measured by the genre classifier and the similarity index",
        },
        "path": str(path) if path.is_file() else None,
    }


CARD_READERS: list[Callable[[DataLayout], dict]] = [
    genre_card,
    similarity_card,
    difficulty_cnn_card,
    pdi_card,
    learned_card,
]


def collect_cards(data_dir) -> list[dict]:
    layout = DataLayout(data_dir)
    cards = []
    for reader in CARD_READERS:
        try:
            cards.append(reader(layout))
        except Exception as exc:  # noqa: BLE001 - one unreadable report must not hide the other cards
            cards.append(
                _missing(reader.__name__.removesuffix("_card"), f"card unreadable: {type(exc).__name__}: {exc}")
            )
    return cards

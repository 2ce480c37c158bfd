"""The reference comparators and a segment-level approach, scored on the classifier's own folds.

KNN on the scaled embedding and logistic regression are candidates of ``genre.evaluate`` (they
can be deployed, so they are scored there, on the same folds); this module adds what needs the
stored mel segments (``(3, 128, 128)`` float16 log-mel dB per track):

* ``cnn_mfcc`` — a small CNN on MFCC patches: ``librosa.feature.mfcc(S=segment_dB)`` without
  MFCC 1 (the level term), 19×128 per segment, standardised per coefficient on the training fold.
* ``cnn_chroma`` — the same CNN on chroma patches (12×128). The segments hold no phase or CQT, and
  re-decoding every file would make the comparison cost a full decode per track, so chroma is
  computed *from the mel spectrogram*: each mel band's energy is spread over the pitch classes of
  the FFT bins it covers (``librosa.filters.chroma @ librosa.filters.mel.T``), bands from 50 Hz to
  5 kHz only. Above ~1 kHz a mel band is about half a semitone wide, so this is a usable chroma;
  below ~500 Hz bands span several semitones and the pitch classes blur (a known limitation).
* ``cnn_knn_hybrid`` — the MFCC CNN's penultimate layer (mean over a track's segments) joined to
  the standardised embedding, each block scaled to equal weight, into KNN.
* ``glcm_svm`` — grey-level co-occurrence texture of the mel segments (32 grey levels over the
  top 80 dB of each segment, so the gain does not matter; 4 frequency zones × distances 1, 3 ×
  time/frequency direction × 5 properties, mean and std over segments) into an RBF SVM;
  ``glcm_embedding_svm`` fuses them with the embedding (equal block weights).
* ``segment_pooled_logreg`` (beyond the reference) — level-free descriptors of each 3 s segment
  (MFCC 2–20 mean/std, mel-chroma, relative 16-band spectral envelope, spectral flux), logistic
  regression trained on segments, a track's probabilities = mean over its segments.

Every CNN is bounded: at most ``cnn_epochs`` epochs, early stopping on a grouped validation share
of the training fold (never the test fold). All segments of a track stay on its track's side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from music_pipeline import progress
from music_pipeline.models.genre import FoldPlan, headline, metrics

ALL_COMPARATORS = ("cnn_mfcc", "cnn_chroma", "cnn_knn_hybrid", "glcm_svm", "glcm_embedding_svm", "segment_pooled_logreg")
DESCRIPTIONS = {
    "cnn_mfcc": "CNN on MFCC patches (19×128 per segment, pooled per track)",
    "cnn_chroma": "CNN on chroma patches (12×128, chroma from the mel segments)",
    "cnn_knn_hybrid": "CNN penultimate features + embedding → KNN",
    "glcm_svm": "GLCM texture of the mel segments → SVM",
    "glcm_embedding_svm": "GLCM texture fused with the embedding → SVM",
    "segment_pooled_logreg": "beyond: level-free segment descriptors → logistic regression, pooled per track",
}
APPROACH = {n: "beyond" if n == "segment_pooled_logreg" else "reference" for n in ALL_COMPARATORS}
NOT_DEPLOYABLE_WHY = {
    "cnn_mfcc": "needs a Keras .keras file + the MFCC patch step in `classify`",
    "cnn_chroma": "needs a Keras .keras file + the mel-chroma patch step in `classify`",
    "cnn_knn_hybrid": "needs the CNN (.keras) and the training matrix (.npz)",
    "glcm_svm": "SVC has no library file format (support vectors would go to .npz)",
    "glcm_embedding_svm": "SVC has no library file format (support vectors would go to .npz)",
    "segment_pooled_logreg": "coefficients would fit .npz; segment step not wired into `classify` yet",
}


@dataclass
class ComparisonConfig:
    names: tuple[str, ...] = ALL_COMPARATORS
    cnn_epochs: int = 20
    cnn_patience: int = 3
    cnn_batch: int = 32
    knn_k: int = 5
    svm_C: float = 10.0
    logreg_C: float = 0.1
    shuffled: bool = True  # also score every comparator on the shuffled folds
    seed: int = 0


@dataclass
class ComparisonData:
    X: np.ndarray  # (n, 641) embedding
    y: np.ndarray  # (n,) class codes
    classes: list[str]
    groups: np.ndarray
    segments: np.ndarray | None  # (n, S, 128, 128) float16/32 log-mel dB, or None


@dataclass
class ComparatorResult:
    name: str
    description: str
    grouped: dict | None
    shuffled: dict | None
    seconds: float
    note: str = ""


# ---------------------------------------------------------------- patch and texture features


def mfcc_patches(segments: np.ndarray) -> np.ndarray:
    """(n, S, 128, T) log-mel dB → (n, S, 19, T): MFCC 2–20 (MFCC 1 is the level)."""
    import librosa

    return librosa.feature.mfcc(S=np.asarray(segments, dtype=np.float32), n_mfcc=20)[..., 1:, :].astype(np.float32)


_CHROMA_MAP: np.ndarray | None = None


def mel_to_chroma_map(fmin: float = 50.0, fmax: float = 5000.0) -> np.ndarray:
    """(12, 128): how each mel band's power distributes over pitch classes."""
    global _CHROMA_MAP
    if _CHROMA_MAP is None:
        import librosa

        from music_pipeline.features.spectra import N_FFT, N_MELS, SR

        mel = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS)  # (128, 1025)
        chroma = librosa.filters.chroma(sr=SR, n_fft=N_FFT, norm=None)  # (12, 1025)
        m = chroma @ mel.T
        centres = librosa.mel_frequencies(n_mels=N_MELS + 2, fmin=0.0, fmax=SR / 2)[1:-1]
        m[:, (centres < fmin) | (centres > fmax)] = 0.0
        _CHROMA_MAP = (m / np.maximum(m.sum(axis=0, keepdims=True), 1e-12)).astype(np.float32)
    return _CHROMA_MAP


def chroma_patches(segments: np.ndarray) -> np.ndarray:
    """(n, S, 128, T) log-mel dB → (n, S, 12, T) chroma, each frame scaled to max 1."""
    power = np.power(10.0, np.asarray(segments, dtype=np.float32) / 10.0)
    c = np.einsum("pm,...mt->...pt", mel_to_chroma_map(), power)
    return (c / np.maximum(c.max(axis=-2, keepdims=True), 1e-12)).astype(np.float32)


GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")


def glcm_features(segments: np.ndarray, levels: int = 32, zones: int = 4, top_db: float = 80.0) -> np.ndarray:
    """(n, S, 128, T) → (n, 2·zones·2·2·5): mean and std over segments of GLCM properties."""
    from skimage.feature import graycomatrix, graycoprops

    seg = np.asarray(segments, dtype=np.float32)
    n, S, H, _ = seg.shape
    per = []
    for i in range(n):
        rows = []
        for s in range(S):
            img = seg[i, s]
            hi = float(img.max())
            q = np.clip((img - (hi - top_db)) / top_db, 0, 1 - 1e-6)  # relative to the segment's peak
            q = (q * levels).astype(np.uint8)
            vals = []
            for z in range(zones):
                zone = q[z * H // zones : (z + 1) * H // zones]
                P = graycomatrix(zone, distances=[1, 3], angles=[0, np.pi / 2], levels=levels, symmetric=True, normed=True)
                vals += [np.nan_to_num(graycoprops(P, p), nan=0.0).ravel() for p in GLCM_PROPS]
            rows.append(np.concatenate(vals))
        rows = np.array(rows)
        per.append(np.concatenate([rows.mean(axis=0), rows.std(axis=0)]))
    return np.array(per, dtype=np.float64)


def segment_descriptors(segments: np.ndarray, bands: int = 16) -> np.ndarray:
    """(n, S, 128, T) → (n, S, F) level-free descriptors of each segment."""
    seg = np.asarray(segments, dtype=np.float32)
    mf = mfcc_patches(seg)
    ch = chroma_patches(seg)
    level = seg.mean(axis=(-2, -1), keepdims=True)
    env = (seg - level).mean(axis=-1)  # (n, S, 128) relative spectral envelope
    env = env.reshape(*env.shape[:-1], bands, -1).mean(axis=-1)
    flux = np.abs(np.diff(seg, axis=-1)).mean(axis=(-2, -1))[..., None]
    return np.concatenate([mf.mean(-1), mf.std(-1), ch.mean(-1), env, flux], axis=-1).astype(np.float64)


# ---------------------------------------------------------------- helpers


def _expand(scores: np.ndarray, local: np.ndarray, K: int) -> np.ndarray:
    out = np.full((scores.shape[0], K), -np.inf)
    out[:, local] = scores
    return out


def _blocks(*blocks: np.ndarray) -> np.ndarray:
    """Join standardised blocks so each contributes equally to a Euclidean distance."""
    return np.hstack([b / np.sqrt(b.shape[1]) for b in blocks])


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(train)
    return sc.transform(train), sc.transform(test)


def _svm_scores(Ftr: np.ndarray, ytr: np.ndarray, Fte: np.ndarray, K: int, C: float) -> np.ndarray:
    from sklearn.svm import SVC

    local = np.unique(ytr)
    svm = SVC(C=C, kernel="rbf", gamma="scale", class_weight="balanced", decision_function_shape="ovr")
    svm.fit(Ftr, np.searchsorted(local, ytr))
    d = svm.decision_function(Fte)
    if d.ndim == 1:  # two classes: sign of one decision value
        d = np.column_stack([-d, d])
    return _expand(d, local, K)


def _knn_scores(Ftr, ytr, Fte, K, k) -> np.ndarray:
    from sklearn.neighbors import KNeighborsClassifier

    local = np.unique(ytr)
    knn = KNeighborsClassifier(n_neighbors=max(1, min(k, len(ytr))), weights="distance").fit(Ftr, np.searchsorted(local, ytr))
    return _expand(knn.predict_proba(Fte), local, K)


# ---------------------------------------------------------------- the CNN


def _seed(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.get_logger().setLevel("ERROR")  # one new model per fold: tf.function retracing warnings are expected


def _build_cnn(input_shape: tuple[int, int], K: int):
    import keras
    from keras import layers

    inp = keras.Input((*input_shape, 1))
    x = inp
    for filters in (16, 32):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    feat = layers.Dense(32, activation="relu", name="penultimate")(x)
    out = layers.Dense(K, activation="softmax")(feat)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def _train_cnn(P: np.ndarray, y: np.ndarray, groups: np.ndarray, K: int, config: ComparisonConfig, seed: int):
    """P: (m, h, w) patches of training tracks' segments; y, groups per segment."""
    import keras
    from sklearn.model_selection import GroupShuffleSplit

    _seed(seed)
    model = _build_cnn(P.shape[1:], K)
    counts = np.bincount(y, minlength=K).astype(float)
    cw = {int(k): float(counts.sum() / (np.count_nonzero(counts) * counts[k])) for k in range(K) if counts[k] > 0}
    fit_idx, val_idx, monitor = np.arange(len(y)), None, "loss"
    if len(np.unique(groups)) >= 5:
        fit_idx, val_idx = next(GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=seed).split(P, y, groups))
        monitor = "val_loss"
    stop = keras.callbacks.EarlyStopping(monitor=monitor, patience=config.cnn_patience, restore_best_weights=True)
    model.fit(
        P[fit_idx][..., None], y[fit_idx],
        validation_data=(P[val_idx][..., None], y[val_idx]) if val_idx is not None else None,
        epochs=config.cnn_epochs, batch_size=config.cnn_batch, class_weight=cw, callbacks=[stop, progress.keras_epochs()], verbose=0, shuffle=True,
    )
    return model


def _run(model, P: np.ndarray, batch: int = 256) -> np.ndarray:
    """Inference by direct calls: ``model.predict`` retraces a tf.function for every new model."""
    return np.concatenate([np.asarray(model(P[i : i + batch, ..., None], training=False)) for i in range(0, len(P), batch)])


def _cnn_fold(patches: np.ndarray, data: ComparisonData, tr: np.ndarray, te: np.ndarray, config: ComparisonConfig, seed: int):
    """Train on the training tracks' segments; returns (track scores (te, K), track features tr, te)."""
    import keras

    K = len(data.classes)
    S = patches.shape[1]
    mu = patches[tr].mean(axis=(0, 1, 3), keepdims=True)[0]  # per row (coefficient / pitch class)
    sd = patches[tr].std(axis=(0, 1, 3), keepdims=True)[0] + 1e-6
    norm = lambda idx: ((patches[idx] - mu) / sd).reshape(len(idx) * S, *patches.shape[2:])
    model = _train_cnn(norm(tr), np.repeat(data.y[tr], S), np.repeat(data.groups[tr], S), K, config, seed)
    probs = _run(model, norm(te)).reshape(len(te), S, K).mean(axis=1)
    feat_model = keras.Model(model.input, model.get_layer("penultimate").output)
    feats = lambda idx: _run(feat_model, norm(idx)).reshape(len(idx), S, -1).mean(axis=1)
    out = (np.log(np.maximum(probs, 1e-9)), feats(tr), feats(te))
    keras.backend.clear_session()
    return out


# ---------------------------------------------------------------- the comparison


def run_comparison(data: ComparisonData, plan: FoldPlan, config: ComparisonConfig, on_progress: Callable[[str], None] | None = None) -> list[ComparatorResult]:
    import time

    say = on_progress or (lambda _m: None)
    unknown = [n for n in config.names if n not in ALL_COMPARATORS]
    if unknown:
        raise ValueError(f"unknown comparators {unknown} (choose from {ALL_COMPARATORS})")
    if not plan.possible:
        return [ComparatorResult(n, DESCRIPTIONS[n], None, None, 0.0, plan.note) for n in config.names]
    if data.segments is None:
        return [ComparatorResult(n, DESCRIPTIONS[n], None, None, 0.0, "mel segments unavailable") for n in config.names]
    K = len(data.classes)
    cache: dict[str, np.ndarray] = {}

    def feature(name: str) -> np.ndarray:
        if name not in cache:
            say(f"computing {name} for {len(data.y)} tracks")
            cache[name] = {"mfcc": mfcc_patches, "chroma": chroma_patches, "glcm": glcm_features, "segdesc": segment_descriptors}[name](data.segments)
        return cache[name]

    schemes = [("grouped", plan.grouped)] + ([("shuffled", plan.shuffled)] if config.shuffled else [])
    results = []
    cnn_cache: dict[tuple[str, int], tuple] = {}
    for name in config.names:
        t0 = time.perf_counter()
        out: dict[str, dict | None] = {"grouped": None, "shuffled": None}
        for scheme, folds in schemes:
            scores = np.full((len(data.y), K), -np.inf)
            for k, (tr, te) in enumerate(folds):
                say(f"{name} · {scheme} fold {k + 1}/{len(folds)}")
                scores[te] = _fold_scores(name, data, tr, te, K, config, feature, cnn_cache, (scheme, k))
            out[scheme] = metrics(data.y, scores.argmax(axis=1), data.classes)
        results.append(ComparatorResult(name, DESCRIPTIONS[name], out["grouped"], out["shuffled"], time.perf_counter() - t0))
    return results


def _fold_scores(name, data: ComparisonData, tr, te, K, config: ComparisonConfig, feature, cnn_cache, fold_key) -> np.ndarray:
    ytr = data.y[tr]
    if name in ("cnn_mfcc", "cnn_knn_hybrid"):
        key = ("mfcc",) + fold_key
        if key not in cnn_cache:
            cnn_cache[key] = _cnn_fold(feature("mfcc"), data, tr, te, config, config.seed + fold_key[1])
        scores, ftr, fte = cnn_cache[key]
        if name == "cnn_mfcc":
            return scores
        etr, ete = _standardise(data.X[tr], data.X[te])
        ctr, cte = _standardise(ftr, fte)
        return _knn_scores(_blocks(etr, ctr), ytr, _blocks(ete, cte), K, config.knn_k)
    if name == "cnn_chroma":
        return _cnn_fold(feature("chroma"), data, tr, te, config, config.seed + fold_key[1])[0]
    if name == "glcm_svm":
        gtr, gte = _standardise(feature("glcm")[tr], feature("glcm")[te])
        return _svm_scores(gtr, ytr, gte, K, config.svm_C)
    if name == "glcm_embedding_svm":
        gtr, gte = _standardise(feature("glcm")[tr], feature("glcm")[te])
        etr, ete = _standardise(data.X[tr], data.X[te])
        return _svm_scores(_blocks(gtr, etr), ytr, _blocks(gte, ete), K, config.svm_C)
    if name == "segment_pooled_logreg":
        from sklearn.linear_model import LogisticRegression

        D = feature("segdesc")
        S = D.shape[1]
        Dtr, Dte = _standardise(D[tr].reshape(len(tr) * S, -1), D[te].reshape(len(te) * S, -1))
        local = np.unique(ytr)
        lr = LogisticRegression(C=config.logreg_C, class_weight="balanced", max_iter=3000).fit(Dtr, np.searchsorted(local, np.repeat(ytr, S)))
        p = lr.predict_proba(Dte).reshape(len(te), S, -1).mean(axis=1)
        return _expand(np.log(np.maximum(p, 1e-9)), local, K)
    raise ValueError(name)


# ---------------------------------------------------------------- the ranked table


def classifier_rows(cv_report: dict) -> list[dict]:
    """Rows for the embedding models from the genre_classifier's report (best config per kind)."""
    rows = []
    by_kind: dict[str, list[dict]] = {}
    for c in cv_report.get("candidates", []):
        by_kind.setdefault(c["kind"], []).append(c)
    for kind, cs in by_kind.items():
        best = max(cs, key=lambda c: (c["grouped"]["balanced_accuracy"], c["grouped"]["macro_f1"]))
        approach = "beyond" if "level_invariant" in kind else "reference"
        note = f"best of {len(cs)} configs ({best['name']}); flat CV, so slightly optimistic" if len(cs) > 1 else best["name"]
        rows.append(_row(kind, approach, "yes", best["grouped"], best["shuffled"], note))
    if cv_report.get("nested"):
        rows.append(_row("deployed procedure (nested selection)", "deployed", "yes", cv_report["nested"], None,
                         f"choose among all candidates on inner grouped folds; deployed: {cv_report.get('deployed', '?')}"))
    if cv_report.get("baseline_grouped"):
        rows.append(_row("majority-class baseline", "baseline", "-", cv_report["baseline_grouped"], cv_report.get("baseline_shuffled"), "always the training fold's most common label"))
    return rows


def comparator_rows(results: Sequence[ComparatorResult]) -> list[dict]:
    return [_row(r.name, APPROACH[r.name], f"no: {NOT_DEPLOYABLE_WHY[r.name]}", r.grouped, r.shuffled, f"{r.description}; {r.seconds:.0f} s" + (f"; {r.note}" if r.note else "")) for r in results]


def _row(model: str, approach: str, deployable: str, grouped: dict | None, shuffled: dict | None, note: str) -> dict:
    g, s = headline(grouped), headline(shuffled)
    return {
        "model": model,
        "approach": approach,
        "grouped_bal_acc": g.get("balanced_accuracy", np.nan),
        "grouped_acc": g.get("accuracy", np.nan),
        "grouped_macro_f1": g.get("macro_f1", np.nan),
        "shuffled_bal_acc": s.get("balanced_accuracy", np.nan),
        "shuffled_acc": s.get("accuracy", np.nan),
        "gap": s.get("balanced_accuracy", np.nan) - g.get("balanced_accuracy", np.nan),
        "deployable": deployable,
        "note": note,
    }


def ranked_table(rows: Sequence[dict]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    if df.empty:
        return df
    df = df.sort_values(["grouped_bal_acc", "grouped_macro_f1"], ascending=False, kind="stable", na_position="last").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df


def report_markdown(table: pd.DataFrame, header: dict, remarks: Sequence[str]) -> str:
    lines = ["# Genre models: ranked by grouped cross-validation", ""]
    lines += [f"- **{k}**: {v}" for k, v in header.items()]
    lines += ["", table.to_markdown(index=False, floatfmt=".3f") if len(table) else "_no models were scored_", ""]
    lines += ["Columns: `grouped_*` = StratifiedGroupKFold (no group on both sides); `shuffled_*` = StratifiedKFold on "
              "tracks (a source can sit on both sides); `gap` = shuffled − grouped balanced accuracy. "
              "The majority baseline's balanced accuracy is at most 1/number of labels.", ""]
    lines += [f"- {r}" for r in remarks]
    return "\n".join(lines) + "\n"


__all__ = [
    "ALL_COMPARATORS", "ComparatorResult", "ComparisonConfig", "ComparisonData", "chroma_patches", "classifier_rows",
    "comparator_rows", "glcm_features", "mel_to_chroma_map", "mfcc_patches", "ranked_table", "report_markdown",
    "run_comparison", "segment_descriptors",
]

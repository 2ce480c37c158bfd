"""Explanations of the *deployed* genre model's own predictions, and the tagger's plain words.

How a prediction is attributed depends on the deployed family, and every attribution is exact
for the model that made the prediction (the probability shown is always that model's):

* **XGBoost** — SHAP (``TreeExplainer``) in the model's PCA space. A component is named after the
  musical concepts of the features that load on it most (``describe_component``); for one track,
  the features that drive *its* component value are named with "high"/"low".
* **Logistic regression** — a linear model's SHAP values with the training mean as background are
  coefficient × standardised value, so they are computed directly (``linear_shap``) and summed
  per musical concept (timbre colour, bass energy, …; the learned embedding is one block).
* **RBF SVM / KNN** — no exact per-feature attribution exists: the explanation names the
  labelled training tracks the model finds most similar (for KNN these are its actual votes) and
  says so.

In every case SHAP values are log-odds contributions: base + Σ contributions = the model's raw
margin for every track and class (tested). The plain-language layer comes from the pretrained
tagger (``tag_summary``): what it hears in the track (strings, electronic, piano, …) and which of
those tags are typical of the predicted label in the training library — a description, labelled
as the tagger's, not the classifier's reasoning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from music_pipeline.features.embedding import FEATURE_GROUPS
from music_pipeline.features.spectra import N_MELS, SR
from music_pipeline.genre.candidates import GenreModel
from music_pipeline.learned.store import LEARNED_NAMES, TAG_NAMES, TAG_TEXT

# centre frequencies of the 128 mel bands of the embedding (librosa's Slaney mel, 0..sr/2)
_MEL_HZ = None


def _mel_hz(band: int) -> float:
    global _MEL_HZ
    if _MEL_HZ is None:
        import librosa

        _MEL_HZ = librosa.mel_frequencies(n_mels=N_MELS + 2, fmin=0.0, fmax=SR / 2)[1:-1]
    return float(_MEL_HZ[band])


def _mel_region(hz: float) -> str:
    for limit, name in (
        (120, "sub-bass"),
        (400, "bass"),
        (2000, "mid-range"),
        (6000, "presence"),
        (np.inf, "treble/air"),
    ):
        if hz < limit:
            return name
    return "treble/air"


LEARNED_CONCEPT = "learned embedding (musicnn)"
_LEARNED_SET = set(LEARNED_NAMES)


def feature_concept(name: str) -> tuple[str, tuple[str, object]]:
    """(musical concept, (token kind, token value)) of a feature-view column."""
    if m := re.fullmatch(r"mfcc_(mean|std|delta_mean)_(\d+)", name):
        stat, i = m.group(1), int(m.group(2))
        if stat == "std":
            return "timbre variability", ("MFCC spread", i)
        if stat == "delta_mean":
            return "timbre movement", ("ΔMFCC", i)
        if i == 1:
            return "loudness", ("MFCC", i)
        return ("brightness/spectral tilt" if i <= 4 else "timbre colour" if i <= 13 else "fine timbre texture"), (
            "MFCC",
            i,
        )
    if m := re.fullmatch(r"chroma_(mean|std)_(\w+)", name):
        pc = m.group(2).replace("s", "#")
        return ("harmony/key" if m.group(1) == "mean" else "harmonic movement"), ("chroma", pc)
    if m := re.fullmatch(r"spectral_(centroid|rolloff|bandwidth)_(mean|std)", name):
        return ("brightness" if m.group(2) == "mean" else "brightness variability"), ("", f"spectral {m.group(1)}")
    if m := re.fullmatch(r"spectral_contrast_(mean|std)_b(\d)", name):
        return "tonal peaks vs noise", ("contrast band", int(m.group(2)))
    if name.startswith("spectral_flatness"):
        return "noisiness", ("", "spectral flatness")
    if name.startswith("zcr"):
        return "noisiness", ("", "zero-crossing rate")
    if name == "tempo_bpm":
        return "tempo", ("", "tempo")
    if name in ("rms_mean", "rms_std"):
        return "loudness", ("", "RMS level" if name == "rms_mean" else "RMS spread")
    if name in ("rms_cv", "rms_dynamic_range_db", "low_energy_ratio"):
        return "dynamics", (
            "",
            {
                "rms_cv": "level variation",
                "rms_dynamic_range_db": "dynamic range",
                "low_energy_ratio": "quiet-frame share",
            }[name],
        )
    if m := re.fullmatch(r"tonnetz_(mean|std)_(\w+)", name):
        return "tonal colour", ("tonnetz", m.group(2).replace("_", " "))
    if m := re.fullmatch(r"mel_(mean|p25|p50|p75)_(\d+)", name):
        hz = _mel_hz(int(m.group(2)))
        return f"{_mel_region(hz)} energy", ("mel", hz)
    if name in _LEARNED_SET:
        return LEARNED_CONCEPT, ("", "musicnn activations")
    if name in TAG_TEXT:
        return f"tag: {TAG_TEXT[name]}", ("", f"{TAG_TEXT[name]} score")
    if name.startswith("onset_rate"):
        return "rhythmic density", ("", "onset rate")
    if name.startswith("onset_strength"):
        return "rhythmic attack", ("", "onset strength")
    if name == "pulse_clarity":
        return "beat clarity", ("", "pulse clarity")
    return FEATURE_GROUPS.get(name, "other"), ("", name)


def _render_tokens(tokens: Sequence[tuple[str, object]]) -> str:
    by_kind: dict[str, list] = {}
    for kind, value in tokens:
        by_kind.setdefault(kind, []).append(value)
    parts = []
    for kind, values in by_kind.items():
        if kind == "mel":
            lo, hi = min(values), max(values)
            parts.append(f"mel {lo:.0f} Hz" if np.isclose(lo, hi) else f"mel {lo:.0f}–{hi:.0f} Hz")
        elif all(isinstance(v, int) for v in values):
            vs = sorted(set(values))
            runs, start = [], vs[0]
            for a, b in zip(vs, vs[1:] + [None], strict=True):
                if b != a + 1:
                    runs.append(f"{start}" if start == a else f"{start}–{a}")
                    start = b
            parts.append(f"{kind} {', '.join(runs)}")
        else:
            parts += [f"{kind} {v}".strip() for v in dict.fromkeys(values)]
    return ", ".join(parts)


def describe_component(loadings: np.ndarray, names: Sequence[str], top: int = 8, concepts: int = 2) -> str:
    """'brightness (spectral centroid, MFCC 2–4); bass energy (mel 130–380 Hz)' for one PCA axis."""
    order = np.argsort(-np.abs(loadings))[:top]
    weight: dict[str, float] = {}
    tokens: dict[str, list] = {}
    for j in order:
        concept, token = feature_concept(names[j])
        weight[concept] = weight.get(concept, 0.0) + float(abs(loadings[j]))
        tokens.setdefault(concept, []).append(token)
    best = sorted(weight, key=lambda c: -weight[c])[:concepts]
    return "; ".join(f"{c} ({_render_tokens(tokens[c])})" for c in best)


@dataclass
class ShapResult:
    values: np.ndarray  # (n, components, classes): margin contributions
    base: np.ndarray  # (classes,)
    data: np.ndarray  # (n, components): the model-space inputs
    scaled: np.ndarray  # (n, view features): standardised feature view (for "high"/"low")
    classes: list[str]
    component_names: list[str]  # PC1.. (trees) or concept groups (linear models)
    component_text: list[str]  # musical description per component
    drivers: Callable[[int, int, int], str] | None = None  # (track, component, class) -> what drives it for this track
    kind: str = "tree SHAP in PCA space"

    def labels(self, width: int = 48) -> list[str]:
        out = []
        for n, t in zip(self.component_names, self.component_text, strict=True):
            short = re.sub(r" \([^)]*\)", "", t).replace("; ", " / ")
            out.append(f"{n} {short}"[:width])
        return out

    def importance(self) -> np.ndarray:
        """Mean |SHAP| per component (over tracks and classes)."""
        return np.abs(self.values).mean(axis=(0, 2))


def _booster(model: GenreModel):
    if not model.is_xgb:
        raise ValueError(f"SHAP TreeExplainer needs the XGBoost model, not {model.candidate.name}")
    return model.pipeline.named_steps["model"].get_booster()


def margin(model: GenreModel, X: np.ndarray) -> np.ndarray:
    """The booster's raw margin per class (n, classes); binary models get (−m, m)."""
    import xgboost as xgb

    m = _booster(model).predict(xgb.DMatrix(model.model_space(X)), output_margin=True)
    return np.column_stack([-m, m]) if m.ndim == 1 else m


def tree_shap(model: GenreModel, X: np.ndarray) -> ShapResult:
    import shap

    Z = model.model_space(X)
    explainer = shap.TreeExplainer(_booster(model))
    values = np.asarray(explainer.shap_values(Z))
    base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))
    if values.ndim == 2:  # binary: one logit, class 1 vs class 0
        values = np.stack([-values, values], axis=-1)
        base = np.array([-base[0], base[0]])
    pca = model.pipeline.named_steps["pca"]
    text = [describe_component(pca.components_[k], model.view_names) for k in range(pca.n_components_)]
    return ShapResult(
        values, base, Z, model.scaled_view(X), model.classes, [f"PC{k + 1}" for k in range(Z.shape[1])], text
    )


def _drivers(model: GenreModel, shap_res: ShapResult, i: int, k: int, n: int = 4) -> str:
    """The features that make track i's component-k value what it is: 'brightness high (spectral centroid)'."""
    w = model.pipeline.named_steps["pca"].components_[k]
    s = shap_res.scaled[i]
    contrib = w * s
    z = shap_res.data[i, k]
    order = [j for j in np.argsort(-np.abs(contrib)) if np.sign(contrib[j]) == np.sign(z)][:n]
    groups: dict[str, list] = {}
    for j in order:
        concept, token = feature_concept(model.view_names[j])
        groups.setdefault(f"{concept} {'high' if s[j] > 0 else 'low'}", []).append(token)
    return ", ".join(f"{c} ({_render_tokens(v)})" for c, v in groups.items()) or shap_res.component_text[k]


def explain_track(model: GenreModel, shap_res: ShapResult, i: int, proba: np.ndarray, top: int = 3) -> dict:
    """Plain-language reasons for track i's predicted class, from its largest SHAP components."""
    order = np.argsort(-proba)
    c, r = int(order[0]), int(order[1]) if len(order) > 1 else int(order[0])
    phi = shap_res.values[i, :, c]
    comps = [k for k in np.argsort(-np.abs(phi))[:top] if abs(phi[k]) >= 0.1 * np.abs(phi).max()]
    toward = [(k, phi[k]) for k in comps if phi[k] > 0]
    away = [(k, phi[k]) for k in comps if phi[k] < 0]
    label = shap_res.classes[c]

    def drive(k):
        return shap_res.drivers(i, k, c) if shap_res.drivers else _drivers(model, shap_res, i, k)

    def fmt(items):
        return "; ".join(f"{shap_res.component_names[k]} ({v:+.2f}): {drive(k)}" for k, v in items)

    parts = [f"Predicted {label} (p={proba[c]:.2f}; next {shap_res.classes[r]} {proba[r]:.2f})."]
    if toward:
        parts.append(f"Pushed toward {label} by {fmt(toward)}.")
    if away:
        parts.append(f"Pulled away from {label} by {fmt(away)}.")
    return {
        "label": label,
        "text": " ".join(parts),
        "components": [
            {
                "component": shap_res.component_names[k],
                "shap": float(phi[k]),
                "value": float(shap_res.data[i, k]),
                "meaning": shap_res.component_text[k],
                "this_track": drive(k),
            }
            for k in comps
        ],
    }


def _concept_groups(names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(group names in first-seen order, group index of every column)."""
    order: dict[str, int] = {}
    idx = np.array([order.setdefault(feature_concept(n)[0], len(order)) for n in names])
    return list(order), idx


def linear_shap(model: GenreModel, X) -> ShapResult:
    """Exact SHAP values of a logistic-regression model, summed per musical concept.

    With the training mean as background, a linear model's SHAP value of feature j is
    coef_j × (standardised, weighted value)_j; the base is the intercept. A binary model's single
    logit d is split as (−d/2, d/2), whose softmax is the model's probability."""
    if not model.is_linear:
        raise ValueError(f"linear SHAP needs the logistic-regression model, not {model.candidate.name}")
    est = model.pipeline.named_steps["model"]
    Z = model.model_space(X)  # (n, F): what the coefficients multiply
    coef, base = np.asarray(est.coef_), np.asarray(est.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:
        coef, base = np.vstack([-coef / 2, coef / 2]), np.array([-base[0] / 2, base[0] / 2])
    per_feature = Z[:, :, None] * coef.T[None, :, :]  # (n, F, classes)
    groups, gidx = _concept_groups(model.view_names)
    values = np.zeros((len(Z), len(groups), coef.shape[0]))
    np.add.at(values, (slice(None), gidx), per_feature)
    data = np.stack([Z[:, gidx == g].mean(axis=1) for g in range(len(groups))], axis=1)
    text = []
    for g, name in enumerate(groups):
        cols = np.flatnonzero(gidx == g)
        tokens = [feature_concept(model.view_names[j])[1] for j in cols[:64]]
        text.append(
            f"{len(cols)} pooled activations of the pretrained tagger"
            if name == LEARNED_CONCEPT
            else _render_tokens(tokens)
        )

    def drivers(i: int, k: int, c: int, n: int = 3) -> str:
        cols = np.flatnonzero(gidx == k)
        if groups[k].startswith("tag: "):  # one column: say how this track's score compares with the library's
            return f"scores {'above' if Z[i, cols[0]] > 0 else 'below'} the library's average"
        if groups[k] == LEARNED_CONCEPT:
            return f"{len(cols)} learned dims, {int((per_feature[i, cols, c] > 0).sum())} pushing toward, {int((per_feature[i, cols, c] < 0).sum())} away"
        top = cols[np.argsort(-np.abs(per_feature[i, cols, c]))[:n]]
        by: dict[str, list] = {}
        for j in top:
            concept, token = feature_concept(model.view_names[j])
            by.setdefault(f"{concept} {'high' if Z[i, j] > 0 else 'low'}", []).append(token)
        return ", ".join(f"{name} ({_render_tokens(v)})" for name, v in by.items())

    return ShapResult(
        values,
        base,
        data,
        model.scaled_view(X),
        model.classes,
        groups,
        text,
        drivers,
        "linear SHAP (coefficient × standardised value)",
    )


def linear_margin(model: GenreModel, X) -> np.ndarray:
    """The logistic regression's raw logits (n, classes), binary as (−d/2, d/2)."""
    est = model.pipeline.named_steps["model"]
    d = est.decision_function(model.model_space(X))
    return np.column_stack([-d / 2, d / 2]) if d.ndim == 1 else d


def attribution(model: GenreModel, X) -> ShapResult | None:
    """Exact SHAP values of the deployed model, or None for families without them (SVM, KNN)."""
    if model.is_xgb:
        return tree_shap(model, X)
    if model.is_linear:
        return linear_shap(model, X)
    return None


def nearest_training_tracks(model: GenreModel, X, i: int = 0, n: int = 5) -> list[dict]:
    """The labelled training tracks the model finds most similar to row ``i``: for KNN its own
    nearest neighbours, for an RBF SVM the support vectors with the largest kernel value."""
    est = model.pipeline.named_steps["model"]
    z = model.model_space(X)[i : i + 1]
    relpaths = model.info.get("train_relpaths") or []
    labels = model.info.get("train_labels") or []
    if model.candidate.family == "knn":
        dist, idx = est.kneighbors(z, n_neighbors=min(n, len(est._fit_X)))
        rows, scores = idx[0], -dist[0]
    elif model.candidate.family == "svm":
        sv = est.svc_.support_vectors_
        k = np.exp(-est.svc_._gamma * ((sv - z) ** 2).sum(axis=1))
        top = np.argsort(-k)[:n]
        rows, scores = est.svc_.support_[top], k[top]
    else:
        return []
    return [
        {
            "track": relpaths[r] if r < len(relpaths) else f"training row {r}",
            "label": labels[r] if r < len(labels) else None,
            "similarity": float(s),
        }
        for r, s in zip(rows, scores, strict=True)
    ]


# Tags that describe sound (decades and marketing words of the MSD vocabulary left out)
_NOT_SOUND = {
    "00s",
    "60s",
    "70s",
    "80s",
    "90s",
    "sexy",
    "catchy",
    "party",
    "beautiful",
    "happy",
    "sad",
    "oldies",
    "easy listening",
    "female vocalists",
    "male vocalists",
    "female vocalist",
}
DISPLAY_TAGS = [c for c in TAG_NAMES if TAG_TEXT[c] not in _NOT_SOUND]


def track_tags(tags_row: np.ndarray, top: int = 10) -> dict[str, float]:
    """The tagger's strongest sound tags of one track: {tag: score}, highest first (a tag both
    vocabularies have keeps its higher score)."""
    scores: dict[str, float] = {}
    for col in DISPLAY_TAGS:
        v = float(tags_row[TAG_NAMES.index(col)])
        scores[TAG_TEXT[col]] = max(v, scores.get(TAG_TEXT[col], 0.0))
    return dict(sorted(((k, round(v, 3)) for k, v in scores.items()), key=lambda kv: -kv[1])[:top])


def tag_profiles(tags: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per label, how much more (or less) each sound tag scores than across the whole library:
    mean over the label's tracks − mean over all tracks."""
    labels = np.asarray(labels)
    overall = tags.mean(axis=0)
    out = {}
    for lab in sorted(set(labels)):
        diff = tags[labels == lab].mean(axis=0) - overall
        out[str(lab)] = {TAG_TEXT[c]: round(float(diff[TAG_NAMES.index(c)]), 4) for c in DISPLAY_TAGS}
    return out


def tag_summary(
    tags_row: np.ndarray, label: str, profiles: Mapping[str, Mapping[str, float]] | None, top: int = 3
) -> str:
    """'The tagger hears strings (0.81), classical (0.74), slow (0.60); typical of orchestral here: strings, classical.'"""
    heard = track_tags(tags_row, top)
    text = "The pretrained tagger hears " + ", ".join(f"{t} ({v:.2f})" for t, v in heard.items())
    prof = (profiles or {}).get(label)
    if prof:
        typical = [t for t, d in sorted(prof.items(), key=lambda kv: -kv[1]) if d > 0][:8]
        shared = [t for t in heard if t in typical]
        text += f"; {'of these, typical of ' + label + ' in the training library: ' + ', '.join(shared) if shared else 'tags typical of ' + label + ' in the training library: ' + ', '.join(typical[:3])}"
    return text + "."


def explain_prediction(
    model: GenreModel,
    X,
    i: int,
    proba: np.ndarray,
    shap_res: ShapResult | None = None,
    tags_row: np.ndarray | None = None,
    profiles=None,
) -> dict:
    """Why the deployed model predicts what it does for row ``i`` (see the module docstring)."""
    label = model.classes[int(np.argmax(proba))]
    if shap_res is None:
        shap_res = attribution(model, X)
    if shap_res is not None:
        e = explain_track(model, shap_res, i, proba)
        out = {
            "model": model.candidate.name,
            "method": shap_res.kind,
            "label": label,
            "text": e["text"],
            "components": e["components"],
        }
    else:
        order = np.argsort(-proba)
        head = (
            f"Predicted {label} (p={proba[order[0]]:.2f}; next {model.classes[order[1]]} {proba[order[1]]:.2f})."
            if len(order) > 1
            else f"Predicted {label}."
        )
        near = nearest_training_tracks(model, X, i)
        what = (
            "its nearest neighbours (whose votes make the prediction)"
            if model.candidate.family == "knn"
            else "the support vectors most similar to this track (an RBF SVM has no exact per-feature attribution)"
        )
        text = (
            f"{head} {model.candidate.name}: {what}: " + "; ".join(f"{n['track']} [{n['label']}]" for n in near) + "."
        )
        out = {
            "model": model.candidate.name,
            "method": "nearest training tracks",
            "label": label,
            "text": text,
            "components": [],
            "neighbours": near,
        }
    if tags_row is not None and np.all(np.isfinite(tags_row)):
        out["tags_text"] = tag_summary(tags_row, label, profiles)
        out["text"] += " " + out["tags_text"]
    return out


def boundary_songs(proba: np.ndarray, classes: Sequence[str], margin_: float = 0.15) -> pd.DataFrame:
    """Rows whose two most likely classes are within ``margin_`` of each other (positions + both)."""
    if proba.shape[1] < 2:
        return pd.DataFrame(columns=["row", "first", "p_first", "second", "p_second", "gap"])
    order = np.argsort(-proba, axis=1)
    p1 = proba[np.arange(len(proba)), order[:, 0]]
    p2 = proba[np.arange(len(proba)), order[:, 1]]
    rows = np.flatnonzero(p1 - p2 <= margin_)
    return pd.DataFrame(
        {
            "row": rows,
            "first": [classes[order[i, 0]] for i in rows],
            "p_first": p1[rows],
            "second": [classes[order[i, 1]] for i in rows],
            "p_second": p2[rows],
            "gap": (p1 - p2)[rows],
        }
    ).sort_values("gap", kind="stable")

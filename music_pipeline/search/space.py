"""The search space: how raw 641-D embeddings become the unit vectors the index compares.

Every candidate starts by standardising each feature on the library (mean/std saved, so a track
from outside the library lands in the same space). Candidates then differ:

- ``standardised``: the z-scores as they are (512 of the 641 dimensions are mel statistics, so
  the spectrum dominates the cosine);
- ``balanced``: each feature group (timbre, harmony, rhythm, energy, spectrum) scaled to the same
  total weight;
- ``pca``: principal components keeping 95 % of the variance (less noise, fewer dimensions);
- ``whitened``: the same components scaled to unit variance.

``choose_transform`` keeps the one with the best leave-one-out precision@5 of same-label (else
same-group) neighbours on the library; it keeps ``standardised`` unless another beats it by
``min_gain``, and when nothing is labelled. All candidates' scores are returned for the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from music_pipeline.features.embedding import FEATURE_GROUPS, FEATURE_NAMES
from music_pipeline.search.exact import DEFAULT_BLOCK_ELEMENTS, exact_topk, normalise

GROUPS = ["timbre", "harmony", "rhythm", "energy", "spectrum"]
CANDIDATES = ["standardised", "balanced", "pca", "whitened"]
PCA_VARIANCE = 0.95
PCA_FIT_ROWS = 20_000  # PCA is fitted on at most this many rows (random, seeded)
EVAL_QUERIES = 2_000  # precision@k uses at most this many query tracks


@dataclass
class Transform:
    kind: str
    mean: np.ndarray  # (641,) library mean of the raw features
    std: np.ndarray  # (641,) library std (constant features get 1)
    weights: np.ndarray | None = None  # (641,) per-feature weight after standardising
    pca_mean: np.ndarray | None = None  # (641,)
    components: np.ndarray | None = None  # (k, 641)
    pca_scale: np.ndarray | None = None  # (k,) 1/sqrt(variance) when whitening
    rotation: np.ndarray | None = None  # (dim, dim) orthogonal, energy first (see energy_rotation)
    info: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return len(self.components) if self.components is not None else len(self.mean)

    def standardise(self, raw: np.ndarray) -> np.ndarray:
        return (np.asarray(raw, dtype=np.float64) - self.mean) / self.std

    def project(self, raw: np.ndarray) -> np.ndarray:
        """Raw (n, 641) or (641,) features -> L2-normalised float32 index vectors."""
        z = self.standardise(raw)
        if self.weights is not None:
            z = z * self.weights
        if self.components is not None:
            z = (z - self.pca_mean) @ self.components.T
            if self.pca_scale is not None:
                z = z * self.pca_scale
        v = normalise(z)
        return v if self.rotation is None else normalise(v @ self.rotation)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"mean": self.mean, "std": self.std}
        for name in ("weights", "pca_mean", "components", "pca_scale", "rotation"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_arrays(cls, kind: str, arrays: dict[str, np.ndarray], info: dict | None = None) -> "Transform":
        names = ("weights", "pca_mean", "components", "pca_scale", "rotation")
        return cls(kind, arrays["mean"], arrays["std"], *(arrays.get(n) for n in names), info=info or {})


def energy_rotation(vectors: np.ndarray, max_rows: int = PCA_FIT_ROWS, seed: int = 0) -> np.ndarray:
    """Orthogonal (d, d) matrix whose first columns carry most of the vectors' energy.

    Eigenvectors of the uncentred second-moment matrix, largest first. Rotating by it changes no
    dot product (so no cosine and no ranking); it concentrates each vector's norm in its leading
    dimensions, which lets exact search bound scores from those alone (``exact.PrunedExact``).
    """
    if len(vectors) > max_rows:  # sample before converting: never a float64 copy of everything
        vectors = vectors[np.sort(np.random.default_rng(seed).choice(len(vectors), max_rows, replace=False))]
    x = np.asarray(vectors, dtype=np.float64)
    eigval, eigvec = np.linalg.eigh(x.T @ x)
    return eigvec[:, np.argsort(-eigval, kind="stable")].astype(np.float32)


def standard_scaler(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = raw.mean(axis=0)
    std = raw.std(axis=0)
    return mean, np.where(std > 1e-12, std, 1.0)


def group_weights() -> np.ndarray:
    """1/sqrt(group size) per feature: every group then adds the same expected squared norm."""
    sizes = {g: sum(FEATURE_GROUPS[n] == g for n in FEATURE_NAMES) for g in GROUPS}
    return np.array([1.0 / np.sqrt(sizes[FEATURE_GROUPS[n]]) for n in FEATURE_NAMES])


def fit_transform(kind: str, raw: np.ndarray, seed: int = 0) -> Transform:
    from sklearn.decomposition import PCA

    raw = np.asarray(raw, dtype=np.float64)
    mean, std = standard_scaler(raw)
    t = Transform(kind, mean, std)
    if kind == "balanced":
        t.weights = group_weights()
    elif kind in ("pca", "whitened"):
        z = t.standardise(raw)
        if len(z) > PCA_FIT_ROWS:
            z = z[np.random.default_rng(seed).choice(len(z), PCA_FIT_ROWS, replace=False)]
        pca = PCA(n_components=min(len(z) - 1, z.shape[1]), svd_solver="full", random_state=seed).fit(z)
        k = int(np.searchsorted(np.cumsum(pca.explained_variance_ratio_), PCA_VARIANCE) + 1)
        k = max(1, min(k, len(pca.components_)))
        t.pca_mean, t.components = pca.mean_, pca.components_[:k].copy()
        if kind == "whitened":
            t.pca_scale = 1.0 / np.sqrt(np.maximum(pca.explained_variance_[:k], 1e-12))
        t.info = {"components": k, "explained_variance": float(pca.explained_variance_ratio_[:k].sum())}
    elif kind != "standardised":
        raise ValueError(f"unknown transform {kind!r} (choose from {CANDIDATES})")
    return t


def retrieval_classes(labels, groups, keys) -> tuple[str, np.ndarray | None]:
    """What precision is measured against: labels if at least two labels have two or more tracks,
    else groups (a missing group is the track's own), else nothing."""
    lab = np.array([x if isinstance(x, str) and x else None for x in labels], dtype=object)
    if _usable(lab):
        return "label", lab
    grp = np.array([g if isinstance(g, str) and g else k for g, k in zip(groups, keys)], dtype=object)
    if _usable(grp):
        return "group", grp
    return "none", None


def _usable(classes: np.ndarray) -> bool:
    vals, counts = np.unique([c for c in classes if c is not None], return_counts=True)
    return len(vals) >= 2 and int((counts >= 2).sum()) >= 2


def precision_at_k(vectors: np.ndarray, classes: np.ndarray, k: int = 5, max_queries: int = EVAL_QUERIES, seed: int = 0, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> dict:
    """Leave-one-out precision@k of same-class neighbours, with the random baseline beside it.

    Queries are the tracks whose class has at least one other member (others cannot score);
    unclassed neighbours count as misses. The baseline is the expected precision of k random
    other tracks: the mean of (n_class - 1) / (N - 1) over the same queries.
    """
    classes = np.asarray(classes, dtype=object)
    known = np.array([c is not None for c in classes])
    names, inverse, counts = np.unique(classes[known].astype(str), return_inverse=True, return_counts=True)
    size = np.zeros(len(classes), dtype=np.int64)
    size[known] = counts[inverse]
    queries = np.flatnonzero(size >= 2)
    n = len(vectors)
    if len(queries) == 0 or n < 2:
        return {"precision": None, "baseline": None, "queries": 0, "k": k}
    if len(queries) > max_queries:
        queries = np.sort(np.random.default_rng(seed).choice(queries, max_queries, replace=False))
    kk = min(k, n - 1)
    idx, _ = exact_topk(vectors, vectors[queries], kk, block_elements, exclude=queries)
    same = np.array([[j >= 0 and classes[j] == classes[q] for j in row] for q, row in zip(queries, idx)])
    return {
        "precision": float(same.mean()),
        "baseline": float(np.mean((size[queries] - 1) / (n - 1))),
        "queries": int(len(queries)),
        "k": kk,
    }


def choose_transform(raw: np.ndarray, classes: np.ndarray | None, k: int = 5, min_gain: float = 0.01, seed: int = 0, candidates=CANDIDATES) -> tuple[Transform, dict]:
    """Fit every candidate, score it by precision@k, keep the best (see module docstring)."""
    raw = np.asarray(raw, dtype=np.float64)
    if classes is None or len(raw) < 3:
        t = fit_transform("standardised", raw, seed)
        return t, {"chosen": "standardised", "reason": "no labels or groups to measure retrieval with", "scores": {}}
    fitted, scores = {}, {}
    for kind in candidates:
        fitted[kind] = fit_transform(kind, raw, seed)
        scores[kind] = precision_at_k(fitted[kind].project(raw), classes, k, seed=seed)
    base = scores["standardised"]["precision"] or 0.0
    best = max(candidates, key=lambda c: (scores[c]["precision"] or 0.0, -candidates.index(c)))
    chosen = best if (scores[best]["precision"] or 0.0) >= base + min_gain else "standardised"
    report = {
        "chosen": chosen,
        "reason": f"highest leave-one-out precision@{k} on the library (another transform must beat 'standardised' by {min_gain})",
        "scores": {c: scores[c]["precision"] for c in candidates},
        "baseline": scores["standardised"]["baseline"],
        "queries": scores["standardised"]["queries"],
    }
    t = fitted[chosen]
    t.info = {**t.info, "selection": report}
    return t, report

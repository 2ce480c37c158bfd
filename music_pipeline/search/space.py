"""The search space: how a track's features become the unit vectors the index compares.

Every candidate starts by standardising each feature on the library (mean/std saved, so a track
from outside the library lands in the same space). Candidates on the 641 hand-crafted dims:

- ``standardised``: the z-scores as they are (512 of the 641 dimensions are mel statistics, so
  the spectrum dominates the cosine);
- ``balanced``: each feature group (timbre, harmony, rhythm, energy, spectrum) scaled to the same
  total weight;
- ``pca``: principal components keeping 95 % of the variance (less noise, fewer dimensions);
- ``whitened``: the same components scaled to unit variance;

and, when every track has the learned embedding (``learned/``: musicnn's pooled penultimate
layer), two more:

- ``learned``: the standardised learned embedding alone;
- ``fusion``: the standardised 641 dims and the standardised learned embedding, each normalised
  and weighted 1/√2, so the cosine is the mean of the two cosines.

``choose_transform`` keeps the one with the best leave-one-out precision@5 on the library —
averaged over same-label and same-group neighbours when both are known, else whichever is; it
keeps ``standardised`` unless another beats it by ``min_gain``, and when nothing is labelled or
grouped. All candidates' scores are returned for the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from music_pipeline.features.embedding import FEATURE_GROUPS, FEATURE_NAMES
from music_pipeline.search.exact import DEFAULT_BLOCK_ELEMENTS, exact_topk, normalise

GROUPS = ["timbre", "harmony", "rhythm", "energy", "spectrum"]
CANDIDATES = ["standardised", "balanced", "pca", "whitened"]
LEARNED_CANDIDATES = ["learned", "fusion"]  # need the learned embedding of every track
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
    learned_mean: np.ndarray | None = None  # (400,) library mean of the learned embedding (learned, fusion)
    learned_std: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def needs_learned(self) -> bool:
        return self.kind in LEARNED_CANDIDATES

    @property
    def dim(self) -> int:
        if self.kind == "learned":
            return len(self.learned_mean)
        if self.kind == "fusion":
            return len(self.mean) + len(self.learned_mean)
        return len(self.components) if self.components is not None else len(self.mean)

    def standardise(self, raw: np.ndarray) -> np.ndarray:
        return (np.asarray(raw, dtype=np.float64) - self.mean) / self.std

    def project(self, raw: np.ndarray, learned: np.ndarray | None = None) -> np.ndarray:
        """Raw (n, 641) or (641,) features [and (n, 400) learned embeddings, for the learned and
        fusion spaces] -> L2-normalised float32 index vectors."""
        if self.needs_learned:
            if learned is None:
                raise ValueError(f"the {self.kind!r} search space needs the learned embedding of the track")
            zl = normalise(
                (np.atleast_2d(np.asarray(learned, dtype=np.float64)) - self.learned_mean) / self.learned_std
            )
            if self.kind == "learned":
                v = zl
            else:
                zh = normalise(np.atleast_2d(self.standardise(raw)))
                v = normalise(np.hstack([zh, zl]) / np.sqrt(2.0))
            if np.ndim(raw) == 1 and (learned is None or np.ndim(learned) == 1):
                v = v[0]
            return v if self.rotation is None else normalise(v @ self.rotation)
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
        for name in _OPTIONAL:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_arrays(cls, kind: str, arrays: dict[str, np.ndarray], info: dict | None = None) -> Transform:
        return cls(kind, arrays["mean"], arrays["std"], **{n: arrays.get(n) for n in _OPTIONAL}, info=info or {})


_OPTIONAL = ("weights", "pca_mean", "components", "pca_scale", "rotation", "learned_mean", "learned_std")


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


def fit_transform(kind: str, raw: np.ndarray, seed: int = 0, learned: np.ndarray | None = None) -> Transform:
    from sklearn.decomposition import PCA

    raw = np.asarray(raw, dtype=np.float64)
    mean, std = standard_scaler(raw)
    t = Transform(kind, mean, std)
    if kind in LEARNED_CANDIDATES:
        if learned is None:
            raise ValueError(f"the {kind!r} space needs the learned embedding")
        t.learned_mean, t.learned_std = standard_scaler(np.asarray(learned, dtype=np.float64))
    elif kind == "balanced":
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
        raise ValueError(f"unknown transform {kind!r} (choose from {CANDIDATES + LEARNED_CANDIDATES})")
    return t


def retrieval_classes(labels, groups, keys) -> tuple[str, np.ndarray | None]:
    """What precision is measured against: labels if at least two labels have two or more tracks,
    else groups (a missing group is the track's own), else nothing."""
    lab = np.array([x if isinstance(x, str) and x else None for x in labels], dtype=object)
    if _usable(lab):
        return "label", lab
    grp = np.array([g if isinstance(g, str) and g else k for g, k in zip(groups, keys, strict=True)], dtype=object)
    if _usable(grp):
        return "group", grp
    return "none", None


def retrieval_bases(labels, groups, keys) -> dict[str, np.ndarray]:
    """Every usable notion of 'a right neighbour': same label and/or same group (a track's own
    group when it has none does not count: then no track shares it)."""
    out = {}
    lab = np.array([x if isinstance(x, str) and x else None for x in labels], dtype=object)
    if _usable(lab):
        out["label"] = lab
    grp = np.array([g if isinstance(g, str) and g else None for g in groups], dtype=object)
    if _usable(grp):
        out["group"] = grp
    return out


def _usable(classes: np.ndarray) -> bool:
    vals, counts = np.unique([c for c in classes if c is not None], return_counts=True)
    return len(vals) >= 2 and int((counts >= 2).sum()) >= 2


def precision_at_k(
    vectors: np.ndarray,
    classes: np.ndarray,
    k: int = 5,
    max_queries: int = EVAL_QUERIES,
    seed: int = 0,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    per_query: bool = False,
) -> dict:
    """Leave-one-out precision@k of same-class neighbours, with the random baseline beside it.

    Queries are the tracks whose class has at least one other member (others cannot score);
    unclassed neighbours count as misses. The baseline is the expected precision of k random
    other tracks: the mean of (n_class - 1) / (N - 1) over the same queries.
    """
    classes = np.asarray(classes, dtype=object)
    known = np.array([c is not None for c in classes])
    _names, inverse, counts = np.unique(classes[known].astype(str), return_inverse=True, return_counts=True)
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
    same = np.array([[j >= 0 and classes[j] == classes[q] for j in row] for q, row in zip(queries, idx, strict=True)])
    out = {
        "precision": float(same.mean()),
        "baseline": float(np.mean((size[queries] - 1) / (n - 1))),
        "queries": len(queries),
        "k": kk,
    }
    if per_query:
        out["query_rows"], out["query_precision"] = queries, same.mean(axis=1)
    return out


def precision_ci(result: dict, clusters: np.ndarray, resamples: int = 1000, seed: int = 0) -> list[float] | None:
    """95 % bootstrap interval of a ``precision_at_k(..., per_query=True)`` result, resampling
    whole clusters (sources) of queries."""
    if "query_rows" not in result or not len(result["query_rows"]):
        return None
    c = np.asarray(clusters, dtype=object)[result["query_rows"]]
    names, inv = np.unique(c.astype(str), return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(names))]
    rng = np.random.default_rng(seed)
    prec = result["query_precision"]
    stats = [
        float(prec[np.concatenate([members[g] for g in rng.integers(0, len(names), len(names))])].mean())
        for _ in range(resamples)
    ]
    return [float(np.quantile(stats, 0.025)), float(np.quantile(stats, 0.975))]


def choose_transform(
    raw: np.ndarray,
    bases: dict[str, np.ndarray] | np.ndarray | None,
    k: int = 5,
    min_gain: float = 0.01,
    seed: int = 0,
    candidates=None,
    learned: np.ndarray | None = None,
) -> tuple[Transform, dict]:
    """Fit every candidate, score it by precision@k (mean over the bases), keep the best (see the
    module docstring). ``bases``: {"label": classes, "group": classes} (or one classes array)."""
    raw = np.asarray(raw, dtype=np.float64)
    if bases is not None and not isinstance(bases, dict):
        bases = {"label": bases}
    if candidates is None:
        usable_learned = learned is not None and len(learned) == len(raw) and np.isfinite(learned).all()
        candidates = CANDIDATES + (LEARNED_CANDIDATES if usable_learned else [])
    if not bases or len(raw) < 3:
        t = fit_transform("standardised", raw, seed)
        return t, {"chosen": "standardised", "reason": "no labels or groups to measure retrieval with", "scores": {}}
    fitted, scores, per_basis = {}, {}, {}
    for kind in candidates:
        fitted[kind] = fit_transform(kind, raw, seed, learned)
        vectors = fitted[kind].project(raw, learned)
        per_basis[kind] = {b: precision_at_k(vectors, cls, k, seed=seed) for b, cls in bases.items()}
        scores[kind] = float(np.mean([r["precision"] or 0.0 for r in per_basis[kind].values()]))
    base = scores["standardised"]
    best = max(candidates, key=lambda c: (scores[c], -candidates.index(c)))
    chosen = best if scores[best] >= base + min_gain else "standardised"
    report = {
        "chosen": chosen,
        "reason": f"highest leave-one-out precision@{k} on the library, mean over same-{' and same-'.join(bases)} neighbours "
        f"(another space must beat 'standardised' by {min_gain})",
        "measured_on": list(bases),
        "scores": scores,
        "scores_by_basis": {c: {b: r["precision"] for b, r in per_basis[c].items()} for c in candidates},
        "baseline": {b: r["baseline"] for b, r in per_basis["standardised"].items()},
        "queries": {b: r["queries"] for b, r in per_basis["standardised"].items()},
    }
    t = fitted[chosen]
    t.info = {**t.info, "selection": report}
    return t, report

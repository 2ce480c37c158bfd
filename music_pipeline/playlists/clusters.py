"""Groups of tracks that sound alike: the space, the number of groups, the clustering.

1. **Space** (``playlist_space``): the fusion of the learned embedding (musicnn's pooled
   penultimate layer) and the 641 hand-crafted dimensions, as in the similarity index: each block
   standardised on the library and weighted to the same total variance; reduced by PCA to the
   components that keep ``VARIANCE`` of the variance; each row L2-normalised (Euclidean
   distances are then cosine distances).
2. **k** (``choose_k``): the smallest k whose groups explain ``VARIANCE_EXPLAINED`` of the
   variance (between-group share of the total sum of squares); also measured: the eigengap of the
   normalised Laplacian of the nearest-neighbour graph, and the silhouette.
3. **Clustering** (``cluster``): Ward's agglomerative clustering (each merge adds the least
   within-group variance); also measured: k-means, and spectral clustering on the graph (each
   track joined to its ``NEIGHBOURS`` nearest, symmetrised).
4. **Misfits** (``misfits``): the ``MISFIT_SHARE`` of tracks farthest from their group's centre
   join no playlist (listed apart, with the reason).

The choice of each step, against the others, was measured on a development library of 25 sources
(``benchmarks/bench_playlists.py``, docs/playlists.md).

Above ``FIT_ROWS`` tracks, everything is fitted on a seeded sample and the other tracks join the
group whose centroid is nearest. Fixed seeds: same inputs, same groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VARIANCE = 0.9  # PCA keeps the components that explain this share of the variance
NEIGHBOURS = 10  # graph: each track's nearest tracks
MIN_PLAYLIST = 5  # the largest k tried leaves playlists of this many tracks on average
MIN_K, MAX_K = 3, 30
FIT_ROWS = 4000  # larger libraries are clustered on a seeded sample of this many tracks
METHODS = ("ward", "kmeans", "spectral")
K_RULES = ("variance", "eigengap", "silhouette")
VARIANCE_EXPLAINED = 0.5  # the "variance" rule: the smallest k whose k-means explains this share
# a track that sounds like no group is listed apart rather than forced into the nearest playlist: at
# most this share of the library, those farthest from their group's centre (docs/playlists.md)
MISFIT_SHARE = 0.08
MIN_MEMBERS = 2  # a group never loses tracks below this


@dataclass
class Space:
    vectors: np.ndarray  # (n, d) unit rows
    components: int
    explained: float  # share of the variance the kept components explain


@dataclass
class Clustering:
    labels: np.ndarray  # (n,) group per track, 0..k-1, largest group first
    k: int
    method: str
    k_rule: str
    space: Space
    scores: dict = field(default_factory=dict)  # the k rule's score per k tried

    def summary(self) -> dict:
        return {
            "k": self.k,
            "method": self.method,
            "k_rule": self.k_rule,
            "pca_components": self.space.components,
            "pca_variance": round(self.space.explained, 4),
            "scores_by_k": {str(k): round(float(v), 4) for k, v in self.scores.items()},
        }


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 1e-12, norm, 1.0)


def fuse(blocks: list[np.ndarray]) -> np.ndarray:
    """Blocks of columns side by side, each standardised and weighted to the same total variance."""
    parts = []
    for b in blocks:
        x = np.asarray(b, dtype=np.float64)
        std = x.std(axis=0)
        parts.append((x - x.mean(axis=0)) / np.where(std > 1e-12, std, 1.0) / np.sqrt(x.shape[1]))
    return np.hstack(parts)


def playlist_space(blocks: list[np.ndarray], variance: float = VARIANCE, seed: int = 0) -> Space:
    """``fuse`` the blocks, PCA to ``variance`` of the variance, unit rows (module docstring)."""
    from sklearn.decomposition import PCA

    z = fuse(blocks)
    if len(z) < 2:
        raise ValueError(f"need at least 2 tracks with features to group, got {len(z)}")
    fit = z if len(z) <= FIT_ROWS else z[np.random.default_rng(seed).choice(len(z), FIT_ROWS, replace=False)]
    pca = PCA(n_components=min(len(fit) - 1, z.shape[1]), svd_solver="full", random_state=seed).fit(fit)
    cum = np.cumsum(pca.explained_variance_ratio_)
    k = int(min(np.searchsorted(cum, variance) + 1, len(cum)))
    return Space(_unit(pca.transform(z)[:, :k]), k, float(cum[k - 1]))


def k_range(n: int) -> range:
    """The numbers of groups tried: MIN_K up to n / MIN_PLAYLIST (at most MAX_K)."""
    hi = max(MIN_K, min(MAX_K, n // MIN_PLAYLIST, n - 1))
    return range(min(MIN_K, hi), hi + 1)


def knn_affinity(vectors: np.ndarray, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """Dense symmetric 0/1 graph: i–j joined when either is among the other's nearest (cosine)."""
    n = len(vectors)
    kk = max(1, min(neighbours, n - 1))
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    nearest = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
    a = np.zeros((n, n))
    a[np.repeat(np.arange(n), kk), nearest.ravel()] = 1.0
    return np.maximum(a, a.T)


def laplacian_eigenvalues(affinity: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` smallest eigenvalues of the normalised Laplacian I - D^-1/2 A D^-1/2."""
    d = affinity.sum(axis=1)
    inv = 1.0 / np.sqrt(np.where(d > 0, d, 1.0))
    lap = np.eye(len(affinity)) - inv[:, None] * affinity * inv[None, :]
    return np.linalg.eigvalsh(lap)[:count]


def _kmeans(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors)


def _spectral(affinity: np.ndarray, k: int, seed: int) -> np.ndarray:
    import warnings

    from sklearn.cluster import SpectralClustering

    model = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed, n_init=10)
    with warnings.catch_warnings():  # a graph in several pieces is what groups look like
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        return model.fit_predict(affinity)


def _ward(vectors: np.ndarray, k: int) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    return AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(vectors)


def _fit(method: str, vectors: np.ndarray, k: int, affinity: np.ndarray | None, seed: int) -> np.ndarray:
    if method == "spectral":
        return _spectral(knn_affinity(vectors) if affinity is None else affinity, k, seed)
    return _ward(vectors, k) if method == "ward" else _kmeans(vectors, k, seed)


def choose_k(
    vectors: np.ndarray, rule: str, method: str = "ward", affinity: np.ndarray | None = None, seed: int = 0
) -> tuple[int, dict]:
    """The number of groups by ``rule`` (``K_RULES``; the silhouette and variance rules score the
    groups ``method`` makes) and its score for every k tried."""
    ks = k_range(len(vectors))
    if rule == "eigengap":
        a = knn_affinity(vectors) if affinity is None else affinity
        ev = laplacian_eigenvalues(a, ks.stop + 1)
        scores = {k: float(ev[k] - ev[k - 1]) for k in ks}  # gap after the k-th smallest eigenvalue
        return max(ks, key=lambda k: (scores[k], -k)), scores
    if rule not in K_RULES:
        raise ValueError(f"unknown k rule {rule!r} (choose from {K_RULES})")
    fits = {k: _fit(method, vectors, k, affinity, seed) for k in ks}
    if rule == "silhouette":
        from sklearn.metrics import silhouette_score

        scores = {k: float(silhouette_score(vectors, fits[k])) for k in ks}
        return max(ks, key=lambda k: (scores[k], -k)), scores
    scores = {k: explained_variance(vectors, fits[k]) for k in ks}
    reached = [k for k in ks if scores[k] >= VARIANCE_EXPLAINED]
    return (reached[0] if reached else ks[-1]), scores


def explained_variance(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Between-group share of the total sum of squares."""
    total = float(((vectors - vectors.mean(axis=0)) ** 2).sum())
    within = sum(
        float(((vectors[labels == c] - vectors[labels == c].mean(axis=0)) ** 2).sum()) for c in np.unique(labels)
    )
    return 1.0 - within / total if total > 0 else 0.0


def misfits(vectors: np.ndarray, labels: np.ndarray, share: float = MISFIT_SHARE) -> np.ndarray:
    """(n,) True for the tracks that fit their group worst: the ``share`` of all tracks farthest from
    their group's centre, except where that would leave a group fewer than ``MIN_MEMBERS``."""
    groups = np.unique(labels)
    centres = np.vstack([vectors[labels == g].mean(axis=0) for g in groups])
    distance = np.linalg.norm(vectors - centres[np.searchsorted(groups, labels)], axis=1)
    drop = min(int(share * len(vectors)), len(vectors))
    out = np.zeros(len(vectors), dtype=bool)
    if drop:
        out[np.argsort(-distance, kind="stable")[:drop]] = True
    for g in groups:
        if ((labels == g) & ~out).sum() < MIN_MEMBERS:
            out[labels == g] = False
    return out


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Relabel 0..k-1 with the largest group first (ties: first appearance)."""
    values, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = values[np.lexsort((first, -counts))]
    remap = {v: i for i, v in enumerate(order)}
    return np.array([remap[v] for v in labels])


def cluster(
    blocks: list[np.ndarray],
    method: str = "ward",
    k_rule: str = "variance",
    k: int | None = None,
    variance: float = VARIANCE,
    seed: int = 0,
) -> Clustering:
    """Group the tracks (rows of the feature ``blocks``); ``k`` fixed, or chosen by ``k_rule``.
    One BLAS thread: these matrices are small, and threads contending with the build's workers made
    one PCA 0.01 → 2.5 s on a loaded machine."""
    from threadpoolctl import threadpool_limits

    if method not in METHODS:
        raise ValueError(f"unknown clustering {method!r} (choose from {METHODS})")
    with threadpool_limits(limits=1):
        return _cluster(blocks, method, k_rule, k, variance, seed)


def _cluster(blocks, method, k_rule, k, variance, seed) -> Clustering:
    space = playlist_space(blocks, variance, seed)
    v = space.vectors
    n = len(v)
    sample = np.arange(n)
    if n > FIT_ROWS:
        sample = np.sort(np.random.default_rng(seed).choice(n, FIT_ROWS, replace=False))
    fit = v[sample]
    affinity = knn_affinity(fit) if method == "spectral" or k_rule == "eigengap" else None
    scores: dict = {}
    if k is None:
        k, scores = choose_k(fit, k_rule, method, affinity, seed)
        rule = k_rule
    else:
        rule = "fixed"
    k = max(1, min(int(k), len(fit)))
    fitted = _fit(method, fit, k, affinity, seed)
    labels = np.empty(n, dtype=np.int64)
    labels[sample] = fitted
    if n > len(sample):  # the rest join the nearest group centroid
        rest = np.setdiff1d(np.arange(n), sample)
        centroids = _unit(np.vstack([fit[fitted == c].mean(axis=0) for c in range(k)]))
        labels[rest] = np.argmax(v[rest] @ centroids.T, axis=1)
    return Clustering(_by_size(labels), k, method, rule, space, scores)

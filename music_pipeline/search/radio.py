"""Radio: a playlist that walks the embedding space from a seed.

Each next track maximises ``(1 − pull)·cos(previous, c) + pull·cos(seed, c)`` among the allowed
tracks not played yet: close to the previous track (smooth transitions) and held near the seed
(no drifting off into another corner of the library). Filters (tempo and energy windows) are a
mask of allowed positions. Candidates come from the index's neighbours of the previous track and
of the seed; when none of them is allowed the pool grows (×4) up to the whole library.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Neighbours = Callable[[np.ndarray, int], np.ndarray]  # (unit vector, k) -> positions


def window_mask(values: np.ndarray, target: float | None, tolerance: float) -> np.ndarray:
    """True where ``|value − target| ≤ tolerance`` (everything when there is no target)."""
    values = np.asarray(values, dtype=np.float64)
    if target is None:
        return np.ones(len(values), dtype=bool)
    return np.isfinite(values) & (np.abs(values - target) <= tolerance)


def usable_candidates(neighbours: Neighbours | None, queries, usable: np.ndarray, pool: int) -> np.ndarray:
    """Positions still usable among the ``pool`` nearest of each query, the pool growing ×4 while
    none is usable (up to the whole library; every usable position without an index)."""
    n = len(usable)
    k = pool
    while True:
        if neighbours is None or k >= n:
            return np.flatnonzero(usable)
        cand = np.unique(np.concatenate([neighbours(q, k) for q in queries]))
        cand = cand[cand >= 0]
        cand = cand[usable[cand]]
        if len(cand):
            return cand
        k *= 4


def radio_walk(
    vectors: np.ndarray,
    seed: np.ndarray,
    length: int,
    allowed: np.ndarray | None = None,
    exclude: list[int] | None = None,
    neighbours: Neighbours | None = None,
    pull: float = 0.5,
    pool: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the playlist (never repeating, never ``exclude``) and each step's score."""
    n = len(vectors)
    seed = np.asarray(seed, dtype=np.float32)
    usable = np.ones(n, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool).copy()
    for p in exclude or []:
        if 0 <= p < n:
            usable[p] = False
    prev = seed
    out, scores = [], []
    while len(out) < length and usable.any():
        cand = usable_candidates(neighbours, (prev, seed), usable, pool)
        if not len(cand):
            break
        v = np.asarray(vectors[cand], dtype=np.float32)
        score = (1.0 - pull) * (v @ prev) + pull * (v @ seed)
        best = int(np.lexsort((cand, -score))[0])
        out.append(int(cand[best]))
        scores.append(float(score[best]))
        usable[cand[best]] = False
        prev = v[best]
    return np.array(out, dtype=np.int64), np.array(scores)

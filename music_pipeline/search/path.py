"""A path from track A to track B that changes smoothly ("sonic adventure").

The index vectors are unit vectors, so the straight way from A to B is the great circle between
them. ``length`` waypoints are placed on it at equal angles (spherical linear interpolation,
t = 1/(L+1) … L/(L+1)); for each waypoint in turn the walk takes the unused library track that
maximises ``(1 − smooth)·cos(waypoint, c) + smooth·cos(previous, c)``: near its place on the way
(so the path keeps moving from A towards B at an even pace) and near the track just played (so
neighbouring steps sound alike). A, B and tracks already taken are never picked, so the path has
no repeats. Candidates come from the index's neighbours of the waypoint and of the previous track;
when none is unused the pool grows (×4) up to the whole library.
"""

from __future__ import annotations

import numpy as np

from music_pipeline.search.radio import Neighbours

DEFAULT_SMOOTH = 0.3


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The unit vector a fraction ``t`` of the way along the great circle from ``a`` to ``b``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    omega = float(np.arccos(np.clip(a @ b, -1.0, 1.0)))
    if omega < 1e-6:
        return a.astype(np.float32)
    if np.pi - omega < 1e-6:  # opposite points: every great circle joins them; lerp of a and b is 0
        v = (1 - t) * a + t * b + 1e-3 * np.roll(a, 1)
    else:
        v = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
    return (v / np.linalg.norm(v)).astype(np.float32)


def path_walk(
    vectors: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    length: int,
    exclude: list[int] | None = None,
    neighbours: Neighbours | None = None,
    smooth: float = DEFAULT_SMOOTH,
    pool: int = 50,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the tracks between A and B (never repeating, never ``exclude``), each step's
    score and its waypoint fraction t. Shorter than ``length`` only when the library runs out."""
    n = len(vectors)
    usable = np.ones(n, dtype=bool)
    for p in exclude or []:
        if 0 <= p < n:
            usable[p] = False
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    prev = a
    out, scores, ts = [], [], []
    for i in range(1, length + 1):
        if not usable.any():
            break
        t = i / (length + 1)
        w = slerp(a, b, t)
        k = pool
        while True:
            if neighbours is None or k >= n:
                cand = np.flatnonzero(usable)
            else:
                cand = np.union1d(neighbours(w, k), neighbours(prev, k))
                cand = cand[cand >= 0]
                cand = cand[usable[cand]]
            if len(cand) or k >= n:
                break
            k *= 4
        v = np.asarray(vectors[cand], dtype=np.float32)
        score = (1.0 - smooth) * (v @ w) + smooth * (v @ prev)
        best = int(np.lexsort((cand, -score))[0])  # ties: lowest position, deterministic
        out.append(int(cand[best]))
        scores.append(float(score[best]))
        ts.append(t)
        usable[cand[best]] = False
        prev = v[best]
    return np.array(out, dtype=np.int64), np.array(scores), np.array(ts)

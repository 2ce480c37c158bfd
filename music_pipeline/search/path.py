"""A path from track A to track B that changes smoothly ("sonic adventure").

The index vectors are unit vectors, so the straight way from A to B is the great circle between
them. ``length`` waypoints are placed on it at equal angles (spherical linear interpolation,
t = 1/(L+1) … L/(L+1)); for each waypoint in turn the walk takes the unused library track that
maximises ``(1 − smooth)·cos(waypoint, c) + smooth·cos(previous pick, c)``: near its place on the
way and near the track picked before it (so neighbouring steps sound alike). A, B and tracks
already taken are never picked, so the path has no repeats. Candidates come from the index's
neighbours of the waypoint and of the previous pick; when none is unused the pool grows (×4) up to
the whole library.

A real library is lumpy, so the track nearest a late waypoint can lie nearer A than one picked
earlier (the best one was used up). The picks are therefore finally ordered by their *progress*:
the angle of their projection onto the plane of A and B, measured from A, as a fraction of the
angle between A and B. The playlist then only ever moves forward, from A's side to B's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from music_pipeline.search.radio import CandidatePool, Neighbours, use_up

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


def progress(vectors: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far along the arc from ``a`` (0) to ``b`` (1) each vector's projection on their plane lies."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    along = b - (b @ a) * a
    norm = np.linalg.norm(along)
    omega = float(np.arccos(np.clip(a @ b, -1.0, 1.0)))
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if norm < 1e-9 or omega < 1e-9:  # A and B (nearly) the same direction: no way to measure along
        return np.zeros(len(v))
    return np.arctan2(v @ (along / norm), v @ a) / omega


def path_walk(
    vectors: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    length: int,
    exclude: list[int] | None = None,
    neighbours: Neighbours | None = None,
    smooth: float = DEFAULT_SMOOTH,
    pool: int = 50,
    by_progress: bool = True,
    step_allowed: Callable[[int | None, bool], np.ndarray] | None = None,
    same: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the tracks between A and B in order of progress (never repeating, never
    ``exclude``; ties keep the pick order; ``by_progress=False``: in pick order), each one's cosine
    to the waypoint of its place, and those waypoints' fractions t. Shorter than ``length`` only
    when the library runs out. ``step_allowed(previous position or None for A, last pick?)``: a mask
    of the positions that may follow (``--harmonic``); the picks then stay in pick order, a chain,
    and the walk ends early when none may follow."""
    n = len(vectors)
    usable = np.ones(n, dtype=bool)
    for p in exclude or []:
        if 0 <= p < n:
            usable[p] = False
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    prev = a
    out = []
    candidates = CandidatePool(neighbours, pool)
    for i in range(1, length + 1):
        step = usable if step_allowed is None else usable & step_allowed(out[-1] if out else None, i == length)
        if not step.any():
            break
        t = i / (length + 1)
        w = slerp(a, b, t)
        cand = candidates((w, prev), step)
        if not len(cand):
            break
        v = np.asarray(vectors[cand], dtype=np.float32)
        score = (1.0 - smooth) * (v @ w) + smooth * (v @ prev)
        best = int(np.lexsort((cand, -score))[0])  # ties: lowest position, deterministic
        out.append(int(cand[best]))
        use_up(usable, int(cand[best]), same)  # one copy of a recording at most (``same``, as in radio)
        prev = v[best]
    picked = np.array(out, dtype=np.int64)
    chosen = np.asarray(vectors[picked], dtype=np.float32).reshape(len(picked), -1)
    chain = not by_progress or step_allowed is not None
    order = np.arange(len(picked)) if chain else np.lexsort((np.arange(len(picked)), progress(chosen, a, b)))
    ts = np.arange(1, len(picked) + 1) / (length + 1)
    scores = np.array([float(chosen[o] @ slerp(a, b, t)) for o, t in zip(order, ts, strict=True)])
    return picked[order], scores, ts

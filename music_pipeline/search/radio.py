"""Radio: a playlist that walks the embedding space from a seed.

Each next track maximises ``(1 − pull)·cos(previous, c) + pull·cos(seed, c)`` among the allowed
tracks not played yet: close to the previous track (smooth transitions) and held near the seed
(no drifting off into another corner of the library). Filters (tempo and energy windows) are a
mask of allowed positions. Candidates come from the index's neighbours of the previous track and
of the seed (``CandidatePool``). ``same`` (a duplicate group per position, -1 for none): a pick
uses up every copy of its recording, so a walk never plays one recording twice.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Neighbours = Callable[[np.ndarray, int], np.ndarray]  # (unit vector, k) -> positions

# At or below this many usable positions every one is scored directly (one product per step)
# instead of widening index searches until the pool holds one: tight tempo/energy filters made that
# up to ~200 near-full searches per request.
DIRECT_SCORING = 20_000


def first_of_each(groups: np.ndarray) -> np.ndarray:
    """True where a position is the first of its duplicate group in ``groups`` (or in none: -1)."""
    groups = np.asarray(groups)
    keep = groups < 0
    _, first = np.unique(groups, return_index=True)
    keep[first] = True
    return keep


def use_up(usable: np.ndarray, pos: int, same: np.ndarray | None) -> None:
    """Mark ``pos`` — and every other copy of its recording (``same``) — as no longer usable."""
    usable[pos] = False
    if same is not None and same[pos] >= 0:
        usable[same == same[pos]] = False


def window_mask(values: np.ndarray, target: float | None, tolerance: float) -> np.ndarray:
    """True where ``|value − target| ≤ tolerance`` (everything when there is no target)."""
    values = np.asarray(values, dtype=np.float64)
    if target is None:
        return np.ones(len(values), dtype=bool)
    return np.isfinite(values) & (np.abs(values - target) <= tolerance)


class CandidatePool:
    """Candidates of one walk (radio or A→B path): positions still usable among the ``pool``
    nearest of each query. When none of them is usable the pool grows ×4 and stays grown for the
    walk's later steps, so a walk makes at most a handful of wide searches rather than up to six per
    step. At most ``DIRECT_SCORING`` usable positions (tight filters, a small library without an
    index) are all returned and scored directly."""

    def __init__(self, neighbours: Neighbours | None, pool: int):
        self.neighbours = neighbours
        self.k = pool

    def __call__(self, queries, usable: np.ndarray) -> np.ndarray:
        n = len(usable)
        if self.neighbours is None or np.count_nonzero(usable) <= min(DIRECT_SCORING, self.k):
            return np.flatnonzero(usable)
        while self.k < n:
            cand = np.unique(np.concatenate([self.neighbours(q, self.k) for q in queries]))
            cand = cand[cand >= 0]
            cand = cand[usable[cand]]
            if len(cand):
                return cand
            if np.count_nonzero(usable) <= DIRECT_SCORING:
                return np.flatnonzero(usable)
            self.k *= 4
        return np.flatnonzero(usable)


def radio_walk(
    vectors: np.ndarray,
    seed: np.ndarray,
    length: int,
    allowed: np.ndarray | None = None,
    exclude: list[int] | None = None,
    neighbours: Neighbours | None = None,
    pull: float = 0.5,
    pool: int = 200,
    step_allowed: Callable[[int | None], np.ndarray] | None = None,
    same: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the playlist (never repeating, never ``exclude``) and each step's score.
    ``step_allowed(previous position or None for the seed)``: a mask of the positions that may
    follow it (``--harmonic``); the walk ends early when none may."""
    n = len(vectors)
    seed = np.asarray(seed, dtype=np.float32)
    usable = np.ones(n, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool).copy()
    for p in exclude or []:
        if 0 <= p < n:
            usable[p] = False
    prev = seed
    out, scores = [], []
    candidates = CandidatePool(neighbours, pool)
    while len(out) < length and usable.any():
        step = usable if step_allowed is None else usable & step_allowed(out[-1] if out else None)
        if not step.any():
            break
        cand = candidates((prev, seed), step)
        if not len(cand):
            break
        v = np.asarray(vectors[cand], dtype=np.float32)
        score = (1.0 - pull) * (v @ prev) + pull * (v @ seed)
        best = int(np.lexsort((cand, -score))[0])
        out.append(int(cand[best]))
        scores.append(float(score[best]))
        use_up(usable, int(cand[best]), same)
        prev = v[best]
    return np.array(out, dtype=np.int64), np.array(scores)

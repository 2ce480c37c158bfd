"""Maximal Marginal Relevance (Carbonell & Goldstein 1998): relevant results that are not redundant.

At each step pick the candidate maximising ``λ·sim(q, c) − (1 − λ)·max_{s ∈ chosen} sim(c, s)``.
λ = 1 is plain ranking by relevance (ties broken by candidate order, exactly like a stable sort);
smaller λ trades relevance for diversity.
"""

from __future__ import annotations

import numpy as np


def mmr(relevance: np.ndarray, candidates: np.ndarray, n: int, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``candidates`` (rows: unit vectors) in MMR order and their MMR scores.

    ``relevance[i]`` is the similarity of candidate i to the query.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"MMR lambda must be in [0, 1], got {lam}")
    relevance = np.asarray(relevance, dtype=np.float64)
    cand = np.asarray(candidates, dtype=np.float32)
    n = min(n, len(relevance))
    chosen: list[int] = []
    scores: list[float] = []
    redundancy = np.full(len(relevance), -np.inf)  # max similarity to anything chosen so far
    available = np.ones(len(relevance), dtype=bool)
    for _ in range(n):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        score = lam * relevance - (1.0 - lam) * penalty if lam < 1.0 else relevance.copy()
        score[~available] = -np.inf
        best = int(np.argmax(score))  # first maximum: candidate order breaks ties
        chosen.append(best)
        scores.append(float(score[best]))
        available[best] = False
        redundancy = np.maximum(redundancy, cand @ cand[best])
    return np.array(chosen, dtype=np.int64), np.array(scores)

"""Harmonic mixing: ordering a playlist for smooth transitions and describing each transition.

A transition costs its key move (Camelot: same 0, a neighbour or the relative key 0.5, anything
else — a clash — 3), its tempo change (|log ratio| after half/double time, in units of the ±6 %
mixing tolerance) and its energy change (difference of the tracks' rms_mean in dB, per 6 dB).
``order_for_mixing`` finds a low-cost order: a greedy walk from each possible first track, the
cheapest one improved by 2-opt (reversing stretches while that lowers the total). Deterministic.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from music_pipeline.harmony.camelot import TEMPO_TOLERANCE, Key, camelot, camelot_step, key_name, tempo_ratio

KEY_STEP_COST = {"same": 0.0, "+1": 0.5, "-1": 0.5, "relative": 0.5, "clash": 3.0}
ENERGY_DB_UNIT = 6.0
UNKNOWN_COST = 1.5  # a step whose key or tempo is unknown


@dataclass(frozen=True)
class MixTrack:
    name: str
    key: Key | None
    tempo_bpm: float
    rms: float  # rms_mean, linear

    @property
    def key_name(self) -> str | None:
        return key_name(self.key) if self.key else None

    @property
    def camelot(self) -> str | None:
        return camelot(self.key) if self.key else None


def _db(rms: float) -> float:
    return 20.0 * np.log10(max(float(rms), 1e-6))


def transition(a: MixTrack, b: MixTrack) -> dict:
    """What the step from ``a`` to ``b`` does: key move, tempo change (%), energy change (dB)."""
    step = camelot_step(a.key, b.key) if a.key and b.key else None
    good_tempo = a.tempo_bpm > 0 and b.tempo_bpm > 0
    ratio = tempo_ratio(a.tempo_bpm, b.tempo_bpm) if good_tempo else None
    return {
        "key_from": camelot(a.key) if a.key else None,
        "key_to": camelot(b.key) if b.key else None,
        "key_relation": step,
        "tempo_change_pct": round(100 * (ratio - 1), 1) if ratio is not None else None,
        "half_double": bool(ratio is not None and abs(b.tempo_bpm / a.tempo_bpm - 1) > abs(ratio - 1) + 1e-9),
        "energy_change_db": round(float(_db(b.rms) - _db(a.rms)), 1),
        "mixes_well": bool(step not in (None, "clash") and ratio is not None and abs(ratio - 1) <= TEMPO_TOLERANCE),
    }


def transition_cost(a: MixTrack, b: MixTrack) -> float:
    key = KEY_STEP_COST[camelot_step(a.key, b.key)] if a.key and b.key else UNKNOWN_COST
    if a.tempo_bpm > 0 and b.tempo_bpm > 0:
        tempo = abs(np.log(tempo_ratio(a.tempo_bpm, b.tempo_bpm))) / np.log1p(TEMPO_TOLERANCE)
    else:
        tempo = UNKNOWN_COST
    energy = abs(_db(b.rms) - _db(a.rms)) / ENERGY_DB_UNIT
    return float(key + tempo + energy)


def path_cost(cost: np.ndarray, order: list[int]) -> float:
    return float(sum(cost[a, b] for a, b in itertools.pairwise(order)))


def order_for_mixing(tracks: list[MixTrack]) -> list[int]:
    """Positions of ``tracks`` in a smooth playing order (an open path, any first track)."""
    n = len(tracks)
    if n <= 2:
        return list(range(n))
    cost = np.array(
        [[transition_cost(a, b) if i != j else 0.0 for j, b in enumerate(tracks)] for i, a in enumerate(tracks)]
    )
    best, best_cost = list(range(n)), np.inf
    for start in range(n):
        order, left = [start], set(range(n)) - {start}
        while left:
            nxt = min(left, key=lambda j: (cost[order[-1], j], j))
            order.append(nxt)
            left.remove(nxt)
        c = path_cost(cost, order)
        if c < best_cost - 1e-12:
            best, best_cost = order, c
    improved = True
    while improved:  # 2-opt on the open path; costs are symmetric, so a reversal changes two edges
        improved = False
        for i in range(n - 1):
            for j in range(i + 2, n + 1):
                before = (cost[best[i - 1], best[i]] if i else 0.0) + (cost[best[j - 1], best[j]] if j < n else 0.0)
                after = (cost[best[i - 1], best[j - 1]] if i else 0.0) + (cost[best[i], best[j]] if j < n else 0.0)
                if after < before - 1e-9:
                    best = best[:i] + best[i:j][::-1] + best[j:]
                    improved = True
    return best

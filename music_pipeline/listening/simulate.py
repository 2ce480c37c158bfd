"""Simulated listeners, for measuring the recommender where no real listening data is at hand.

A simulation can show whether the recommender recovers tastes *of the kind simulated* — here,
preferences over sources and styles, heard through noisy plays and skips — and how the blend
behaves as evidence grows. It cannot show how real people listen (sessions, moods, repeat
listening, taste drift, position bias of a page), so its figures are no estimate of accuracy
for real listeners (docs/listening.md).

Everything is seeded; inputs are arrays (track keys, the source and style of each track), so the
same code runs on synthetic clusters (tests) and on a real library (benchmarks). Source and style
names only shape the simulated tastes; the recommender never sees them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

T0 = 1_700_000_000.0  # simulated events start here (Unix seconds)


def _event_rows(user, key, ts, kind, seconds, finished):
    return {"user": user, "track": key, "ts": ts, "event": kind, "seconds_played": seconds, "finished": finished}


def frame(rows: list[dict]) -> pd.DataFrame:
    cols = ["user", "track", "ts", "event", "seconds_played", "finished"]
    return pd.DataFrame(rows, columns=cols)


def population(
    keys: np.ndarray,
    groups: np.ndarray,
    styles: np.ndarray,
    durations: np.ndarray,
    n_users: int = 60,
    seed: int = 0,
    style_weight: float = 0.5,
    noise: float = 0.5,
    mean_encounters: float = 40.0,
) -> tuple[pd.DataFrame, dict]:
    """Events of ``n_users`` listeners. Each likes 1–3 sources and 1–2 styles (appeal = +2 for a
    liked source, +``style_weight``·2 for a liked style, −1 otherwise, plus Gaussian noise of sd
    ``noise`` per listener and track). A listener encounters tracks (how many: lognormal around
    ``mean_encounters``; half the encounters among their liked sources, the rest at random);
    an encounter is a play through with probability sigmoid(2·appeal) (seconds near the end,
    finished most times; a like with probability 0.3) and otherwise a skip after a few seconds.
    Returns (events, truth) where truth holds each listener's appeal per track."""
    rng = np.random.default_rng(seed)
    src_names, src = np.unique(groups, return_inverse=True)
    sty_names, sty = np.unique(styles, return_inverse=True)
    rows, appeal_of = [], {}
    for u in range(n_users):
        user = f"listener{u:03d}"
        liked_src = rng.choice(len(src_names), size=rng.integers(1, 4), replace=False)
        liked_sty = rng.choice(len(sty_names), size=rng.integers(1, 3), replace=False)
        appeal = np.where(np.isin(src, liked_src), 2.0, -1.0) + style_weight * 2.0 * np.isin(sty, liked_sty)
        appeal = appeal + rng.normal(0.0, noise, len(keys))
        appeal_of[user] = appeal
        n_enc = int(np.clip(rng.lognormal(np.log(mean_encounters), 0.6), 3, len(keys)))
        fav = np.flatnonzero(np.isin(src, liked_src))
        n_fav = min(len(fav), n_enc // 2)
        chosen = list(rng.choice(fav, n_fav, replace=False)) if n_fav else []
        rest = np.setdiff1d(np.arange(len(keys)), chosen)
        chosen += list(rng.choice(rest, min(len(rest), n_enc - n_fav), replace=False))
        ts = T0 + u * 1e5
        for i in rng.permutation(chosen):
            ts += 240.0 + rng.random() * 60
            d = float(durations[i])
            if rng.random() < 1.0 / (1.0 + np.exp(-2.0 * appeal[i])):
                frac = float(np.clip(rng.beta(8, 1.5), 0, 1))
                rows.append(_event_rows(user, keys[i], ts, "play", round(frac * d, 1), frac > 0.97))
                if rng.random() < 0.3:
                    rows.append(_event_rows(user, keys[i], ts + 1, "like", None, None))
            else:
                secs = round(min(d, 2 + rng.exponential(10)), 1)
                rows.append(_event_rows(user, keys[i], ts, "skip", secs, False))
    return frame(rows), {"appeal": appeal_of}


def check_scenario(
    keys: np.ndarray, groups: np.ndarray, durations: np.ndarray, seed: int = 0, share: float = 0.8
) -> tuple[pd.DataFrame, dict]:
    """Four listeners over a library of ≥ 6 sources: ``her`` played ``share`` of the tracks of two
    sources and skipped the tracks of a third; ``twin`` played all of those two sources; two
    others each played most of two other sources. Returns (events, roles) with roles naming
    her sources, the skipped source and her played tracks."""
    rng = np.random.default_rng(seed)
    names = np.unique(groups)
    if len(names) < 6:
        raise ValueError("the check scenario needs at least 6 sources")
    pick = rng.permutation(names)
    hers, skipped, others = list(pick[:2]), pick[2], [list(pick[3:5]), list(pick[5:7] if len(pick) > 6 else pick[5:6])]
    rows = []
    ts = T0

    def play(user, i, frac=1.0):
        nonlocal ts
        ts += 200
        rows.append(_event_rows(user, keys[i], ts, "play", round(frac * float(durations[i]), 1), frac >= 0.99))

    mine = np.flatnonzero(np.isin(groups, hers))
    her_played = rng.choice(mine, round(share * len(mine)), replace=False)
    for i in her_played:
        play("her", i, float(rng.uniform(0.7, 1.0)))
    for i in np.flatnonzero(groups == skipped):
        ts += 200
        rows.append(_event_rows("her", keys[i], ts, "skip", 5.0, False))
    for i in mine:
        play("twin", i, float(rng.uniform(0.6, 1.0)))
    for u, srcs in zip(("other1", "other2"), others, strict=True):
        tr = np.flatnonzero(np.isin(groups, srcs))
        for i in rng.choice(tr, round(share * len(tr)), replace=False):
            play(u, i, float(rng.uniform(0.6, 1.0)))
    return frame(rows), {"her_sources": hers, "skipped_source": skipped, "her_played": np.sort(her_played)}


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive outranks a random negative (ties ½)."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(scores)
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))

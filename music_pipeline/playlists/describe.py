"""What distinguishes a group of tracks, in words: its name and why; and the order to play it in.

**Name**: a tempo word when the group's median tempo lies in the library's slowest or fastest
third ("slow", "fast"), the two pretrained-tagger tags that rise most above the library in the
group (each tag's score standardised on the library, synonyms merged — "electronica" is
"electronic" —, tags that say nothing about the sound — decades, "sexy", "female vocalists" —
left out, and a tag sharing a word with a stronger one skipped), and the difficulty level when
most of the group shares it and it is not the middle one: "slow ambient strings", "fast
electronic techno, hard". Names are made distinct by adding the next distinguishing tag, then a
number.

**Why**: the same facts with their figures (tag z-scores, the tempo range against the library's,
the share of each level).

**Order** (``sequence``): neighbour to neighbour — a greedy nearest-neighbour walk from the track
farthest from the group's centre, then 2-opt moves that shorten the walk (the sum of cosine
distances between consecutive tracks) while any does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

# tags that describe no sound a listener hears, or only who sings
IGNORED_TAGS = {
    *("00s", "60s", "70s", "80s", "90s", "oldies", "sexy", "beautiful", "catchy", "party", "indian"),
    *("female vocalists", "female vocalist", "male vocalists", "female", "male", "woman", "man"),
    *("male vocal", "female vocal", "male voice", "female voice", "no vocals", "no vocal", "no voice"),
    *("slow", "fast"),  # tempo comes from the measured tempo
}
SYNONYMS = {
    "electronica": "electronic",
    "electro": "electronic",
    "vocals": "vocal",
    "voice": "vocal",
    "singing": "vocal",
    "beats": "beat",
    "classic": "classical",
    "choral": "choir",
    "mellow": "mellow",
    "chill": "chillout",
    "heavy metal": "metal",
    "hip-hop": "hip-hop",
}
NAME_TAGS = 2  # tags in a name
LEVEL_SHARE = 0.5  # a level names the group when more than this share of it has that level
NAMED_LEVELS = ("Easy", "Hard")  # the middle level says nothing
TWO_OPT_MAX = 400  # 2-opt is O(n²) a pass: larger groups keep the greedy walk


@dataclass
class Description:
    name: str
    why: str
    facts: dict


def tag_scores(tags: np.ndarray, tag_texts: list[str]) -> tuple[np.ndarray, list[str]]:
    """Per track, one z-score per distinct tag text (standardised on the library, synonyms and
    the two taggers' same tags merged by their mean); ignored tags dropped."""
    tags = np.asarray(tags, dtype=np.float64)
    std = tags.std(axis=0)
    z = (tags - tags.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)
    merged: dict[str, list[int]] = {}
    for i, text in enumerate(tag_texts):
        t = SYNONYMS.get(text.lower(), text.lower())
        if t not in IGNORED_TAGS:
            merged.setdefault(t, []).append(i)
    names = list(merged)
    return np.column_stack([z[:, merged[t]].mean(axis=1) for t in names]), names


def _tempo_word(median: float, low: float, high: float) -> str:
    return "slow" if median < low else "fast" if median > high else ""


def describe_groups(
    labels: np.ndarray,
    tag_z: np.ndarray,
    tag_names: list[str],
    tempo: np.ndarray,
    levels: list[str | None],
) -> list[Description]:
    """A distinct name and a why for each group 0..k-1 (``labels``)."""
    tempo = np.asarray(tempo, dtype=np.float64)
    ok = np.isfinite(tempo)
    low, high = np.quantile(tempo[ok], [1 / 3, 2 / 3]) if ok.any() else (np.nan, np.nan)
    lib_tempo = np.quantile(tempo[ok], [0.25, 0.75]) if ok.any() else (np.nan, np.nan)
    k = int(labels.max()) + 1 if len(labels) else 0
    ranked, parts, facts = [], [], []
    for g in range(k):
        m = labels == g
        rise = tag_z[m].mean(axis=0)
        order = [int(i) for i in np.argsort(-rise, kind="stable") if rise[i] > 0]
        ranked.append(_no_shared_words(order, tag_names))
        t = tempo[m & ok]
        med = float(np.median(t)) if len(t) else float("nan")
        word = _tempo_word(med, low, high) if len(t) else ""
        counts = Counter(x for x, keep in zip(levels, m, strict=True) if keep and x)
        level, n_level = counts.most_common(1)[0] if counts else (None, 0)
        level_word = (
            level.lower() if level in NAMED_LEVELS and n_level > LEVEL_SHARE * int(m.sum()) and n_level > 0 else ""
        )
        parts.append((word, level_word))
        facts.append(
            {
                "tracks": int(m.sum()),
                "tags": {tag_names[i]: round(float(rise[i]), 2) for i in order[:5]},
                "tempo_bpm": [round(float(q)) for q in np.quantile(t, [0.25, 0.75])] if len(t) else None,
                "tempo_median_bpm": round(med) if len(t) else None,
                "levels": dict(counts.most_common()),
            }
        )
    used = [NAME_TAGS] * k
    names = [_name(parts[g], [tag_names[i] for i in ranked[g][: used[g]]]) for g in range(k)]
    for _ in range(3):  # lengthen clashing names with their next tag
        clashes = [g for g in range(k) if names.count(names[g]) > 1]
        if not clashes:
            break
        for g in clashes:
            used[g] += 1
            names[g] = _name(parts[g], [tag_names[i] for i in ranked[g][: used[g]]])
    seen: Counter = Counter()
    for g in range(k):  # still the same: a number
        if names.count(names[g]) > 1:
            seen[names[g]] += 1
            names[g] = f"{names[g]} {seen[names[g]]}"
    out = []
    for g in range(k):
        f = facts[g]
        why = []
        if f["tags"]:
            why.append("tags above the library: " + ", ".join(f"{t} (z {v:+.2f})" for t, v in f["tags"].items()))
        if f["tempo_bpm"]:
            lo, hi = f["tempo_bpm"]
            why.append(
                f"tempo {lo}–{hi} BPM (middle half; the library's {lib_tempo[0]:.0f}–{lib_tempo[1]:.0f})"
                + (f": {parts[g][0]}" if parts[g][0] else "")
            )
        if f["levels"]:
            why.append("difficulty " + ", ".join(f"{lvl} {n}" for lvl, n in f["levels"].items()))
        out.append(Description(names[g], "; ".join(why) or "grouped by sound", f))
    return out


def _no_shared_words(order: list[int], tag_names: list[str]) -> list[int]:
    """The tags in order, leaving out one that shares a word with a tag before it ("alternative
    rock" after "indie rock"): a name says two different things."""
    kept, words = [], set()
    for i in order:
        w = set(tag_names[i].split())
        if not w & words:
            kept.append(i)
            words |= w
    return kept


def _name(parts: tuple[str, str], tags: list[str]) -> str:
    word, level = parts
    core = " ".join(x for x in [word, *tags] if x) or "mixed"
    return f"{core}, {level}" if level else core


def sequence(vectors: np.ndarray) -> np.ndarray:
    """Order of the rows (unit vectors) as a walk from neighbour to neighbour (module docstring)."""
    v = np.asarray(vectors, dtype=np.float64)
    n = len(v)
    if n <= 2:
        return np.arange(n)
    centre = v.mean(axis=0)
    start = int(np.argmin(v @ centre))
    dist = 1.0 - v @ v.T
    order = [start]
    free = np.ones(n, dtype=bool)
    free[start] = False
    for _ in range(n - 1):
        d = np.where(free, dist[order[-1]], np.inf)
        nxt = int(np.argmin(d))
        order.append(nxt)
        free[nxt] = False
    order = np.array(order)
    if n <= TWO_OPT_MAX:
        order = _two_opt(order, dist)
    return order


def _two_opt(order: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Reverse segments of an open path while that shortens it."""
    order = order.copy()
    n = len(order)
    improved = True
    while improved:
        improved = False
        for i in range(n - 2):
            a, b = order[i], order[i + 1]
            c = order[i + 2 : n]
            d = np.append(order[i + 3 : n], -1)
            # gain of reversing order[i+1 .. j] for every j ≥ i+2
            before = dist[a, b] + np.where(d >= 0, dist[c, np.maximum(d, 0)], 0.0)
            after = dist[a, c] + np.where(d >= 0, dist[b, np.maximum(d, 0)], 0.0)
            gain = before - after
            j = int(np.argmax(gain))
            if gain[j] > 1e-12:
                order[i + 1 : i + 3 + j] = order[i + 1 : i + 3 + j][::-1]
                improved = True
    return order

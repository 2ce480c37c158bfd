"""Compare two tracks: overall cosine and agreement per feature group.

Per group (timbre, harmony, rhythm, energy, spectrum) the cosine is taken between the two tracks'
*standardised* features of that group (z-scores on the library, so "agrees" means "deviates
from the library average in the same direction"). A raw cosine is hard to read, so each value is
also placed among random pairs of the library (percentile, stored with the index): at or above
the 75th percentile the group agrees, at or below the 25th it differs. The overall verdict uses
the same rule on the overall cosine, and the one-line ``summary`` always follows it: a pair that
is more different than most names the groups furthest apart even when none of them crosses the
25th percentile alone (so a negative cosine is never reported with "differ: none").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from music_pipeline.features.embedding import FEATURE_GROUPS, FEATURE_NAMES
from music_pipeline.search.space import GROUPS

AGREE_PERCENTILE = 75.0
DIFFER_PERCENTILE = 25.0


@dataclass
class GroupAgreement:
    group: str
    features: int
    cosine: float
    percentile: float | None  # among random library pairs
    verdict: str  # agree | differ | neutral


@dataclass
class Comparison:
    cosine: float  # in the index space (what `similar` ranks by)
    percentile: float | None
    groups: list[GroupAgreement]
    differences: list[dict] = field(default_factory=list)  # features with the largest |z_a − z_b|

    @property
    def agree(self) -> list[str]:
        return [g.group for g in self.groups if g.verdict == "agree"]

    @property
    def differ(self) -> list[str]:
        return [g.group for g in self.groups if g.verdict == "differ"]

    @property
    def verdict(self) -> str:
        """Overall, by the same rule as the groups: agree | differ | neutral."""
        return _verdict(self.cosine, self.percentile)

    def _ranked(self, reverse: bool) -> list[GroupAgreement]:
        key = (lambda g: g.percentile) if all(g.percentile is not None for g in self.groups) else (lambda g: g.cosine)
        return sorted(self.groups, key=key, reverse=reverse)

    @property
    def closest(self) -> list[str]:
        """Groups that agree, else the (up to two) groups that pull the pair together most."""
        return self.agree or [g.group for g in self._ranked(True)[:2] if g.cosine > 0]

    @property
    def furthest(self) -> list[str]:
        """Groups that differ, else the (up to two) groups that pull the pair apart most."""
        return self.differ or [
            g.group for g in self._ranked(False)[:2] if g.cosine < 0 or (g.percentile is not None and g.percentile < 50)
        ]

    @property
    def summary(self) -> str:
        """One sentence whose verdict follows the numbers printed beside it."""

        def listing(groups: list[GroupAgreement]) -> str:
            return ", ".join(
                f"{g.group} (p{g.percentile:.0f})" if g.percentile is not None else f"{g.group} ({g.cosine:+.2f})"
                for g in groups
            )

        by_name = {g.group: g for g in self.groups}
        agree = [by_name[n] for n in self.agree]
        differ = [by_name[n] for n in self.differ]
        if self.verdict == "differ":
            main = differ or [by_name[n] for n in self.furthest]
            word = "differ in" if differ else "no group differs strongly on its own; furthest apart in"
            text = f"More different than most pairs of this library: {word} {listing(main)}"
            if agree:
                text += f"; yet they agree in {listing(agree)}"
            return text
        if self.verdict == "agree":
            main = agree or [by_name[n] for n in self.closest]
            word = "agree in" if agree else "no group agrees strongly on its own; closest in"
            text = f"More alike than most pairs of this library: {word} {listing(main)}"
            if differ:
                text += f"; yet they differ in {listing(differ)}"
            return text
        parts = []
        if agree:
            parts.append(f"they agree in {listing(agree)}")
        if differ:
            parts.append(f"differ in {listing(differ)}")
        detail = (
            " and ".join(parts)
            if parts
            else "no feature group stands out (all between the 25th and 75th percentile of random pairs)"
        )
        return f"A typical pair of this library: {detail}"

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "verdict": self.verdict,
            "agree": self.agree,
            "differ": self.differ,
            "summary": self.summary,
        }


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def _percentile(value: float, quantiles: np.ndarray | None) -> float | None:
    if quantiles is None:
        return None
    q = np.maximum.accumulate(np.asarray(quantiles, dtype=np.float64))  # interp needs it non-decreasing
    return float(np.interp(value, q, np.arange(len(q))))


def _verdict(cos: float, pct: float | None) -> str:
    if pct is None:  # no library reference: plain cosine thresholds
        return "agree" if cos >= 0.5 else "differ" if cos <= 0.0 else "neutral"
    pct = round(pct)  # the verdict follows the percentile as printed (p75 agrees, p25 differs)
    return "agree" if pct >= AGREE_PERCENTILE else "differ" if pct <= DIFFER_PERCENTILE else "neutral"


def compare_standardised(
    z_a: np.ndarray, z_b: np.ndarray, cosine: float, quantiles: np.ndarray | None = None, top: int = 5
) -> Comparison:
    """``z_a``/``z_b``: standardised 641-D features; ``cosine``: the pair's index-space cosine;
    ``quantiles``: (1 + groups, 101) percentiles of random library pairs (overall first)."""
    groups = []
    for i, g in enumerate(GROUPS):
        cols = np.array([FEATURE_GROUPS[f] == g for f in FEATURE_NAMES])
        c = _cos(z_a[cols], z_b[cols])
        pct = _percentile(c, None if quantiles is None else quantiles[1 + i])
        groups.append(GroupAgreement(g, int(cols.sum()), c, pct, _verdict(c, pct)))
    gap = np.abs(z_a - z_b)
    diffs = [
        {
            "feature": FEATURE_NAMES[j],
            "group": FEATURE_GROUPS[FEATURE_NAMES[j]],
            "z_a": float(z_a[j]),
            "z_b": float(z_b[j]),
        }
        for j in np.argsort(-gap, kind="stable")[:top]
    ]
    return Comparison(float(cosine), _percentile(cosine, None if quantiles is None else quantiles[0]), groups, diffs)

"""The key of a track from its chroma: correlate a 12-bin pitch-class summary with a key profile
rotated to each of the 24 keys, take the best.

What the library keeps of each track's chroma is its 12 means (``chroma_mean_<pc>`` of the
641-D embedding, chroma-CQT frames each scaled to max 1), so the deployed method works from those
and needs no new extraction. Which profile, and whether frame-wise methods would do better, was
measured on labelled material (``benchmarks/bench_key.py``, docs/harmony.md).

Confidence: the softmax of the 24 correlations at ``CONFIDENCE_TEMPERATURE``, i.e. how much the
best key stands out from the other 23 (≈ 1: clear; near 1/24: nothing stands out, e.g. drums).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from music_pipeline.harmony.camelot import Key, camelot, key_name

# Key profiles (weight of each scale degree from the tonic, C..B for a C tonic): major, minor
PROFILES: dict[str, tuple[list[float], list[float]]] = {
    # Krumhansl & Kessler (1982), probe-tone ratings: the textbook profile
    "krumhansl": (
        [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88],
        [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17],
    ),
    # Temperley (2001, Kostka-Payne corpus)
    "temperley": (
        [5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0],
        [5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0],
    ),
    # Albrecht & Shanahan (2013), pitch-class durations in a corpus
    "albrecht": (
        [0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081],
        [0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052],
    ),
    # Sha'ath (2011, KeyFinder), Krumhansl's adjusted for audio
    "shaath": (
        [6.6, 2.0, 3.5, 2.3, 4.6, 4.0, 2.5, 5.2, 2.4, 3.7, 2.3, 3.4],
        [6.5, 2.7, 3.5, 5.4, 2.6, 3.5, 2.5, 5.2, 4.0, 2.7, 4.3, 3.2],
    ),
    # Bellman & Budge (2005), chord-weighted durations
    "bellman": (
        [16.80, 0.86, 12.95, 1.41, 13.49, 11.93, 1.25, 20.28, 1.80, 8.04, 0.62, 10.57],
        [18.16, 0.69, 12.99, 13.34, 1.07, 11.15, 1.38, 21.07, 7.49, 1.53, 0.92, 10.21],
    ),
}
# The mean of three profiles' correlations: best of the methods measured by benchmarks/bench_key.py
# on real compositions (docs/harmony.md); a single profile is a name of PROFILES
DEFAULT_PROFILE = "krumhansl+temperley+albrecht"
CONFIDENCE_TEMPERATURE = 0.05
KEYS: list[Key] = [(t, m) for m in ("major", "minor") for t in range(12)]  # row order of key_scores


@dataclass(frozen=True)
class KeyEstimate:
    tonic: int  # pitch class, C = 0
    mode: str  # "major" | "minor"
    confidence: float  # 0–1
    correlation: float  # the best key's correlation with its profile

    @property
    def key(self) -> Key:
        return self.tonic, self.mode

    @property
    def name(self) -> str:
        return key_name(self.key)

    @property
    def camelot(self) -> str:
        return camelot(self.key)

    def as_dict(self) -> dict:
        return {"key": self.name, "camelot": self.camelot, "confidence": round(self.confidence, 3)}


def _templates(profile: str) -> np.ndarray:
    """(24, 12) z-scored profiles, one row per key in ``KEYS`` order ("a+b": their mean correlation)."""
    if "+" in profile:
        return np.mean([_templates(p) for p in profile.split("+")], axis=0)
    if profile not in PROFILES:
        raise ValueError(f"unknown key profile {profile!r}; one of {', '.join(PROFILES)}")
    major, minor = (np.asarray(p, dtype=np.float64) for p in PROFILES[profile])
    rows = [np.roll(major if m == "major" else minor, t) for t, m in KEYS]
    t = np.array(rows)
    t -= t.mean(axis=1, keepdims=True)
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def key_scores(chroma: np.ndarray, profile: str = DEFAULT_PROFILE) -> np.ndarray:
    """Pearson correlation of each 12-bin row of ``chroma`` ((12,) or (n, 12)) with the 24 keys:
    (24,) or (n, 24); a flat row (silence, noise) correlates 0 with every key."""
    c = np.asarray(chroma, dtype=np.float64)
    flat = c.ndim == 1
    c = np.atleast_2d(c)
    if c.shape[-1] != 12:
        raise ValueError(f"a chroma needs 12 pitch classes, got shape {np.shape(chroma)}")
    c = c - c.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(c, axis=1, keepdims=True)
    c = np.divide(c, norm, out=np.zeros_like(c), where=norm > 1e-12)
    r = c @ _templates(profile).T
    return r[0] if flat else r


def estimate_from_scores(scores: Sequence[float]) -> KeyEstimate:
    r = np.asarray(scores, dtype=np.float64)
    best = int(np.argmax(r))  # ties: the first in KEYS order (deterministic)
    z = (r - r.max()) / CONFIDENCE_TEMPERATURE
    p = np.exp(z) / np.exp(z).sum()
    tonic, mode = KEYS[best]
    return KeyEstimate(tonic, mode, float(p[best]), float(r[best]))


def estimate_key(chroma_mean: Sequence[float], profile: str = DEFAULT_PROFILE) -> KeyEstimate:
    """The key of a track from its 12 chroma means (C..B)."""
    c = np.asarray(chroma_mean, dtype=np.float64)
    if c.shape != (12,) or not np.isfinite(c).all():
        raise ValueError(f"a chroma mean needs 12 finite values, got {c!r}")
    return estimate_from_scores(key_scores(c, profile))


def estimate_keys(chroma_means: np.ndarray, profile: str = DEFAULT_PROFILE) -> list[KeyEstimate | None]:
    """One estimate per row of an (n, 12) array; None for a row with a non-finite value."""
    c = np.asarray(chroma_means, dtype=np.float64).reshape(-1, 12)
    ok = np.isfinite(c).all(axis=1)
    scores = key_scores(np.where(ok[:, None], c, 0.0), profile)
    return [estimate_from_scores(s) if good else None for s, good in zip(scores, ok, strict=True)]

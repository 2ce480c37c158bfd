"""The Perceptual Difficulty Index (PDI): descriptors → two subscores → one index → three levels.

Fitted once on the library (``score_library``) and saved as plain JSON (``DifficultyModel.save``),
so a file scored later uses exactly the library's scale and thresholds and nobody's score moves.

============================  ===================================================================
quantity                      formula
============================  ===================================================================
normalised descriptor n_d     n_d = clip((x_d − lo_d) / (hi_d − lo_d), 0, 1), lo_d/hi_d = min/max
                              of descriptor d over the library's tracks (optionally the
                              ``lower_q``/``upper_q`` quantiles instead; default 0 and 1 = min–max).
                              A descriptor constant over the library gives n_d = 0.5 for everyone.
                              Clipping only ever affects files scored outside the library: their
                              out-of-range descriptors saturate at 0 or 1 and are listed as
                              ``out_of_range``, so a new file never lands outside [0, 1].
sign convention               none inverted: for all 13 descriptors a larger value is read as
                              harder (wider pitch range, faster timbre/harmony change, more
                              entropy; faster, denser, noisier, louder, more dynamic, brighter,
                              wider spectrum).
structural subscore S         mean of n_d over the structural-complexity family (6 descriptors)
intensity subscore I          mean of n_d over the performance-intensity family (7 descriptors)
PDI                           (w_S·S + w_I·I) / (w_S + w_I); default w_S = w_I = 0.5; PDI ∈ [0, 1]
thresholds t_1 < t_2          library PDI quantiles at 1/3 and 2/3 (tertiles, numpy "linear"
                              interpolation) by default; other quantiles or fixed values allowed
level                         Easy if PDI < t_1, Medium if t_1 ≤ PDI < t_2, Hard if PDI ≥ t_2
pushing descriptors           p_d = n_d − median over the library of n_d; the ``top`` descriptors
                              by |p_d| (p_d > 0 pushes towards Hard, p_d < 0 towards Easy)
============================  ===================================================================

Families average their own members first, so w_S and w_I really are the families' shares of the
PDI whatever the number of descriptors in each. Everything is deterministic: no randomness, and
the JSON holds floats at full precision (``repr`` round-trips exactly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from music_pipeline.features.difficulty import DESCRIPTOR_FAMILY, DESCRIPTOR_NAMES, INTENSITY, STRUCTURAL
from music_pipeline.storage import DataLayout, artifact_path, read_json, write_json

LEVELS = ("Easy", "Medium", "Hard")
DEFAULT_WEIGHTS = {STRUCTURAL: 0.5, INTENSITY: 0.5}
DEFAULT_QUANTILES = (1 / 3, 2 / 3)
MODEL_FILE = "difficulty_model.json"
FORMAT_VERSION = 1
SCORE_ID_COLUMNS = ["key", "relpath", "label", "group", "content_hash"]


def descriptors_table_path(layout: DataLayout) -> Path:
    return layout.tables_dir / "difficulty_descriptors.parquet"


def scores_table_path(layout: DataLayout) -> Path:
    return layout.tables_dir / "difficulty.parquet"


def model_dir(layout: DataLayout) -> Path:
    """Normaliser + thresholds JSON and the segment CNN (``.keras`` + report) live here."""
    return layout.models_dir / "difficulty"


def plots_dir(layout: DataLayout) -> Path:
    return layout.plots_dir / "difficulty"


def norm_column(name: str) -> str:
    return f"norm_{name}"


NORM_COLUMNS = [norm_column(n) for n in DESCRIPTOR_NAMES]


class LibraryNotScored(FileNotFoundError):
    """No saved difficulty model: the library has not been built (or not scored) yet."""


@dataclass(frozen=True)
class DifficultyScaler:
    """Min–max (or quantile-bounded) scaling of each descriptor to [0, 1], fitted on the library."""

    names: tuple[str, ...]
    lo: np.ndarray
    hi: np.ndarray
    lower_q: float = 0.0
    upper_q: float = 1.0

    @classmethod
    def fit(cls, X: np.ndarray, names: Sequence[str], lower_q: float = 0.0, upper_q: float = 1.0) -> "DifficultyScaler":
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] != len(names):
            raise ValueError(f"need a (tracks, {len(names)}) matrix with at least one track, got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("descriptors contain non-finite values")
        if not 0.0 <= lower_q < upper_q <= 1.0:
            raise ValueError(f"need 0 <= lower_q < upper_q <= 1, got {lower_q}, {upper_q}")
        return cls(tuple(names), np.quantile(X, lower_q, axis=0), np.quantile(X, upper_q, axis=0), float(lower_q), float(upper_q))

    def transform(self, X: np.ndarray, clip: bool = True) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        span = self.hi - self.lo
        constant = span <= 0
        out = (X - self.lo) / np.where(constant, 1.0, span)
        out[:, constant] = 0.5  # no spread in the library: the descriptor cannot rank anybody
        return np.clip(out, 0.0, 1.0) if clip else out

    def to_dict(self) -> dict:
        return {"names": list(self.names), "lo": self.lo.tolist(), "hi": self.hi.tolist(), "lower_q": self.lower_q, "upper_q": self.upper_q}

    @classmethod
    def from_dict(cls, d: Mapping) -> "DifficultyScaler":
        return cls(tuple(d["names"]), np.asarray(d["lo"], dtype=np.float64), np.asarray(d["hi"], dtype=np.float64), float(d["lower_q"]), float(d["upper_q"]))


@dataclass
class DifficultyScore:
    """The score of one file (outside or inside the library)."""

    pdi: float
    level: str
    structural: float
    intensity: float
    normalised: dict[str, float]
    pushing: list[dict]  # [{descriptor, family, value, normalised, vs_median}]
    out_of_range: list[str]

    def to_dict(self) -> dict:
        return {
            "pdi": self.pdi,
            "level": self.level,
            "structural": self.structural,
            "intensity": self.intensity,
            "pushing": self.pushing,
            "out_of_range": self.out_of_range,
            "normalised": self.normalised,
        }


@dataclass
class DifficultyModel:
    scaler: DifficultyScaler
    families: dict[str, str]
    weights: dict[str, float]
    thresholds: tuple[float, ...]
    medians: np.ndarray  # library median of each normalised descriptor
    threshold_rule: str
    n_tracks: int
    levels: tuple[str, ...] = LEVELS
    extra: dict = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return self.scaler.names

    def _family_mask(self, family: str) -> np.ndarray:
        return np.array([self.families[n] == family for n in self.names])

    def subscores(self, normalised: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        structural = normalised[:, self._family_mask(STRUCTURAL)].mean(axis=1)
        intensity = normalised[:, self._family_mask(INTENSITY)].mean(axis=1)
        ws, wi = self.weights[STRUCTURAL], self.weights[INTENSITY]
        return structural, intensity, (ws * structural + wi * intensity) / (ws + wi)

    def level_index(self, pdi: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.thresholds), np.asarray(pdi), side="right")

    def _matrix(self, df: pd.DataFrame) -> np.ndarray:
        missing = [n for n in self.names if n not in df.columns]
        if missing:
            raise ValueError(f"descriptor columns missing: {missing}")
        X = df[list(self.names)].to_numpy(dtype=np.float64)
        if not np.isfinite(X).all():
            raise ValueError("descriptors contain non-finite values")
        return X

    def score_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """Scores of every row of a descriptor table (ID columns kept when present)."""
        norm = self.scaler.transform(self._matrix(df))
        structural, intensity, pdi = self.subscores(norm)
        idx = self.level_index(pdi)
        ids = df[[c for c in SCORE_ID_COLUMNS if c in df.columns]].reset_index(drop=True)
        scores = pd.DataFrame(norm, columns=[norm_column(n) for n in self.names])
        scores["structural"], scores["intensity"], scores["pdi"] = structural, intensity, pdi
        scores["level_index"] = idx.astype(np.int64)
        scores["level"] = [self.levels[i] for i in idx]
        return pd.concat([ids, scores], axis=1)

    def score(self, descriptors: Mapping[str, float], top: int = 3) -> DifficultyScore:
        """Score one file's descriptors with the saved scale; the library is not touched."""
        raw = np.array([[float(descriptors[n]) for n in self.names]])
        if not np.isfinite(raw).all():
            raise ValueError("descriptors contain non-finite values")
        unclipped = self.scaler.transform(raw, clip=False)[0]
        norm = np.clip(unclipped, 0.0, 1.0)
        structural, intensity, pdi = (float(v[0]) for v in self.subscores(norm[None, :]))
        push = norm - self.medians
        order = sorted(range(len(self.names)), key=lambda i: (-abs(push[i]), self.names[i]))[:top]
        pushing = [
            {
                "descriptor": self.names[i],
                "family": self.families[self.names[i]],
                "value": float(raw[0, i]),
                "normalised": float(norm[i]),
                "vs_median": float(push[i]),
            }
            for i in order
        ]
        out = [n for n, u in zip(self.names, unclipped) if u < 0.0 or u > 1.0]
        return DifficultyScore(
            pdi=pdi,
            level=self.levels[int(self.level_index(np.array([pdi]))[0])],
            structural=structural,
            intensity=intensity,
            normalised=dict(zip(self.names, map(float, norm))),
            pushing=pushing,
            out_of_range=out,
        )

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "scaler": self.scaler.to_dict(),
            "families": dict(self.families),
            "weights": dict(self.weights),
            "thresholds": list(self.thresholds),
            "threshold_rule": self.threshold_rule,
            "levels": list(self.levels),
            "medians": self.medians.tolist(),
            "n_tracks": self.n_tracks,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "DifficultyModel":
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"difficulty model format {d.get('format_version')} is not {FORMAT_VERSION}; rebuild the library")
        return cls(
            scaler=DifficultyScaler.from_dict(d["scaler"]),
            families=dict(d["families"]),
            weights={k: float(v) for k, v in d["weights"].items()},
            thresholds=tuple(float(t) for t in d["thresholds"]),
            medians=np.asarray(d["medians"], dtype=np.float64),
            threshold_rule=str(d["threshold_rule"]),
            n_tracks=int(d["n_tracks"]),
            levels=tuple(d["levels"]),
            extra=dict(d.get("extra", {})),
        )

    def save(self, directory: str | Path) -> Path:
        return write_json(artifact_path(directory) / MODEL_FILE, self.to_dict())

    @classmethod
    def load(cls, directory: str | Path) -> "DifficultyModel":
        path = artifact_path(directory) / MODEL_FILE
        if not path.is_file():
            raise LibraryNotScored(f"no difficulty model at {path}: build the library first (music-pipeline build)")
        model = cls.from_dict(read_json(path))
        if list(model.names) != DESCRIPTOR_NAMES:
            raise ValueError(f"{path} was fitted on other descriptors than this version computes; rebuild the library")
        return model


def fit_model(
    descriptors: pd.DataFrame,
    weights: Mapping[str, float] | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    thresholds: Sequence[float] | None = None,
    lower_q: float = 0.0,
    upper_q: float = 1.0,
) -> DifficultyModel:
    """Fit the scale on the library, then the thresholds on the library's PDI.

    ``thresholds`` (two increasing values in [0, 1]) overrides ``quantiles``.
    """
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    if set(weights) != {STRUCTURAL, INTENSITY} or min(weights.values()) < 0 or sum(weights.values()) <= 0:
        raise ValueError(f"weights need non-negative {STRUCTURAL!r} and {INTENSITY!r} with a positive sum, got {weights}")
    X = descriptors[DESCRIPTOR_NAMES].to_numpy(dtype=np.float64)
    scaler = DifficultyScaler.fit(X, DESCRIPTOR_NAMES, lower_q, upper_q)
    norm = scaler.transform(X)
    model = DifficultyModel(scaler, dict(DESCRIPTOR_FAMILY), weights, (), np.median(norm, axis=0), "", len(X))
    pdi = model.subscores(norm)[2]
    if thresholds is not None:
        cuts = tuple(float(t) for t in thresholds)
        rule = "fixed " + ", ".join(f"{t:.4g}" for t in cuts)
    else:
        qs = [float(q) for q in quantiles]
        if not all(0.0 < q < 1.0 for q in qs):
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {qs}")
        cuts = tuple(float(t) for t in np.quantile(pdi, qs))
        rule = "library PDI quantiles " + ", ".join(f"{q:.4g}" for q in qs)
    if len(cuts) != len(LEVELS) - 1 or any(b < a for a, b in zip(cuts, cuts[1:])):
        raise ValueError(f"need {len(LEVELS) - 1} non-decreasing thresholds, got {cuts}")
    model.thresholds, model.threshold_rule = cuts, rule
    return model


def score_library(descriptors: pd.DataFrame, **fit_kwargs) -> tuple[pd.DataFrame, DifficultyModel]:
    """Fit on the library's descriptor table and score every track with that same model."""
    model = fit_model(descriptors, **fit_kwargs)
    return model.score_frame(descriptors), model


def extremes(scores: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The ``n`` easiest and ``n`` hardest tracks (ties broken by key for determinism)."""
    cols = [c for c in ("relpath", "label", "pdi", "structural", "intensity", "level") if c in scores.columns]
    ordered = scores.sort_values(["pdi", "key"], kind="mergesort")
    easiest = ordered.head(n)[cols].assign(end="easiest")
    hardest = ordered.tail(n).iloc[::-1][cols].assign(end="hardest")
    return pd.concat([hardest, easiest], ignore_index=True)[["end", *cols]]


def level_counts(scores: pd.DataFrame, levels: Sequence[str] = LEVELS) -> dict[str, int]:
    counts = scores["level"].value_counts()
    return {lv: int(counts.get(lv, 0)) for lv in levels}

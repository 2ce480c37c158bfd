"""The Perceptual Difficulty Index (PDI): what is played → family subscores → one index → three levels.

The PDI describes the *notes* of a track (heard by the transcription in ``music_pipeline/notes``):
how many, how many at once, how far apart, how irregular. Loudness and brightness feed a separate
``intensity`` subscore shown beside it; by default they do not enter the PDI, so a quieter or
darker recording of the same music keeps its PDI and level.

Fitted once on the library (``score_library``) and saved as plain JSON (``DifficultyModel.save``),
so a file scored later uses exactly the library's scale and thresholds and nobody's score moves.

============================  ===================================================================
quantity                      formula
============================  ===================================================================
normalised descriptor n_d     the library's empirical distribution function at x_d: F_d(x) =
                              linear interpolation of 101 library quantiles q_d(0 … 1), ties given
                              the mean of their levels (a descriptor constant over the library
                              gives 0.5; a value outside the library's range saturates at 0 or 1
                              and is listed as ``out_of_range``). Rank-based: one extreme track
                              does not squash everybody else, and n_d ∈ [0, 1].
family subscore               Σ w_d·n_d / Σ w_d over the family's descriptors (density,
                              polyphony, pitch, rhythm); the plain mean where no member has weight
structural subscore S         Σ w_d·n_d / Σ w_d over all note descriptors (weights below)
intensity subscore I          mean of n_d over the 7 audio performance-intensity descriptors
                              (tempo, onset density, flatness, loudness, dynamics, brightness,
                              spectral spread) — shown, not ranked on
PDI                           (S + w_I·I) / (1 + w_I), default w_I = 0: PDI = S ∈ [0, 1]
thresholds t_1 < t_2          library PDI quantiles at 1/3 and 2/3 (tertiles) by default, each
                              moved to the nearest gap between distinct PDI values if tied tracks
                              would leave a level empty; other quantiles or fixed values allowed
level                         Easy if PDI < t_1, Medium if t_1 ≤ PDI < t_2, Hard if PDI ≥ t_2
pushing descriptors           w_d·(n_d − library median of n_d)/Σ w: what moved this track away
                              from the library's middle, largest first
============================  ===================================================================

Weights by evidence (``benchmarks/bench_difficulty.py``, six outside collections of scores
rendered to audio, ρ against their symbolic complexity): every note descriptor ranks the pieces
in the "more is harder" direction on its own, and weightings fitted on five collections (non-
negative least squares, or weights proportional to ρ) ranked the sixth *worse* than equal weights
(README, Difficulty). So ``DEFAULT_WEIGHTS`` are equal: a fitted weighting has to beat them on
held-out collections to replace them. Deterministic: no randomness; the JSON holds floats at full
precision.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from music_pipeline.artifacts import (
    ArtifactPath,
    artifact_path,
    read_json,
    read_parquet,
    read_parquet_metadata,
    write_json,
    write_parquet,
)
from music_pipeline.difficulty.audio_descriptors import DESCRIPTORS as AUDIO_DESCRIPTORS
from music_pipeline.difficulty.audio_descriptors import INTENSITY as AUDIO_INTENSITY
from music_pipeline.difficulty.instrument import Heard
from music_pipeline.difficulty.note_descriptors import NOTE_DESCRIPTOR_FAMILY, NOTE_DESCRIPTOR_NAMES, NOTE_FAMILIES
from music_pipeline.layout import DataLayout
from music_pipeline.notes.store import HEARD_COLUMNS, NOTES_VERSION_KEY, NotesStore, heard_of, note_table
from music_pipeline.records import FilePath, Json, Markdown, Table

LEVELS = ("Easy", "Medium", "Hard")
STRUCTURAL = "structural"
INTENSITY = "intensity"
INTENSITY_DESCRIPTORS = [d.name for d in AUDIO_DESCRIPTORS if d.family == AUDIO_INTENSITY]
MODEL_DESCRIPTORS = NOTE_DESCRIPTOR_NAMES + INTENSITY_DESCRIPTORS
DESCRIPTOR_FAMILY = {**NOTE_DESCRIPTOR_FAMILY, **{n: INTENSITY for n in INTENSITY_DESCRIPTORS}}

# Equal: fitted weightings did not beat them on held-out collections (bench_difficulty.py). Two
# descriptors are shown but weigh nothing: the same notes on another instrument give them other
# ranks (Spearman with the piano rendering's 0.52 and 0.51, the 10 others 0.59–0.92;
# bench_instruments.py, docs/difficulty.md), so they describe the instrument more than the notes.
UNWEIGHTED = ("fast_run_share", "peak_polyphony")
_WEIGHTED = [n for n in NOTE_DESCRIPTOR_NAMES if n not in UNWEIGHTED]
DEFAULT_WEIGHTS: dict[str, float] = {
    n: (1.0 / len(_WEIGHTED) if n in _WEIGHTED else 0.0) for n in NOTE_DESCRIPTOR_NAMES
}
DEFAULT_INTENSITY_WEIGHT = 0.0
DEFAULT_QUANTILES = (1 / 3, 2 / 3)
QUANTILE_POINTS = 101
MODEL_FILE = "difficulty_model.json"
FORMAT_VERSION = 2
SCORE_ID_COLUMNS = ["key", "relpath", "label", "group", "content_hash"]


def norm_column(name: str) -> str:
    return f"norm_{name}"


def family_column(family: str) -> str:
    return f"family_{family}"


NORM_COLUMNS = [norm_column(n) for n in MODEL_DESCRIPTORS]
FAMILY_COLUMNS = [family_column(f) for f in NOTE_FAMILIES]


class LibraryNotScored(FileNotFoundError):
    """No saved difficulty model: the library has not been built (or not scored) yet."""


@dataclass(frozen=True)
class QuantileScale:
    """Each descriptor mapped through the library's empirical distribution (101 quantiles)."""

    names: tuple[str, ...]
    quantiles: np.ndarray  # (QUANTILE_POINTS, descriptors)

    @classmethod
    def fit(cls, X: np.ndarray, names: Sequence[str], points: int = QUANTILE_POINTS) -> QuantileScale:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] != len(names):
            raise ValueError(f"need a (tracks, {len(names)}) matrix with at least one track, got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("descriptors contain non-finite values")
        return cls(tuple(names), np.quantile(X, np.linspace(0.0, 1.0, points), axis=0))

    def _column(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        levels = np.linspace(0.0, 1.0, len(self.quantiles))
        values, inverse = np.unique(self.quantiles[:, j], return_inverse=True)
        return values, np.bincount(inverse, weights=levels) / np.bincount(inverse)  # ties: mean level

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        out = np.empty_like(X)
        for j in range(X.shape[1]):
            values, levels = self._column(j)
            out[:, j] = np.interp(X[:, j], values, levels)
        return out

    def out_of_range(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        return (X < self.quantiles[0]) | (X > self.quantiles[-1])

    def to_dict(self) -> dict:
        return {"names": list(self.names), "quantiles": self.quantiles.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping) -> QuantileScale:
        return cls(tuple(d["names"]), np.asarray(d["quantiles"], dtype=np.float64).reshape(-1, len(d["names"])))


def _weighted_mean(norm: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ w_d·n_d / Σ w_d per row, column by column in a fixed order, so one file scores
    bit-identically to the same row of a library (a matrix product may sum in another order)."""
    acc = np.zeros(norm.shape[0])
    for j in np.flatnonzero(w):
        acc += w[j] * norm[:, j]
    return acc / w.sum()


@dataclass
class DifficultyScore:
    """The score of one file (outside or inside the library)."""

    pdi: float
    level: str
    structural: float
    intensity: float
    families: dict[str, float]
    normalised: dict[str, float]
    pushing: list[dict]  # [{descriptor, family, value, normalised, vs_median, contribution}]
    out_of_range: list[str]

    def to_dict(self) -> dict:
        return {
            "pdi": self.pdi,
            "level": self.level,
            "structural": self.structural,
            "intensity": self.intensity,
            "families": self.families,
            "pushing": self.pushing,
            "out_of_range": self.out_of_range,
            "normalised": self.normalised,
        }


@dataclass
class DifficultyModel:
    scale: QuantileScale
    weights: dict[str, float]  # note descriptor -> weight (≥ 0) in the structural subscore
    intensity_weight: float
    thresholds: tuple[float, ...]
    medians: np.ndarray  # library median of each normalised descriptor
    threshold_rule: str
    n_tracks: int
    levels: tuple[str, ...] = LEVELS
    extra: dict = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return self.scale.names

    def _weight_vector(self) -> np.ndarray:
        return np.array([self.weights.get(n, 0.0) for n in self.names])

    def subscores(self, norm: np.ndarray) -> dict[str, np.ndarray]:
        """Family subscores, structural, intensity and the PDI of normalised rows."""
        w = self._weight_vector()
        out = {}
        for fam in NOTE_FAMILIES:
            members = np.array([DESCRIPTOR_FAMILY[n] == fam for n in self.names])
            fw = w * members
            out[family_column(fam)] = (
                _weighted_mean(norm, fw) if fw.sum() > 0 else _weighted_mean(norm, members.astype(float))
            )
        out[STRUCTURAL] = _weighted_mean(norm, w)
        out[INTENSITY] = _weighted_mean(norm, np.array([DESCRIPTOR_FAMILY[n] == INTENSITY for n in self.names], float))
        out["pdi"] = (out[STRUCTURAL] + self.intensity_weight * out[INTENSITY]) / (1.0 + self.intensity_weight)
        return out

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
        norm = self.scale.transform(self._matrix(df))
        parts = self.subscores(norm)
        idx = self.level_index(parts["pdi"])
        ids = df[[c for c in [*SCORE_ID_COLUMNS, *HEARD_COLUMNS.values()] if c in df.columns]].reset_index(drop=True)
        scores = pd.DataFrame(norm, columns=[norm_column(n) for n in self.names])
        for k, v in parts.items():
            scores[k] = v
        scores["level_index"] = idx.astype(np.int64)
        scores["level"] = [self.levels[i] for i in idx]
        return pd.concat([ids, scores], axis=1)

    def score(self, descriptors: Mapping[str, float], top: int = 3) -> DifficultyScore:
        """Score one file's descriptors with the saved scale; the library is not touched."""
        raw = np.array([[float(descriptors[n]) for n in self.names]])
        if not np.isfinite(raw).all():
            raise ValueError("descriptors contain non-finite values")
        norm = self.scale.transform(raw)
        parts = {k: float(v[0]) for k, v in self.subscores(norm).items()}
        w = self._weight_vector()
        contribution = w * (norm[0] - self.medians) / w.sum()
        ranked = [i for i in np.argsort(-np.abs(contribution), kind="stable") if w[i] > 0][:top]
        pushing = [
            {
                "descriptor": self.names[i],
                "family": DESCRIPTOR_FAMILY[self.names[i]],
                "value": float(raw[0, i]),
                "normalised": float(norm[0, i]),
                "vs_median": float(norm[0, i] - self.medians[i]),
                "contribution": float(contribution[i]),
            }
            for i in ranked
        ]
        out = [n for n, o in zip(self.names, self.scale.out_of_range(raw)[0], strict=True) if o]
        return DifficultyScore(
            pdi=parts["pdi"],
            level=self.levels[int(self.level_index(np.array([parts["pdi"]]))[0])],
            structural=parts[STRUCTURAL],
            intensity=parts[INTENSITY],
            families={f: parts[family_column(f)] for f in NOTE_FAMILIES},
            normalised=dict(zip(self.names, map(float, norm[0]), strict=True)),
            pushing=pushing,
            out_of_range=out,
        )

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "scale": self.scale.to_dict(),
            "weights": dict(self.weights),
            "intensity_weight": self.intensity_weight,
            "families": {n: DESCRIPTOR_FAMILY[n] for n in self.names},
            "thresholds": list(self.thresholds),
            "threshold_rule": self.threshold_rule,
            "levels": list(self.levels),
            "medians": self.medians.tolist(),
            "n_tracks": self.n_tracks,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> DifficultyModel:
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"difficulty model format {d.get('format_version')} is not {FORMAT_VERSION}; rebuild the library"
            )
        return cls(
            scale=QuantileScale.from_dict(d["scale"]),
            weights={k: float(v) for k, v in d["weights"].items()},
            intensity_weight=float(d["intensity_weight"]),
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
    def load(cls, directory: str | Path) -> DifficultyModel:
        path = artifact_path(directory) / MODEL_FILE
        if not path.is_file():
            raise LibraryNotScored(f"no difficulty model at {path}: build the library first (music-pipeline build)")
        model = cls.from_dict(read_json(path))
        if list(model.names) != MODEL_DESCRIPTORS:
            raise ValueError(f"{path} was fitted on other descriptors than this version computes; rebuild the library")
        return model


def fit_model(
    descriptors: pd.DataFrame,
    weights: Mapping[str, float] | None = None,
    intensity_weight: float = DEFAULT_INTENSITY_WEIGHT,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    thresholds: Sequence[float] | None = None,
) -> DifficultyModel:
    """Fit the scale on the library, then the thresholds on the library's PDI.

    ``descriptors`` holds the note descriptors and the audio intensity descriptors of each track.
    ``thresholds`` (two increasing values in [0, 1]) overrides ``quantiles``.
    """
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = set(weights) - set(NOTE_DESCRIPTOR_NAMES)
    if unknown or min(weights.values(), default=0.0) < 0 or sum(weights.values()) <= 0 or intensity_weight < 0:
        raise ValueError(
            f"weights need note descriptors ({NOTE_DESCRIPTOR_NAMES}) with non-negative values and a positive sum, and w_I ≥ 0; got {weights}, {intensity_weight}"
        )
    missing = [n for n in MODEL_DESCRIPTORS if n not in descriptors.columns]
    if missing:
        raise ValueError(f"descriptor columns missing: {missing}")
    X = descriptors[MODEL_DESCRIPTORS].to_numpy(dtype=np.float64)
    scale = QuantileScale.fit(X, MODEL_DESCRIPTORS)
    norm = scale.transform(X)
    model = DifficultyModel(scale, weights, float(intensity_weight), (), np.median(norm, axis=0), "", len(X))
    pdi = model.subscores(norm)["pdi"]
    if thresholds is not None:
        cuts = tuple(float(t) for t in thresholds)
        rule = "fixed " + ", ".join(f"{t:.4g}" for t in cuts)
    else:
        qs = [float(q) for q in quantiles]
        if not all(0.0 < q < 1.0 for q in qs):
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {qs}")
        cuts = _untie(pdi, [float(t) for t in np.quantile(pdi, qs)])
        rule = "library PDI quantiles " + ", ".join(f"{q:.4g}" for q in qs)
    if len(cuts) != len(LEVELS) - 1 or any(b < a for a, b in itertools.pairwise(cuts)):
        raise ValueError(f"need {len(LEVELS) - 1} non-decreasing thresholds, got {cuts}")
    model.thresholds, model.threshold_rule = cuts, rule
    return model


def _untie(pdi: np.ndarray, cuts: list[float]) -> tuple[float, ...]:
    """Quantile thresholds, each moved to the nearest gap between distinct PDI values when tied
    tracks (identical note statistics) would otherwise leave a level empty; unchanged when the
    levels are all populated or there are fewer distinct values than levels."""
    values = np.unique(pdi)
    if len(values) < len(cuts) + 1:
        return tuple(cuts)
    gaps = (values[:-1] + values[1:]) / 2  # every threshold that separates distinct values
    levels = np.searchsorted(cuts, pdi, side="right")
    if all((levels == k).any() for k in range(len(cuts) + 1)):
        return tuple(cuts)
    # the gaps closest to the quantiles, distinct and increasing: each level keeps ≥ 1 value
    chosen: list[float] = []
    for i, c in enumerate(cuts):
        lo = np.searchsorted(gaps, chosen[-1], side="right") if chosen else 0
        hi = len(gaps) - (len(cuts) - 1 - i)  # leave a gap for each later threshold
        candidates = gaps[lo:hi]
        chosen.append(float(candidates[np.argmin(np.abs(candidates - c))]))
    return tuple(chosen)


def score_library(descriptors: pd.DataFrame, **fit_kwargs) -> tuple[pd.DataFrame, DifficultyModel]:
    """Fit on the library's descriptor table and score every track with that same model."""
    model = fit_model(descriptors, **fit_kwargs)
    return model.score_frame(descriptors), model


def merge_descriptors(audio: pd.DataFrame, notes: pd.DataFrame) -> pd.DataFrame:
    """One row per track with both the audio and the note descriptors (tracks without notes out)."""
    keep = ["content_hash", *NOTE_DESCRIPTOR_NAMES, *(c for c in HEARD_COLUMNS.values() if c in notes.columns)]
    return audio.merge(notes[keep].drop_duplicates("content_hash"), on="content_hash", how="inner")


def _octaves(semitones: float) -> str:
    octaves = round(semitones / 12 * 2) / 2
    return f"{octaves:g}-octave" if octaves >= 1 else f"{semitones:.0f}-semitone"


def explain(
    values: Mapping[str, float],
    level: str,
    normalised: Mapping[str, float] | None = None,
    heard: Heard | None = None,
) -> str:
    """The difficulty in musical terms: "8.1 notes/s, chords of 4, a 4-octave range → Hard", and
    with ``heard`` what it was heard from: "(sounded like organ, p 0.97; notes read with confidence 0.41)".

    Notes per second, chord size and range are always named; fast runs, wide leaps and an
    irregular rhythm only when they stand out — in the library's top quarter when ``normalised``
    (the scored n_d) is given, else above fixed marks (20 % fast intervals, 7 semitones, 2.5 bits).
    """

    def stands_out(name: str, mark: float) -> bool:
        if normalised is not None and name in normalised:
            return normalised[name] >= 0.75
        return values.get(name, 0.0) >= mark

    parts = [f"{values['notes_per_s']:.1f} notes/s"]
    at_once = round(values["peak_polyphony"])
    parts.append(f"chords of {at_once}" if at_once >= 2 else "one note at a time")
    parts.append(f"a {_octaves(values['pitch_range'])} range")
    if stands_out("fast_run_share", 0.2):
        parts.append(f"fast runs ({values['fast_run_share']:.0%} of the intervals)")
    if stands_out("melodic_leap", 7.0):
        parts.append(f"leaps of {values['melodic_leap']:.0f} semitones on average")
    if stands_out("ioi_entropy", 2.5):
        parts.append("an irregular rhythm")
    text = ", ".join(parts) + f" → {level}"
    if heard is not None:
        text += (
            f" (sounded like {heard.label}, p {heard.probability:.2f}; "
            f"notes read with confidence {heard.reading_confidence:.2f})"
        )
    return text


def extremes(scores: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The ``n`` easiest and ``n`` hardest tracks (ties broken by key for determinism)."""
    cols = [c for c in ("relpath", "label", "pdi", "structural", "intensity", "level") if c in scores.columns]
    ordered = scores.sort_values(["pdi", "key"], kind="mergesort")
    easiest = ordered.head(n)[cols].assign(end="easiest")
    hardest = ordered.tail(n).iloc[::-1][cols].assign(end="hardest")
    return pd.concat([hardest, easiest], ignore_index=True)[["end", *cols]]


def heard_summary(scores: pd.DataFrame, n: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per family heard: tracks, median reading confidence, mean PDI, the family read least surely
    first; the ``n`` tracks read least surely): where to listen before trusting a level. Notes of an
    older build, stored without what was heard, give two empty tables."""
    if HEARD_COLUMNS["family"] not in scores.columns:
        return pd.DataFrame(), pd.DataFrame()
    said = pd.DataFrame([heard_of(row).to_dict() for row in scores.to_dict("records")], index=scores.index)
    tracks = scores[["relpath", "pdi", "level"]].assign(
        family=said["family_label"], reading_confidence=said["reading_confidence"]
    )
    by_family = (
        tracks.groupby("family")
        .agg(
            tracks=("pdi", "size"),
            median_reading_confidence=("reading_confidence", "median"),
            mean_pdi=("pdi", "mean"),
        )
        .sort_values(["median_reading_confidence", "tracks"])
        .reset_index()
    )
    least = tracks.sort_values(["reading_confidence", "relpath"], kind="mergesort").head(n).reset_index(drop=True)
    return by_family, least


def level_counts(scores: pd.DataFrame, levels: Sequence[str] = LEVELS) -> dict[str, int]:
    counts = scores["level"].value_counts()
    return {lv: int(counts.get(lv, 0)) for lv in levels}


# ---------------------------------------------------------------- the library's PDI, published


@dataclass(frozen=True)
class PdiConfig:
    """How the ``difficulty`` asset fits the library's PDI (the defaults of its Dagster config)."""

    intensity_weight: float = DEFAULT_INTENSITY_WEIGHT
    threshold_quantiles: tuple[float, ...] = DEFAULT_QUANTILES
    fixed_thresholds: tuple[float, ...] = ()  # two PDI values; when given they replace the quantiles
    gallery_per_level: int = 3  # example spectrograms per level in the gallery


class NotScorable(ValueError):
    """The library cannot be scored (no analysed track, no notes, or the fit failed)."""


@dataclass
class DifficultyRecord:
    """What one ``difficulty`` run published: its metadata (``music_pipeline.records`` values), the
    level counts and thresholds, what the figures are drawn from, and the warnings for the run log."""

    metadata: dict
    counts: dict[str, int]
    thresholds: tuple[float, ...]
    scores: pd.DataFrame  # difficulty.parquet
    model: DifficultyModel
    descriptors: pd.DataFrame  # audio + note descriptors of the scored tracks
    notes: NotesStore  # where the scored tracks' notes are
    warnings: list[str] = field(default_factory=list)


def library_note_table(layout: DataLayout, audio: pd.DataFrame, store: NotesStore) -> tuple[pd.DataFrame, list[str]]:
    """Note descriptors of every track of the audio table from the notes ``track_notes`` stored
    (written to ``note_descriptors.parquet``), and a warning per track without notes (left out)."""
    path = layout.note_descriptors_table_path
    previous = None
    try:
        if path.exists() and read_parquet_metadata(path).get(NOTES_VERSION_KEY) == store.version:
            previous = read_parquet(path)
    except (OSError, ValueError):
        previous = None
    table, missing = note_table(audio[["key", "relpath", "content_hash"]], store, previous)
    warnings = [
        f"{r.relpath}: no notes, left out of the PDI ({store.failure(r.content_hash) or 'not transcribed'})"
        for r in missing.itertuples()
    ]
    write_parquet(path, table, {NOTES_VERSION_KEY: store.version})
    return table, warnings


def run_pdi(layout: DataLayout, config: PdiConfig = PdiConfig()) -> DifficultyRecord:
    """Fit the PDI on the library and publish it: the note descriptor table, the scores and the model
    file (``plots.pdi_figures`` draws the figures from the record). Raises ``NotScorable``."""
    audio = read_parquet(layout.descriptors_table_path)
    if audio.empty:
        raise NotScorable("no analysed tracks: the descriptor table is empty")
    note_store = NotesStore(layout.root)
    notes, warnings = library_note_table(layout, audio, note_store)
    descriptors = merge_descriptors(audio, notes)
    if descriptors.empty:
        raise NotScorable("no track has notes: nothing to score")
    try:
        scores, model = score_library(
            descriptors,
            intensity_weight=config.intensity_weight,
            quantiles=config.threshold_quantiles,
            thresholds=config.fixed_thresholds or None,
        )
    except ValueError as exc:
        raise NotScorable(f"cannot score the library: {exc}") from exc
    # a refit on a changed library may move existing tracks: say so instead of doing it silently
    moved = moves_since(_previous_scores(layout.difficulty_table_path), scores)
    if moved["tracks_changing_level"]:
        warnings.append(f"{moved['tracks_changing_level']} tracks changed level after refitting on the current library")
    table_path = write_parquet(layout.difficulty_table_path, scores)
    model_path = model.save(layout.difficulty_dir)
    counts = level_counts(scores)
    by_label = (
        scores.assign(label=scores["label"].fillna("(unlabelled)"))
        .groupby("label")[["pdi", "structural", "intensity"]]
        .mean()
        .reset_index()
    )
    left_out = sorted(set(audio["relpath"]) - set(descriptors["relpath"]))
    by_family, least_sure = heard_summary(scores)
    metadata = {
        "path": FilePath(table_path),
        "model": FilePath(model_path),
        "dagster/row_count": len(scores),
        "levels": Json(counts),
        "thresholds": Json({"values": list(model.thresholds), "rule": model.threshold_rule}),
        "weights": Json({**model.weights, "intensity (w_I)": model.intensity_weight}),
        "pdi_mean": float(scores["pdi"].mean()),
        "structural_intensity_correlation": float(np.corrcoef(scores["structural"], scores["intensity"])[0, 1])
        if len(scores) > 2
        else 0.0,
        "extremes": Table(extremes(scores, 5), floatfmt=".3f"),
        "mean_by_label": Table(by_label, floatfmt=".3f"),
        "heard_by_family": Table(by_family, floatfmt=".3f"),
        "read_least_surely": Table(least_sure, floatfmt=".3f"),
        "tracks_without_notes": Markdown("\n".join(f"- `{r}`" for r in left_out) or "none"),
        "since_last_build": Json(moved),
    }
    return DifficultyRecord(metadata, counts, tuple(model.thresholds), scores, model, descriptors, note_store, warnings)


def _previous_scores(path: ArtifactPath) -> pd.DataFrame | None:
    try:
        return read_parquet(path, columns=["key", "pdi", "level"]) if path.exists() else None
    except Exception:  # noqa: BLE001 - written by an older version with other columns
        return None


def moves_since(previous: pd.DataFrame | None, scores: pd.DataFrame) -> dict:
    """How far a refit moved the tracks scored before (level changes, largest PDI change)."""
    if previous is None or previous.empty:
        return {"tracks_compared": 0, "tracks_changing_level": 0, "max_abs_pdi_change": 0.0}
    both = previous.merge(scores[["key", "pdi", "level"]], on="key", suffixes=("_before", "_now"))
    return {
        "tracks_compared": len(both),
        "tracks_changing_level": int((both["level_before"] != both["level_now"]).sum()),
        "max_abs_pdi_change": float((both["pdi_now"] - both["pdi_before"]).abs().max()) if len(both) else 0.0,
    }


def stored_scores_reproduced(layout: DataLayout) -> dict:
    """Whether the saved model, reloaded, gives exactly the stored scores (the facts the
    ``difficulty_model_reproduces_scores`` check judges): ``stale`` when scored tracks left the
    descriptor table, else the largest PDI difference and whether every level is the same."""
    stored = read_parquet(layout.difficulty_table_path)
    descriptors = merge_descriptors(
        read_parquet(layout.descriptors_table_path), read_parquet(layout.note_descriptors_table_path)
    )
    gone = sorted(set(stored["key"]) - set(descriptors["key"]))
    if gone:  # the descriptor table moved on since the scores were written: they are stale
        return {"stale": f"{len(gone)} scored tracks no longer in the descriptor table (first: {gone[0]})"}
    descriptors = descriptors.set_index("key").loc[stored["key"]].reset_index()
    again = DifficultyModel.load(layout.difficulty_dir).score_frame(descriptors)
    diff = np.abs(again["pdi"].to_numpy() - stored["pdi"].to_numpy())
    same_levels = bool((again["level"].to_numpy() == stored["level"].to_numpy()).all())
    return {"max_abs_pdi_difference": float(diff.max(initial=0.0)), "levels_identical": same_levels}

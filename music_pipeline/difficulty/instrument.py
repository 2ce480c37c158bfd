"""What the notes were heard from: the instrument family a track sounds like, and how readable its notes were.

Both go beside the PDI in its explanation; neither changes it.

* **Family** — a multinomial logistic regression on the timbre dimensions of the 641-D embedding
  (MFCC statistics, spectral contrast and flatness, zero-crossing rate, onset strength), trained
  by ``benchmarks/bench_instruments.py train-family`` on the development set across timbres and
  shipped as ``instrument_family.npz`` (plain arrays: feature names, scaler, coefficients; no
  pickle). The families are how notes sound, which is what makes them easy or hard to read:
  ``piano``, ``plucked`` (guitar, harpsichord), ``sustained`` (organ, bowed strings, winds) and
  ``band`` (several instruments and drums). The probability of the top family is its confidence.
* **Note confidence** — how surely the transcription read the notes: the mean of the notes'
  confidences (the model's mean frame activation over each note), so ghost notes, smeared
  sustained tones and reverberation, which the model reports weakly, pull it down.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from music_pipeline.features.embedding import FEATURE_NAMES

FAMILY_MODEL_FILE = "instrument_family.npz"
FAMILY_LABELS = {
    "piano": "piano",
    "plucked": "plucked (guitar, harpsichord)",
    "sustained": "sustained (organ, strings, winds)",
    "band": "band or mixed ensemble",
}
TIMBRE_PREFIXES = ("mfcc_", "spectral_contrast_", "spectral_flatness_", "zcr_", "onset_strength_")
TIMBRE_FEATURES = [n for n in FEATURE_NAMES if n.startswith(TIMBRE_PREFIXES)]


@dataclass(frozen=True)
class FamilyModel:
    """Standardise, then a softmax over the families (the arrays of ``instrument_family.npz``)."""

    names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (families, features)
    intercept: np.ndarray
    families: tuple[str, ...]

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(np.asarray(X, np.float64)) - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def family(self, embedding: np.ndarray) -> tuple[str, float]:
        """(family, probability) of one 641-D embedding in ``FEATURE_NAMES`` order."""
        index = [FEATURE_NAMES.index(n) for n in self.names]
        p = self.probabilities(np.asarray(embedding, np.float64)[index])[0]
        k = int(np.argmax(p))
        return self.families[k], float(p[k])

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "names": np.array(self.names),
            "mean": self.mean,
            "scale": self.scale,
            "coef": self.coef,
            "intercept": self.intercept,
            "families": np.array(self.families),
        }

    @classmethod
    def from_arrays(cls, z) -> FamilyModel:
        return cls(
            tuple(map(str, z["names"])),
            np.asarray(z["mean"], np.float64),
            np.asarray(z["scale"], np.float64),
            np.asarray(z["coef"], np.float64),
            np.asarray(z["intercept"], np.float64),
            tuple(map(str, z["families"])),
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> FamilyModel:
        """The shipped model (package data), or the one at ``path``."""
        source = Path(path) if path else resources.files("music_pipeline.difficulty") / FAMILY_MODEL_FILE
        with source.open("rb") as f, np.load(f, allow_pickle=False) as z:
            return cls.from_arrays(z)


def fit_family_model(X: np.ndarray, families: np.ndarray, names: list[str], c: float = 0.1) -> FamilyModel:
    """Fit the scaler and the regression (scikit-learn, one Pipeline) and keep their arrays."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    pipe.fit(np.asarray(X, np.float64), np.asarray(families))
    scaler, reg = pipe.steps[0][1], pipe.steps[1][1]
    return FamilyModel(
        tuple(names),
        scaler.mean_.copy(),
        np.where(scaler.scale_ > 0, scaler.scale_, 1.0),
        reg.coef_.copy(),
        reg.intercept_.copy(),
        tuple(map(str, reg.classes_)),
    )


def note_confidence(confidence: np.ndarray) -> float:
    """How surely the notes were read: the mean of the notes' confidences (0 without notes)."""
    confidence = np.asarray(confidence, np.float64)
    return float(confidence.mean()) if len(confidence) else 0.0

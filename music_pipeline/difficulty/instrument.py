"""What the notes were heard from, and how the instrument bends what the transcription reads.

The same notes on an organ or a string section are read as more, denser and wider notes than on a
piano (overtones and held tones heard as notes, slow attacks that smear chords); the notes pass
asks which family the audio sounds like and maps its note descriptors to what a piano rendering
of the same notes gives, then reports the family and how surely the notes were read beside the PDI.

* ``timbre_vector`` — 38 numbers of timbre from the audio the transcription heard (MFCC 1–20
  std, spectral contrast 7 bands mean and std, flatness and onset strength mean and std;
  librosa, from one 1024-point STFT: ~40 ms for the 30 s a track is transcribed from);
* ``InstrumentModel`` — a multinomial logistic regression over the families ``FAMILY_LABELS``
  (trained with each render also darker and brighter, so a tone control does not change the
  family) and, per family and note descriptor, the median of log(1 + value) on the development set
  across timbres; ``correct`` moves a track's descriptors by the difference between the piano's
  median and each family's, weighted by the family probabilities. A timbre farther from its
  family's centre than ``FAMILIAR_QUANTILE`` of that family's own renders is *unfamiliar*: the
  descriptors are left as read and the family is reported as ``unfamiliar``. Trained by
  ``benchmarks/bench_instruments.py train``, shipped as ``instrument_model.npz`` (plain arrays, no
  pickle);
* ``NOTE_READING`` — how each family's activations become notes: the notes pass hears the
  family first, then reads the notes as that family's are best read (``note_creation``);
* ``note_confidence`` — the mean of the notes' confidences (the model's own activations);
* ``Heard.reading_confidence`` — how surely the notes were read, as the note F1 against the score
  that audio of that family and note confidence gets on the development set (±100 ms onsets, the
  same pitch): one line per family, ``InstrumentModel.reading_line``. The note confidence alone
  ranks it poorly across families (an organ's notes are read as confidently as a piano's, and
  half as well).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

MODEL_FILE = "instrument_model.npz"
UNFAMILIAR = "unfamiliar"
FAMILIAR_QUANTILE = 99.0  # percentile of a family's own distances to its centre that still counts as that family
REFERENCE_FAMILY = "piano"
FAMILY_LABELS = {
    "piano": "piano",
    "plucked": "plucked (guitar, harpsichord)",
    "organ": "organ",
    "bowed_blown": "bowed or blown (strings, winds)",
    "band": "band or mixed ensemble",
    UNFAMILIAR: "none of the families it knows (descriptors not corrected)",
}
# How the notes of each family are read. Sustained tones (organ, bowed, blown) sound overtones
# nearly as strong as their fundamental and re-articulate, so an overtone is dropped whenever the
# note below it is surer, and a held tone joins across a stronger onset; organ and plucked strings
# ring on, so a note needs a stronger frame activation. Chosen per family on the development set across
# timbres and checked on other sound fonts (bench_instruments.py, docs/difficulty.md). A piano,
# and a timbre unlike every family, are read with the default ``NoteCreation``.
NOTE_READING: dict[str, dict] = {  # family -> NoteCreation settings that differ from the default
    REFERENCE_FAMILY: {},
    "plucked": {"frame_threshold": 0.4},
    "organ": {"frame_threshold": 0.4, "overtone_confidence_ratio": 1.0},
    "bowed_blown": {"overtone_confidence_ratio": 1.0, "rearticulation_onset": 0.8},
    "band": {"rearticulation_onset": 0.8},
}


def note_creation(family: str):
    """The ``NoteCreation`` of audio heard as ``family`` (``UNFAMILIAR``: the default's)."""
    from music_pipeline.notes.transcribe import NoteCreation  # the transcription only where notes are read

    return NoteCreation(**NOTE_READING.get(family, {}))


# No MFCC means: they are the long-term spectral envelope, which differs from one sample set,
# microphone or EQ to the next; without them the family heard in a sound font the model never
# heard is right 91 % of the time instead of 82 % (a piano 79 % instead of 0 %; bench_instruments.py)
N_MFCC, N_CONTRAST = 20, 7
N_FFT, HOP = 1024, 512
TIMBRE_NAMES = [
    *(f"mfcc_std_{i:02d}" for i in range(1, N_MFCC + 1)),
    *(f"contrast_{s}_b{b}" for s in ("mean", "std") for b in range(1, N_CONTRAST + 1)),
    *(f"{f}_{s}" for f in ("flatness", "onset_strength") for s in ("mean", "std")),
]


def timbre_vector(y: np.ndarray, sr: int) -> np.ndarray:
    """The ``TIMBRE_NAMES`` of a mono signal."""
    import librosa

    S = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))
    mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=S**2, sr=sr, n_fft=N_FFT))
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=N_MFCC)
    contrast = librosa.feature.spectral_contrast(S=S, sr=sr, n_fft=N_FFT)
    flat = librosa.feature.spectral_flatness(S=S, n_fft=N_FFT)[0]
    onset = librosa.onset.onset_strength(S=mel_db, sr=sr)
    parts = [mfcc.std(1), contrast.mean(1), contrast.std(1)]
    parts += [np.array([v.mean(), v.std()]) for v in (flat, onset)]
    return np.concatenate(parts).astype(np.float64)


@dataclass(frozen=True)
class Heard:
    """The family the audio sounded like (with its probability) and how surely the notes were read
    (``reading_confidence``: the note F1 expected of that family at that ``note_confidence``)."""

    family: str
    probability: float
    note_confidence: float
    reading_confidence: float

    @property
    def label(self) -> str:
        return FAMILY_LABELS.get(self.family, self.family)

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "family_label": self.label,
            "family_probability": self.probability,
            "note_confidence": self.note_confidence,
            "reading_confidence": self.reading_confidence,
        }


@dataclass(frozen=True)
class InstrumentModel:
    names: tuple[str, ...]  # TIMBRE_NAMES
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (families, features)
    intercept: np.ndarray
    families: tuple[str, ...]
    descriptors: tuple[str, ...]
    centre: np.ndarray  # (families, descriptors): median of log(1 + value)
    timbre_centre: np.ndarray  # (families, features): mean standardised timbre of the family
    radius: np.ndarray  # (families,): FAMILIAR_QUANTILE of the family's distances to its timbre centre
    reading_line: np.ndarray  # (families + 1, 2): note F1 = intercept + slope × note confidence; last: unfamiliar

    def _standardised(self, X: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(np.asarray(X, np.float64)) - self.mean) / self.scale

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        z = self._standardised(X)
        logits = z @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def familiar(self, X: np.ndarray) -> np.ndarray:
        """Whether each timbre lies within its most probable family's usual distance of its centre."""
        z = self._standardised(X)
        k = self.probabilities(X).argmax(axis=1)
        return np.linalg.norm(z - self.timbre_centre[k], axis=1) <= self.radius[k]

    def correct(self, values: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """Descriptor rows (in ``descriptors`` order) moved, in log(1 + value), by the difference
        between the reference family's median and each family's, weighted by the family probabilities."""
        x = np.log1p(np.maximum(np.atleast_2d(np.asarray(values, np.float64)), 0.0))
        ref = self.families.index(REFERENCE_FAMILY)
        shift = np.atleast_2d(probabilities) @ (self.centre[ref] - self.centre)
        return np.expm1(np.maximum(x + shift, 0.0))

    def family(self, timbre: np.ndarray) -> tuple[str, np.ndarray]:
        """(the family one track sounds like, or ``UNFAMILIAR``; the probability of each family)."""
        p = self.probabilities(timbre)[0]
        return (self.families[int(np.argmax(p))] if self.familiar(timbre)[0] else UNFAMILIAR), p

    def heard(self, family: str, probability: float, note_confidence: float) -> Heard:
        """What was heard, with how surely notes of ``family`` read at ``note_confidence`` were read."""
        row = self.families.index(family) if family in self.families else -1  # unfamiliar: the pooled line
        intercept, slope = self.reading_line[row]
        reading = float(np.clip(intercept + slope * note_confidence, 0.0, 1.0))
        return Heard(family, probability, note_confidence, reading)

    def heard_as(
        self, family: str, probabilities: np.ndarray, descriptors: dict[str, float], confidence: np.ndarray
    ) -> tuple[Heard, dict]:
        """(what was heard, the descriptors corrected for it) of one track whose ``family`` was
        heard with ``probabilities``; an unfamiliar timbre keeps its descriptors as read."""
        heard = self.heard(family, float(np.max(probabilities)), note_confidence(confidence))
        if family == UNFAMILIAR:
            return heard, dict(descriptors)
        row = np.array([[descriptors[n] for n in self.descriptors]])
        fixed = dict(zip(self.descriptors, map(float, self.correct(row, probabilities[None])[0]), strict=True))
        return heard, {**descriptors, **fixed}

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "names": np.array(self.names),
            "mean": self.mean,
            "scale": self.scale,
            "coef": self.coef,
            "intercept": self.intercept,
            "families": np.array(self.families),
            "descriptors": np.array(self.descriptors),
            "centre": self.centre,
            "timbre_centre": self.timbre_centre,
            "radius": self.radius,
            "reading_line": self.reading_line,
        }

    @classmethod
    def from_arrays(cls, z) -> InstrumentModel:
        f = lambda k: np.asarray(z[k], np.float64)
        s = lambda k: tuple(map(str, z[k]))
        return cls(
            s("names"),
            f("mean"),
            f("scale"),
            f("coef"),
            f("intercept"),
            s("families"),
            s("descriptors"),
            f("centre"),
            f("timbre_centre"),
            f("radius"),
            f("reading_line"),
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> InstrumentModel:
        """The shipped model (package data), or the one at ``path``."""
        source = Path(path) if path else resources.files("music_pipeline.difficulty") / MODEL_FILE
        with source.open("rb") as fh, np.load(fh, allow_pickle=False) as z:
            if "reading_line" not in z.files:
                raise ValueError(f"{source} was trained by an older version (no reading confidence): train it again")
            model = cls.from_arrays(z)
        if list(model.names) != TIMBRE_NAMES:
            raise ValueError(f"{source} was trained on other timbre features than this version computes")
        return model


def fit_instrument_model(
    timbre: np.ndarray,
    families: np.ndarray,
    descriptors: np.ndarray,
    descriptor_names: list[str],
    confidence: np.ndarray,
    note_f1: np.ndarray,
    c: float = 1.0,
) -> InstrumentModel:
    """Fit the family classifier (one scikit-learn Pipeline: scaler, logistic regression), each
    family's descriptor distribution and the reading lines from each render's note ``confidence``
    to its ``note_f1`` against the score; keep their arrays."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    families = np.asarray(families)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    pipe.fit(np.asarray(timbre, np.float64), families)
    scaler, reg = pipe.steps[0][1], pipe.steps[1][1]
    classes = tuple(map(str, reg.classes_))
    coef, intercept = reg.coef_, reg.intercept_
    if len(classes) == 2:  # one logit for the second class: as a softmax, the first class's logit is 0
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
    logs = np.log1p(np.maximum(np.asarray(descriptors, np.float64), 0.0))
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    z = (np.asarray(timbre, np.float64) - scaler.mean_) / scale
    centres = np.stack([z[families == f].mean(axis=0) for f in classes])
    radius = np.array(
        [
            np.percentile(np.linalg.norm(z[families == f] - centres[i], axis=1), FAMILIAR_QUANTILE)
            for i, f in enumerate(classes)
        ]
    )
    return InstrumentModel(
        tuple(TIMBRE_NAMES),
        scaler.mean_.copy(),
        scale,
        coef.copy(),
        intercept.copy(),
        classes,
        tuple(descriptor_names),
        np.stack([np.median(logs[families == f], axis=0) for f in classes]),
        centres,
        radius,
        reading_lines(families, classes, confidence, note_f1),
    )


def reading_lines(families: np.ndarray, classes: tuple[str, ...], confidence: np.ndarray, note_f1: np.ndarray):
    """(intercept, slope) of note F1 over note confidence for each of ``classes``, one slope shared
    (least squares, a level per family), then one line over every family for an unfamiliar timbre."""
    from sklearn.linear_model import LinearRegression

    confidence = np.asarray(confidence, np.float64)[:, None]
    levels = (np.asarray(families)[:, None] == np.array(classes)[None]).astype(np.float64)
    shared = LinearRegression(fit_intercept=False).fit(np.hstack([levels, confidence]), note_f1)
    pooled = LinearRegression().fit(confidence, note_f1)
    slope = shared.coef_[-1]
    per_family = [(level, slope) for level in shared.coef_[:-1]]
    return np.array([*per_family, (pooled.intercept_, pooled.coef_[0])], np.float64)


def note_confidence(confidence: np.ndarray) -> float:
    """The mean of the notes' confidences (0 without notes): the model's own, before the family is weighed."""
    confidence = np.asarray(confidence, np.float64)
    return float(confidence.mean()) if len(confidence) else 0.0

"""The 641-D hand-crafted track embedding: named dimensions and their computation.

Layout (the table of dimensions is in docs/features.md):

=================================  =====
MFCC 1-20 mean, std, delta mean      60
chroma-CQT (C..B) mean, std          24
spectral centroid/rolloff/bandwidth
  mean+std (6), contrast 7 bands
  mean+std (14), flatness mean+std   22
zero-crossing rate mean/std, tempo    3
RMS mean/std                          2
tonnetz (6 dims) mean/std            12
mel bands 1-128 mean/p25/p50/p75    512
rhythm & dynamics (see EXTRA_NAMES)   6
=================================  =====
                                    641

The reference design's list sums to 635; the six extra dimensions describe rhythm and dynamics,
which the rest covers only through one tempo value: onset rate, onset strength mean/std (spectral
flux), pulse clarity, RMS dynamic range and the low-energy frame ratio.
"""

from __future__ import annotations

import librosa
import numpy as np

from music_pipeline.features.rhythm import Rhythm
from music_pipeline.features.spectra import N_MELS, N_MFCC, Spectra

EMBEDDING_DIM = 641
PITCH_CLASSES = ["C", "Cs", "D", "Ds", "E", "F", "Fs", "G", "Gs", "A", "As", "B"]
TONNETZ_DIMS = ["fifth_x", "fifth_y", "minor_x", "minor_y", "major_x", "major_y"]
MEL_STATS = ["mean", "p25", "p50", "p75"]
EXTRA_NAMES = [
    "onset_rate_per_s",
    "onset_strength_mean",
    "onset_strength_std",
    "pulse_clarity",
    "rms_dynamic_range_db",
    "low_energy_ratio",
]


def _build_names() -> list[tuple[str, str]]:
    """(name, group) for every dimension, in vector order."""
    out: list[tuple[str, str]] = []
    for stat in ("mean", "std", "delta_mean"):
        out += [(f"mfcc_{stat}_{i:02d}", "timbre") for i in range(1, N_MFCC + 1)]
    for stat in ("mean", "std"):
        out += [(f"chroma_{stat}_{pc}", "harmony") for pc in PITCH_CLASSES]
    for feat in ("spectral_centroid", "spectral_rolloff", "spectral_bandwidth"):
        out += [(f"{feat}_mean", "spectrum"), (f"{feat}_std", "spectrum")]
    for stat in ("mean", "std"):
        out += [(f"spectral_contrast_{stat}_b{b}", "spectrum") for b in range(1, 8)]
    out += [("spectral_flatness_mean", "spectrum"), ("spectral_flatness_std", "spectrum")]
    out += [("zcr_mean", "timbre"), ("zcr_std", "timbre"), ("tempo_bpm", "rhythm")]
    out += [("rms_mean", "energy"), ("rms_std", "energy")]
    for stat in ("mean", "std"):
        out += [(f"tonnetz_{stat}_{d}", "harmony") for d in TONNETZ_DIMS]
    for stat in MEL_STATS:
        out += [(f"mel_{stat}_{m:03d}", "spectrum") for m in range(N_MELS)]
    out += [(n, "energy" if n.startswith(("rms", "low_energy")) else "rhythm") for n in EXTRA_NAMES]
    return out


_NAMES_AND_GROUPS = _build_names()
FEATURE_NAMES: list[str] = [n for n, _ in _NAMES_AND_GROUPS]
FEATURE_GROUPS: dict[str, str] = dict(_NAMES_AND_GROUPS)
assert len(FEATURE_NAMES) == EMBEDDING_DIM == len(set(FEATURE_NAMES))


class InvalidEmbedding(ValueError):
    pass


def validate_embedding(vec: np.ndarray) -> np.ndarray:
    vec = np.asarray(vec)
    if vec.shape != (EMBEDDING_DIM,):
        raise InvalidEmbedding(f"embedding has shape {vec.shape}, expected ({EMBEDDING_DIM},)")
    bad = np.flatnonzero(~np.isfinite(vec))
    if bad.size:
        names = ", ".join(FEATURE_NAMES[i] for i in bad[:5])
        raise InvalidEmbedding(f"{bad.size} non-finite embedding values ({names}{'…' if bad.size > 5 else ''})")
    return vec


def _ms(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=-1), x.std(axis=-1)


def compute_embedding(spectra: Spectra, rhythm: Rhythm) -> np.ndarray:
    """The 641 values in ``FEATURE_NAMES`` order (float64), validated."""
    s = spectra
    mfcc_delta = librosa.feature.delta(s.mfcc, mode="nearest") if s.n_frames >= 3 else np.zeros_like(s.mfcc)
    tonnetz = librosa.feature.tonnetz(chroma=s.chroma, sr=s.sr)
    duration = s.n_samples / s.sr
    rms_db = librosa.amplitude_to_db(s.rms, ref=1.0, amin=1e-5)
    parts = [
        *_ms(s.mfcc),
        mfcc_delta.mean(axis=1),
        *_ms(s.chroma),
        *np.array([_ms(s.centroid), _ms(s.rolloff), _ms(s.bandwidth)]).reshape(-1, 1),
        *_ms(s.contrast),
        *_ms(s.flatness[None, :]),
        *_ms(s.zcr[None, :]),
        [rhythm.tempo_bpm],
        *_ms(s.rms[None, :]),
        *_ms(tonnetz),
        s.log_mel.mean(axis=1),
        *np.percentile(s.log_mel, [25, 50, 75], axis=1),
        [
            len(rhythm.onset_times) / duration,
            rhythm.onset_env.mean(),
            rhythm.onset_env.std(),
            rhythm.pulse_clarity,
            float(np.percentile(rms_db, 95) - np.percentile(rms_db, 5)),
            float(np.mean(s.rms < s.rms.mean())),
        ],
    ]
    vec = np.concatenate([np.atleast_1d(np.asarray(p, dtype=np.float64)).ravel() for p in parts])
    return validate_embedding(vec)

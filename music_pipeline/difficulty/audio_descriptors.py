"""Difficulty descriptors: what makes a track hard to perform or to follow, from the same pass.

Each descriptor has a family (structural complexity or performance intensity), a unit and a
formula, listed in ``DESCRIPTORS`` (and in the README). Frames quieter than 40 dB below the
track's loudest frame are left out of pitch and timbre statistics, so fades and gaps do not count
as "complexity".
"""

from __future__ import annotations

import librosa
import numpy as np

from music_pipeline.difficulty.descriptors import Descriptor
from music_pipeline.features.rhythm import Rhythm
from music_pipeline.features.spectra import CQT_BINS_PER_OCTAVE, Spectra

STRUCTURAL = "structural_complexity"
INTENSITY = "performance_intensity"


DESCRIPTORS: list[Descriptor] = [
    Descriptor(
        "pitch_range_semitones",
        STRUCTURAL,
        "semitones",
        "5th–95th percentile span of the strongest CQT bin per active frame",
    ),
    Descriptor(
        "timbral_variability",
        STRUCTURAL,
        "MFCC units/frame",
        "mean Euclidean distance between consecutive MFCC 2–13 frames (active frames)",
    ),
    Descriptor(
        "harmonic_change_rate",
        STRUCTURAL,
        "tonnetz units/s",
        "mean Euclidean distance between tonnetz frames 0.5 s apart, per second",
    ),
    Descriptor(
        "spectral_entropy", STRUCTURAL, "0–1", "mean Shannon entropy of each frame's power spectrum / log2(bins)"
    ),
    Descriptor(
        "onset_interval_entropy",
        STRUCTURAL,
        "bits",
        "Shannon entropy of the inter-onset-interval histogram (50 ms bins, ≤ 2 s)",
    ),
    Descriptor(
        "pitch_class_entropy",
        STRUCTURAL,
        "bits",
        "Shannon entropy of the time-averaged chroma distribution (max log2 12)",
    ),
    Descriptor("tempo_bpm", INTENSITY, "BPM", "librosa.feature.tempo on the onset envelope"),
    Descriptor("onset_density", INTENSITY, "onsets/s", "number of detected onsets / duration"),
    Descriptor("spectral_flatness", INTENSITY, "0–1", "mean spectral flatness (noisiness)"),
    Descriptor("rms_energy_db", INTENSITY, "dBFS", "20·log10 of the mean frame RMS"),
    Descriptor("dynamics_db", INTENSITY, "dB", "standard deviation of frame RMS in dB (active frames)"),
    Descriptor("high_freq_energy_ratio", INTENSITY, "0–1", "power above 4 kHz / total power"),
    Descriptor("spectral_spread_hz", INTENSITY, "Hz", "mean spectral bandwidth"),
]
DESCRIPTOR_NAMES = [d.name for d in DESCRIPTORS]
DESCRIPTOR_FAMILY = {d.name: d.family for d in DESCRIPTORS}


def _entropy_bits(p: np.ndarray) -> float:
    p = np.asarray(p, dtype=np.float64)
    total = p.sum()
    if total <= 0:
        return 0.0
    p = p[p > 0] / total
    return float(-(p * np.log2(p)).sum())


def compute_descriptors(spectra: Spectra, rhythm: Rhythm) -> dict[str, float]:
    s = spectra
    rms_db = librosa.amplitude_to_db(s.rms, ref=1.0, amin=1e-5)
    active = rms_db >= rms_db.max() - 40.0
    if active.sum() < 2:
        active = np.ones_like(active)

    ratio = s.n_frames / max(1, s.cqt.shape[1])
    cqt_active = active[np.minimum((np.arange(s.cqt.shape[1]) * ratio).astype(int), len(active) - 1)]
    if cqt_active.sum() < 2:
        cqt_active = np.ones_like(cqt_active)
    dominant = np.argmax(s.cqt[:, cqt_active], axis=0) * (12.0 / CQT_BINS_PER_OCTAVE)
    pitch_range = float(np.percentile(dominant, 95) - np.percentile(dominant, 5))

    mf = s.mfcc[1:13][:, active]
    timbral = float(np.linalg.norm(np.diff(mf, axis=1), axis=0).mean()) if mf.shape[1] > 1 else 0.0

    tonnetz = librosa.feature.tonnetz(chroma=s.chroma, sr=s.sr)
    lag = max(1, round(0.5 * s.cqt_frame_rate))
    if tonnetz.shape[1] > lag:
        harmonic = float(np.linalg.norm(tonnetz[:, lag:] - tonnetz[:, :-lag], axis=0).mean() / (lag / s.cqt_frame_rate))
    else:
        harmonic = 0.0

    ioi = np.diff(rhythm.onset_times)
    ioi = ioi[ioi <= 2.0]
    ioi_entropy = _entropy_bits(np.histogram(ioi, bins=40, range=(0.0, 2.0))[0]) if ioi.size else 0.0

    duration = s.n_samples / s.sr
    values = {
        "pitch_range_semitones": pitch_range,
        "timbral_variability": timbral,
        "harmonic_change_rate": harmonic,
        "spectral_entropy": float(s.spectral_entropy.mean()),
        "onset_interval_entropy": ioi_entropy,
        "pitch_class_entropy": _entropy_bits(s.chroma.mean(axis=1)),
        "tempo_bpm": rhythm.tempo_bpm,
        "onset_density": len(rhythm.onset_times) / duration,
        "spectral_flatness": float(s.flatness.mean()),
        "rms_energy_db": float(20 * np.log10(max(float(s.rms.mean()), 1e-5))),
        "dynamics_db": float(rms_db[active].std()),
        "high_freq_energy_ratio": float(s.hf_ratio.mean()),
        "spectral_spread_hz": float(s.bandwidth.mean()),
    }
    for name, v in values.items():
        if not np.isfinite(v):
            raise ValueError(f"difficulty descriptor {name} is not finite ({v})")
    return values

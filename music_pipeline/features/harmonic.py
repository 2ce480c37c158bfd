"""The harmonic sequence of a track: its chroma averaged between beats, one unit-length column of
12 pitch-class values per beat (a faster performance of the same music gives the same sequence).

A by-product of the 641-D extraction: ``sequence_of_spectra`` takes the chroma (hop ``CQT_HOP``),
the onset envelope and the tempo the extraction computed and adds only a beat tracking
(``librosa.beat.beat_track`` on that envelope) and a ``librosa.util.sync``. The features pass
stores it per content hash beside the features (``SequenceStore``)::

    <data>/harmonic_sequences/<version>/<content-hash>.npz   sequence (12, beats) float16

What compares two sequences (``music-pipeline versions``): ``identity/versions.py``.
"""

from __future__ import annotations

import numpy as np

from music_pipeline.artifacts import read_npz
from music_pipeline.content_store import ContentStore

# Bump when the sequence of the same audio changes: the next build recomputes the sequences only
# (the stored features are kept; the features pass decodes those tracks once more).
SEQUENCE_VERSION = "v1"
MAX_BEATS = 1500  # ~10 min at 150 bpm; a longer track keeps its first MAX_BEATS beats
MIN_BEATS = 8  # fewer beats tracked (silence, no pulse): a column every GRID_FRAMES instead
GRID_FRAMES = 5  # ~0.46 s of chroma frames


def _unit_columns(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=0, keepdims=True)
    return np.where(norm > 1e-9, x / np.where(norm > 1e-9, norm, 1.0), 0.0)


def harmonic_sequence(chroma: np.ndarray, beat_frames: np.ndarray) -> np.ndarray:
    """(12, beats) float16: ``chroma`` (12, T) averaged between ``beat_frames`` (frame indices of
    ``chroma``), each column of unit length."""
    import librosa

    chroma = np.asarray(chroma, dtype=np.float32)
    t = chroma.shape[1]
    beats = np.unique(np.clip(np.asarray(beat_frames, dtype=int), 0, t))
    if len(beats) < MIN_BEATS:
        beats = np.arange(0, t, GRID_FRAMES)
    seq = librosa.util.sync(chroma, beats, aggregate=np.mean)
    return _unit_columns(seq[:, :MAX_BEATS]).astype(np.float16)


def sequence_of_spectra(spectra, rhythm) -> np.ndarray:
    """The harmonic sequence from what the extraction computed (``features.spectra.Spectra`` and
    ``features.rhythm.Rhythm``)."""
    import librosa

    from music_pipeline.features.spectra import CQT_HOP

    _tempo, beats = librosa.beat.beat_track(
        onset_envelope=rhythm.onset_env, sr=spectra.sr, hop_length=spectra.hop, bpm=rhythm.tempo_bpm, units="frames"
    )
    return harmonic_sequence(spectra.chroma, np.asarray(beats, dtype=int) * spectra.hop // CQT_HOP)


def sequence_of_signal(y: np.ndarray, sr: int) -> np.ndarray:
    """The same sequence from a decoded signal (a file outside the library, or a track whose
    features were stored before the sequences existed)."""
    from music_pipeline.features.rhythm import compute_rhythm
    from music_pipeline.features.spectra import compute_spectra

    spectra = compute_spectra(y, sr)
    return sequence_of_spectra(spectra, compute_rhythm(spectra))


class SequenceStore(ContentStore):
    """Per-content-hash harmonic sequences under ``<data>/harmonic_sequences/<version>/``."""

    kind = "harmonic_sequences"

    def __init__(self, data_dir):
        super().__init__(data_dir, SEQUENCE_VERSION)

    def save(self, content_hash: str, sequence: np.ndarray):
        return self.save_arrays(content_hash, {"sequence": np.asarray(sequence, dtype=np.float16)})

    def load(self, content_hash: str) -> np.ndarray:
        seq = read_npz(self.path(content_hash))["sequence"]
        if seq.ndim != 2 or seq.shape[0] != 12:
            raise ValueError(f"stored harmonic sequence of {content_hash} has the wrong shape {seq.shape}")
        return seq

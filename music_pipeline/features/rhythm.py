"""Onset envelope, tempo, onsets and pulse clarity from the log-mel spectrogram (no second STFT)."""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

from music_pipeline.features.spectra import Spectra

MIN_BPM, MAX_BPM = 40.0, 240.0
TEMPOGRAM_WIN = 384  # librosa's default autocorrelation window (frames)
_TEMPOGRAM_CHUNK = 16384  # ~6 min of frames: one chunk for a typical track, ~60 MB of tempogram


def mean_tempogram(env: np.ndarray, sr: int, hop: int) -> np.ndarray:
    """Time-averaged autocorrelation tempogram: the mean over frames of
    ``librosa.feature.tempogram(onset_envelope=env, win_length=TEMPOGRAM_WIN)`` (pinned by a test),
    built from librosa's own pieces in chunks of frames. The full tempogram is a (window × frames)
    float64 matrix (~1.5 GB for an hour of audio), and its max-normalisation writes a second one;
    here each frame's 1/max scale is folded into one matrix-vector product per chunk instead."""
    half = TEMPOGRAM_WIN // 2
    n = len(env)
    padded = np.pad(env, half, mode="linear_ramp", end_values=[0, 0])  # tempogram(center=True)
    window = librosa.filters.get_window("hann", TEMPOGRAM_WIN, fftbins=True)
    tiny = np.finfo(np.float64).tiny  # util.normalize leaves columns below this unscaled
    total = np.zeros(TEMPOGRAM_WIN)
    for c0 in range(0, n, _TEMPOGRAM_CHUNK):
        c1 = min(n, c0 + _TEMPOGRAM_CHUNK)
        # frames as rows (frames × lag): the FFTs then run along contiguous memory
        frames = librosa.util.frame(padded[c0 : c1 + TEMPOGRAM_WIN - 1], frame_length=TEMPOGRAM_WIN, hop_length=1).T
        ac = librosa.autocorrelate(frames * window, axis=-1)
        peak = np.abs(ac).max(axis=1)
        total += np.where(peak < tiny, 1.0, 1.0 / np.where(peak < tiny, 1.0, peak)) @ ac
    return (total / n)[:, None]


@dataclass
class Rhythm:
    onset_env: np.ndarray  # (T,)
    tempo_bpm: float
    onset_times: np.ndarray  # seconds
    pulse_clarity: float  # 0..1: height of the strongest periodicity in the onset envelope


def compute_rhythm(spectra: Spectra) -> Rhythm:
    sr, hop = spectra.sr, spectra.hop
    # clamp to 80 dB below the loudest bin, as power_to_db(ref=np.max) does in librosa's usual recipe
    log_mel = np.maximum(spectra.log_mel, spectra.log_mel.max() - 80.0)
    env = librosa.onset.onset_strength(S=log_mel, sr=sr, hop_length=hop).astype(np.float32)
    tg = mean_tempogram(env, sr, hop)
    tempo = librosa.feature.tempo(tg=tg, sr=sr, hop_length=hop).item()
    onset_frames = librosa.onset.onset_detect(onset_envelope=env, sr=sr, hop_length=hop, units="frames")
    times = librosa.frames_to_time(onset_frames, sr=sr, hop_length=hop)
    centred = env - env.mean()
    ac = librosa.autocorrelate(centred)
    lo = round(60.0 / MAX_BPM * spectra.frame_rate)
    hi = min(len(ac) - 1, round(60.0 / MIN_BPM * spectra.frame_rate))
    clarity = float(np.max(ac[lo : hi + 1]) / ac[0]) if ac[0] > 0 and hi > lo else 0.0
    return Rhythm(onset_env=env, tempo_bpm=float(tempo), onset_times=times, pulse_clarity=max(0.0, clarity))

"""128×128 log-mel excerpts from evenly spaced positions (beginning, middle, end by default)."""

from __future__ import annotations

import numpy as np

from music_pipeline.features.spectra import N_MELS, Spectra

SEGMENT_FRAMES = 128  # ~2.97 s at hop 512 / 22.05 kHz
DEFAULT_SEGMENTS = 3


def segment_positions(n: int) -> list[str]:
    if n == 3:
        return ["begin", "middle", "end"]
    return [f"pos{i}" for i in range(n)]


def segment_starts(n_frames: int, n_segments: int = DEFAULT_SEGMENTS, frames: int = SEGMENT_FRAMES) -> list[int]:
    last = max(0, n_frames - frames)
    if n_segments == 1:
        return [last // 2]
    return [round(i * last / (n_segments - 1)) for i in range(n_segments)]


def extract_segments(spectra: Spectra, n_segments: int = DEFAULT_SEGMENTS, frames: int = SEGMENT_FRAMES) -> np.ndarray:
    """(n_segments, 128, frames) float16 log-mel in dB; short tracks are edge-padded."""
    mel = spectra.log_mel
    if mel.shape[1] < frames:
        mel = np.pad(mel, ((0, 0), (0, frames - mel.shape[1])), mode="edge")
    out = np.stack([mel[:, s : s + frames] for s in segment_starts(mel.shape[1], n_segments, frames)])
    assert out.shape == (n_segments, N_MELS, frames)
    return out.astype(np.float16)

"""Synthesized audio of known content: tones, click tracks, noise, and a small styled library.

Used by the tests (audio with known pitch and tempo) and by the demo when Debian's music
packages cannot be fetched. Deterministic: every generator takes a seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22_050


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def clicks(
    bpm: float, seconds: float, sr: int = SR, amp: float = 0.9, click_ms: float = 10.0, freq: float = 1500.0
) -> np.ndarray:
    y = np.zeros(int(seconds * sr), np.float32)
    n = int(click_ms / 1000 * sr)
    burst = (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr) * np.hanning(n)).astype(np.float32)
    for start in np.arange(0, seconds, 60.0 / bpm):
        i = int(start * sr)
        y[i : i + n] += burst[: len(y) - i]
    return y


def noise(seconds: float, sr: int = SR, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def _note(freq: float, seconds: float, sr: int, decay: float, harmonics: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = sum((0.6**h) * np.sin(2 * np.pi * freq * (h + 1) * t) for h in range(harmonics))
    return (y * np.exp(-t / decay)).astype(np.float32)


STYLES = {
    # name: (bpm, notes (Hz), note decay s, harmonics, noise level, kick)
    "pulse": (128, [55.0, 55.0, 65.4, 73.4], 0.15, 2, 0.05, True),
    "drone": (60, [220.0, 277.2, 329.6], 3.0, 6, 0.01, False),
    "arpeggio": (100, [523.3, 659.3, 784.0, 1046.5], 0.3, 3, 0.0, False),
    "noise_rock": (170, [98.0, 110.0, 146.8], 0.2, 8, 0.25, True),
}


def styled_track(style: str, seconds: float = 20.0, seed: int = 0, sr: int = SR) -> np.ndarray:
    bpm, notes, decay, harmonics, noise_level, kick = STYLES[style]
    rng = np.random.default_rng(seed)
    y = np.zeros(int(seconds * sr), np.float32)
    beat = 60.0 / bpm
    transpose = 2 ** (rng.integers(-2, 3) / 12)
    for i, start in enumerate(np.arange(0, seconds, beat / (1 if style == "drone" else 2))):
        f = notes[(i + rng.integers(0, len(notes))) % len(notes)] * transpose
        n = _note(f, min(decay * 4, seconds - start), sr, decay, harmonics)
        j = int(start * sr)
        y[j : j + len(n)] += 0.3 * n[: len(y) - j]
    if kick:
        y += 0.6 * clicks(bpm, seconds, sr, freq=60.0, click_ms=80)
    if noise_level:
        y += noise(seconds, sr, noise_level, seed=seed + 1)
    return (0.8 * y / max(1e-6, np.abs(y).max())).astype(np.float32)


def write_styled_library(root: Path, per_style: int = 6, seconds: float = 20.0) -> list[Path]:
    """``root/<style>/<style>_<i>.<ext>`` in several formats; label = style (first-level folder)."""
    paths = []
    exts = ["wav", "flac", "ogg"]
    for s_idx, style in enumerate(STYLES):
        for i in range(per_style):
            p = Path(root) / style / f"{style}_{i:02d}.{exts[i % len(exts)]}"
            p.parent.mkdir(parents=True, exist_ok=True)
            sf.write(p, styled_track(style, seconds, seed=100 * s_idx + i), SR)
            paths.append(p)
    return paths

"""Pieces of known complexity, generated as note lists, and a simple synthesizer to hear them.

Used by the tests (transcription accuracy, invariance of the PDI to loudness and timbre) and by
``benchmarks/bench_difficulty.py`` (a generated collection of the reference set). Deterministic:
every generator takes a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from music_pipeline.notes.events import NoteEvents

SR = 22_050
MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])


@dataclass(frozen=True)
class PieceSpec:
    """What a generated piece is made of (each a knob of difficulty)."""

    seconds: float = 20.0
    onsets_per_s: float = 2.0  # rate of the melody's note onsets
    voices: int = 1  # 1 = a melody; more = that many notes per chord on some onsets
    chord_share: float = 0.0  # share of melody onsets that carry a chord of ``voices`` notes
    range_semitones: int = 12  # the melody moves within this span
    irregularity: float = 0.0  # 0 = even notes; 1 = durations drawn from 5 values
    centre: int = 64  # MIDI pitch in the middle of the range
    seed: int = 0


def generate_piece(spec: PieceSpec) -> NoteEvents:
    """A melody on a major scale with chords under some of its onsets (all in one span)."""
    rng = np.random.default_rng(spec.seed)
    beat = 1.0 / spec.onsets_per_s
    choices = beat * np.array([0.5, 0.75, 1.0, 1.5, 2.0])
    lo, hi = spec.centre - spec.range_semitones // 2, spec.centre + (spec.range_semitones + 1) // 2
    scale = np.array([p for p in range(lo, hi + 1) if (p % 12) in MAJOR])
    onset, offset, pitch = [], [], []
    t, idx = 0.2, len(scale) // 2
    while t < spec.seconds - 0.3:
        dur = beat if rng.random() >= spec.irregularity else float(rng.choice(choices))
        dur = max(dur, 0.09)
        step = int(rng.choice([-2, -1, 1, 2])) if len(scale) > 1 else 0
        if rng.random() < 0.15:  # an occasional leap across the range
            idx = int(rng.integers(0, len(scale)))
        else:
            idx = int(np.clip(idx + step, 0, len(scale) - 1))
        top = int(scale[idx])
        notes = [top]
        if spec.voices > 1 and rng.random() < spec.chord_share:
            below = [p for p in range(top - 1, top - 25, -1) if (p % 12) in MAJOR][::2][: spec.voices - 1]
            notes += below
        end = min(t + 0.9 * dur, spec.seconds)
        for p in notes:
            onset.append(t)
            offset.append(end)
            pitch.append(p)
        t += dur
    return NoteEvents(np.array(onset), np.array(offset), np.array(pitch), np.ones(len(onset)), [[0.0, spec.seconds]])


def render(
    notes: NoteEvents,
    seconds: float | None = None,
    sr: int = SR,
    brightness: float = 0.5,
    gain_db: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Additive synthesis: each note 8 harmonics with amplitude ``brightness**h`` (0.3 dark …
    0.8 bright), a 5 ms attack and an exponential decay; peak at −6 dBFS + ``gain_db``.
    A little noise (−70 dB) keeps the signal from being digitally silent between notes."""
    seconds = (
        seconds
        if seconds is not None
        else (float(notes.spans[:, 1].max()) if len(notes.spans) else float(notes.offset.max(initial=1.0)) + 0.5)
    )
    y = np.zeros(int(seconds * sr) + 1, np.float64)
    harmonics = np.arange(1, 9)
    weights = brightness ** (harmonics - 1)
    for on, off, p in zip(notes.onset, notes.offset, notes.pitch, strict=True):
        f0 = 440.0 * 2 ** ((int(p) - 69) / 12)
        n = int((off - on) * sr)
        i = int(on * sr)
        if n <= 0 or i >= len(y):
            continue
        n = min(n, len(y) - i)
        t = np.arange(n) / sr
        partials = harmonics[harmonics * f0 < 0.45 * sr]
        wave = (weights[: len(partials), None] * np.sin(2 * np.pi * f0 * partials[:, None] * t)).sum(axis=0)
        env = np.minimum(1.0, t / 0.005) * np.exp(-t / 0.8)
        tail = np.minimum(1.0, (n - np.arange(n)) / (0.01 * sr))  # no click at the release
        y[i : i + n] += wave * env * tail
    y /= max(np.abs(y).max(), 1e-9)
    y = y * 10 ** ((-6.0 + gain_db) / 20)
    y += 10 ** ((-70.0 + gain_db) / 20) * np.random.default_rng(seed).standard_normal(len(y))
    return y.astype(np.float32)

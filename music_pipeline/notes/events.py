"""Note events: the arrays every part of ``notes/`` passes around, and their MIDI and npz forms."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class NoteEvents:
    """Notes heard (or written) in a piece, in seconds from its start.

    ``spans`` are the stretches of the piece the notes describe, (k, 2) start/end seconds: a
    transcription covers excerpts spread over the track, a score covers its whole length. Rates
    (notes per second …) are per second of span, and intervals between notes are only measured
    inside a span.
    """

    onset: np.ndarray  # (n,) float64 s
    offset: np.ndarray  # (n,) float64 s, > onset
    pitch: np.ndarray  # (n,) int16 MIDI
    confidence: np.ndarray  # (n,) float32 0–1 (model activation; 1 for score notes)
    spans: np.ndarray  # (k, 2) float64 s

    def __post_init__(self):
        self.onset = np.asarray(self.onset, np.float64).reshape(-1)
        self.offset = np.asarray(self.offset, np.float64).reshape(-1)
        self.pitch = np.asarray(self.pitch, np.int16).reshape(-1)
        self.confidence = np.asarray(self.confidence, np.float32).reshape(-1)
        self.spans = np.asarray(self.spans, np.float64).reshape(-1, 2)
        n = len(self.onset)
        if not (len(self.offset) == len(self.pitch) == len(self.confidence) == n):
            raise ValueError("onset, offset, pitch and confidence need the same length")
        order = np.lexsort((self.pitch, self.onset))  # by time, then pitch: deterministic
        self.onset, self.offset, self.pitch, self.confidence = (
            a[order] for a in (self.onset, self.offset, self.pitch, self.confidence)
        )

    def __len__(self) -> int:
        return len(self.onset)

    @property
    def covered_s(self) -> float:
        return float(np.sum(self.spans[:, 1] - self.spans[:, 0])) if len(self.spans) else 0.0

    def in_span(self, k: int) -> np.ndarray:
        """Indices of the notes whose onset lies in span ``k``."""
        a, b = self.spans[k]
        return np.flatnonzero((self.onset >= a) & (self.onset < b))

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {
            f"{prefix}onset": self.onset,
            f"{prefix}offset": self.offset,
            f"{prefix}pitch": self.pitch,
            f"{prefix}confidence": self.confidence,
            f"{prefix}spans": self.spans,
        }

    @classmethod
    def from_arrays(cls, z, prefix: str = "") -> NoteEvents:
        return cls(
            z[f"{prefix}onset"],
            z[f"{prefix}offset"],
            z[f"{prefix}pitch"],
            z[f"{prefix}confidence"],
            z[f"{prefix}spans"],
        )

    @classmethod
    def empty(cls, spans=()) -> NoteEvents:
        return cls(
            np.zeros(0),
            np.zeros(0),
            np.zeros(0, np.int16),
            np.zeros(0, np.float32),
            np.asarray(spans, np.float64).reshape(-1, 2),
        )


def read_midi(path: str | Path, drop_drums: bool = True) -> NoteEvents:
    """The notes of a MIDI file (pretty_midi resolves tempo changes to seconds); one span from 0
    to the end of the last note. Percussion channels carry no pitches and are dropped."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(path))
    notes = [n for inst in pm.instruments if not (drop_drums and inst.is_drum) for n in inst.notes if n.end > n.start]
    onset = np.array([n.start for n in notes])
    offset = np.array([n.end for n in notes])
    end = float(offset.max()) if len(notes) else 0.0
    return NoteEvents(
        onset, offset, np.array([n.pitch for n in notes]), np.ones(len(notes)), [[0.0, end]] if len(notes) else []
    )


def write_midi(notes: NoteEvents, dest: str | Path, program: int = 0, tempo_bpm: float = 120.0) -> Path:
    """A one-instrument MIDI file of ``notes`` (velocity from confidence), written atomically."""
    import pretty_midi

    from music_pipeline.artifacts import atomic_path

    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo_bpm)
    inst = pretty_midi.Instrument(program=program, name="transcription")
    for on, off, p, c in zip(notes.onset, notes.offset, notes.pitch, notes.confidence, strict=True):
        velocity = int(np.clip(np.round(40 + 87 * float(c)), 1, 127))
        inst.notes.append(pretty_midi.Note(velocity=velocity, pitch=int(p), start=float(on), end=float(off)))
    pm.instruments.append(inst)
    dest = Path(dest)
    with atomic_path(dest, suffix=".mid") as tmp:
        pm.write(str(tmp))
    return dest

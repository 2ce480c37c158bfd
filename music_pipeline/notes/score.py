"""Symbolic complexity of a score: the reference the PDI is checked against.

Four measures, taken on the written notes (``NoteEvents`` read from MIDI, percussion dropped),
and their composite. They are deliberately plain — the same kinds of quantity an outside check
measures on scores — and they are *not* what the PDI computes from audio: the PDI hears notes
through a transcription and is never given these values.

=========================  ================================================================
measure                    formula
=========================  ================================================================
notes_per_s                notes / (last offset − first onset), s
mean_polyphony             mean number of sounding notes over the sounding instants (10 ms)
pitch_range                highest − lowest MIDI pitch, semitones
rhythmic_irregularity      entropy (bits) of the inter-onset intervals between successive
                           onsets (chord notes within 50 ms merged), 1/3-octave bins 50 ms–2 s
composite                  mean of the four z-scores over the pieces compared, notes_per_s as
                           log(notes/s) (it spans two orders of magnitude)
=========================  ================================================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from music_pipeline.difficulty.note_descriptors import group_onsets, intervals, ioi_entropy, sounding_counts
from music_pipeline.notes.events import NoteEvents

SYMBOLIC_MEASURES = ["notes_per_s", "mean_polyphony", "pitch_range", "rhythmic_irregularity"]


def symbolic_measures(notes: NoteEvents) -> dict[str, float]:
    if not len(notes):
        raise ValueError("a score without notes has no complexity")
    first, last = float(notes.onset.min()), float(notes.offset.max())
    whole = NoteEvents(notes.onset, notes.offset, notes.pitch, notes.confidence, [[first, last + 1e-9]])
    counts = sounding_counts(whole)
    ioi, _ = intervals(group_onsets(whole))
    return {
        "notes_per_s": len(notes) / max(last - first, 1e-3),
        "mean_polyphony": float(counts[counts > 0].mean()) if (counts > 0).any() else 0.0,
        "pitch_range": float(notes.pitch.max() - notes.pitch.min()),
        "rhythmic_irregularity": ioi_entropy(ioi),
    }


def complexity_composite(measures: pd.DataFrame) -> pd.Series:
    """Mean z-score of the four measures over the rows given (log notes/s)."""
    m = measures[SYMBOLIC_MEASURES].astype(np.float64).copy()
    m["notes_per_s"] = np.log(m["notes_per_s"])
    z = (m - m.mean()) / m.std(ddof=0).replace(0.0, 1.0)
    return z.mean(axis=1).rename("complexity")

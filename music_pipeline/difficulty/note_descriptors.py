"""Note descriptors: how many notes, how many at once, how far apart, how irregular.

Computed from ``NoteEvents`` (a transcription or a score) inside their spans. Notes whose onsets
lie within ``CHORD_S`` (75 ms) of each other form one *onset* (a chord, or one hand's arpeggio played as
a block); a *sounding* instant is one where at least one note sounds. Every descriptor is listed
in ``NOTE_DESCRIPTORS`` with its family, unit and formula (the README's table is this list).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from music_pipeline.difficulty.descriptors import Descriptor
from music_pipeline.notes.events import NoteEvents

# Onsets closer than this are one onset: slow attacks (strings, organ, a room) stagger the onsets
# the transcription reads for one chord (bench_instruments.py: 50 ms split them; 75 ms and 100 ms
# did as well as each other, and 75 ms still keeps runs of 13 notes/s apart)
CHORD_S = 0.075
GRID_S = 0.01  # polyphony is sampled every 10 ms
IOI_MIN_S, IOI_MAX_S = 0.05, 2.0
IOI_BINS_PER_OCTAVE = 3
FAST_IOI_S = 0.15  # onsets this close or closer are "fast" (≥ 6.7 onsets/s)
FAST_RUN_LEN = 3  # … when at least 3 such intervals follow each other (4+ notes)

DENSITY, POLYPHONY, PITCH, RHYTHM = "density", "polyphony", "pitch", "rhythm"
NOTE_FAMILIES = (DENSITY, POLYPHONY, PITCH, RHYTHM)


NOTE_DESCRIPTORS: list[Descriptor] = [
    Descriptor("notes_per_s", DENSITY, "notes/s", "notes / seconds covered"),
    Descriptor("onset_rate", DENSITY, "onsets/s", "onsets (notes starting within 75 ms merged) / seconds covered"),
    Descriptor(
        "fast_run_share",
        DENSITY,
        "0–1",
        "share of inter-onset intervals ≤ 150 ms that belong to a run of ≥ 3 such intervals",
    ),
    Descriptor(
        "mean_polyphony", POLYPHONY, "notes", "mean number of sounding notes over the sounding instants (10 ms grid)"
    ),
    Descriptor(
        "peak_polyphony",
        POLYPHONY,
        "notes",
        "95th percentile of the number of sounding notes over the sounding instants",
    ),
    Descriptor("chord_size", POLYPHONY, "notes", "mean number of notes per onset"),
    Descriptor(
        "chord_span",
        POLYPHONY,
        "semitones",
        "mean highest − lowest pitch of the onsets with ≥ 2 notes (0 without chords)",
    ),
    Descriptor("pitch_range", PITCH, "semitones", "98th − 2nd percentile of the notes' MIDI pitches"),
    Descriptor("melodic_leap", PITCH, "semitones", "mean |Δ| of the highest pitch between consecutive onsets"),
    Descriptor(
        "note_pitch_class_entropy",
        PITCH,
        "bits",
        "Shannon entropy of the notes' pitch-class histogram (max log2 12 = 3.58)",
    ),
    Descriptor(
        "ioi_entropy", RHYTHM, "bits", "Shannon entropy of the inter-onset intervals (50 ms–2 s) in 1/3-octave bins"
    ),
    Descriptor("ioi_cv", RHYTHM, "ratio", "standard deviation / mean of the inter-onset intervals (50 ms–2 s)"),
]
NOTE_DESCRIPTOR_NAMES = [d.name for d in NOTE_DESCRIPTORS]
NOTE_DESCRIPTOR_FAMILY = {d.name: d.family for d in NOTE_DESCRIPTORS}


def _entropy_bits(counts: np.ndarray) -> float:
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    if total <= 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


@dataclass
class Onsets:
    """Notes grouped into onsets, per span (intervals are never measured across spans)."""

    time: np.ndarray  # (m,) first onset of each group
    size: np.ndarray  # (m,) notes in the group
    top: np.ndarray  # (m,) highest pitch
    bottom: np.ndarray  # (m,) lowest pitch
    span: np.ndarray  # (m,) span index


def group_onsets(notes: NoteEvents, chord_s: float = CHORD_S) -> Onsets:
    time, size, top, bottom, span = [], [], [], [], []
    for k in range(len(notes.spans)):
        idx = notes.in_span(k)
        if not len(idx):
            continue
        on, p = notes.onset[idx], notes.pitch[idx].astype(np.int64)
        # a new group wherever the gap to the group's first onset would exceed chord_s
        starts = [0]
        for i in range(1, len(on)):
            if on[i] - on[starts[-1]] > chord_s:
                starts.append(i)
        bounds = starts + [len(on)]
        for a, b in itertools.pairwise(bounds):
            time.append(on[a])
            size.append(b - a)
            top.append(p[a:b].max())
            bottom.append(p[a:b].min())
            span.append(k)
    return Onsets(
        np.array(time, np.float64),
        np.array(size, np.int64),
        np.array(top, np.int64),
        np.array(bottom, np.int64),
        np.array(span, np.int64),
    )


def sounding_counts(notes: NoteEvents, grid_s: float = GRID_S) -> np.ndarray:
    """Number of sounding notes at each grid instant of the spans."""
    counts = []
    on, off = np.sort(notes.onset), np.sort(notes.offset)
    for a, b in notes.spans:
        t = np.arange(a, b, grid_s)
        counts.append(np.searchsorted(on, t, side="right") - np.searchsorted(off, t, side="right"))
    return np.concatenate(counts) if counts else np.zeros(0, np.int64)


def intervals(onsets: Onsets) -> tuple[np.ndarray, np.ndarray]:
    """(inter-onset intervals, |Δ top pitch|) between consecutive onsets of the same span."""
    same = onsets.span[1:] == onsets.span[:-1]
    return np.diff(onsets.time)[same], np.abs(np.diff(onsets.top))[same]


def fast_run_share(ioi: np.ndarray, fast_s: float = FAST_IOI_S, run_len: int = FAST_RUN_LEN) -> float:
    if not len(ioi):
        return 0.0
    fast = ioi <= fast_s
    in_run = np.zeros(len(ioi), bool)
    i = 0
    while i < len(fast):
        if fast[i]:
            j = i
            while j < len(fast) and fast[j]:
                j += 1
            if j - i >= run_len:
                in_run[i:j] = True
            i = j
        else:
            i += 1
    return float(in_run.mean())


def ioi_entropy(ioi: np.ndarray) -> float:
    ioi = ioi[(ioi >= IOI_MIN_S) & (ioi <= IOI_MAX_S)]
    if not len(ioi):
        return 0.0
    n_bins = int(np.ceil(np.log2(IOI_MAX_S / IOI_MIN_S) * IOI_BINS_PER_OCTAVE))
    edges = IOI_MIN_S * 2.0 ** (np.arange(n_bins + 1) / IOI_BINS_PER_OCTAVE)
    return _entropy_bits(np.histogram(np.clip(ioi, IOI_MIN_S, edges[-1]), bins=edges)[0])


def note_descriptors(notes: NoteEvents, chord_s: float = CHORD_S) -> dict[str, float]:
    """Every descriptor of ``NOTE_DESCRIPTORS`` (0 where there is nothing to measure)."""
    covered = notes.covered_s
    if covered <= 0:
        raise ValueError("the notes cover no time (no spans)")
    on = group_onsets(notes, chord_s)
    ioi, leaps = intervals(on)
    counts = sounding_counts(notes)
    sounding = counts[counts > 0]
    chords = on.size >= 2
    ioi_kept = ioi[(ioi >= IOI_MIN_S) & (ioi <= IOI_MAX_S)]
    pitches = notes.pitch.astype(np.float64)
    values = {
        "notes_per_s": len(notes) / covered,
        "onset_rate": len(on.time) / covered,
        "fast_run_share": fast_run_share(ioi),
        "mean_polyphony": float(sounding.mean()) if len(sounding) else 0.0,
        "peak_polyphony": float(np.percentile(sounding, 95)) if len(sounding) else 0.0,
        "chord_size": float(on.size.mean()) if len(on.size) else 0.0,
        "chord_span": float((on.top - on.bottom)[chords].mean()) if chords.any() else 0.0,
        "pitch_range": float(np.percentile(pitches, 98) - np.percentile(pitches, 2)) if len(pitches) else 0.0,
        "melodic_leap": float(leaps.mean()) if len(leaps) else 0.0,
        "note_pitch_class_entropy": _entropy_bits(np.bincount(notes.pitch.astype(np.int64) % 12, minlength=12))
        if len(notes)
        else 0.0,
        "ioi_entropy": ioi_entropy(ioi),
        "ioi_cv": float(ioi_kept.std() / ioi_kept.mean()) if len(ioi_kept) > 1 else 0.0,
    }
    for name, v in values.items():
        if not np.isfinite(v):
            raise ValueError(f"note descriptor {name} is not finite ({v})")
    return {n: float(values[n]) for n in NOTE_DESCRIPTOR_NAMES}

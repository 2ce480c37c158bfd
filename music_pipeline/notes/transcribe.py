"""Polyphonic transcription: audio → note events, with basic-pitch's ICASSP-2022 model on onnxruntime.

The model is ``nmp.onnx`` from the basic-pitch 0.4.0 wheel (Apache-2.0), fetched once by
``music_pipeline.pretrained`` and checked against the SHA-256 pins below; basic-pitch itself is
never installed or imported (it would pull TensorFlow < 2.15.1, which cannot sit beside this
stack), and nothing here imports TensorFlow. Its pre-processing and note creation are ported in
``basic_pitch_port.py``.

Cost is bounded per track: at most ``max_seconds`` of audio are transcribed, as ``excerpts``
stretches spread evenly over the track (a shorter track is transcribed whole), so a full-length
track costs about the same as a one-minute one. Before the model, the track is brought to one
loudness (its 95th-percentile 93 ms RMS to −20 dBFS): the model min–max normalises each window's
log-CQT against a fixed floor, so without this a quieter render of the same music gives other
activations, and other notes.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from music_pipeline import pretrained
from music_pipeline.notes import basic_pitch_port as bp
from music_pipeline.notes.events import NoteEvents

SR = bp.AUDIO_SAMPLE_RATE
MODEL_MEMBER = "basic_pitch/saved_models/icassp_2022/nmp.onnx"
MODEL_SHA256 = "2c3c1d144bfa61ad236e92e169c13535c880469a12a047d4e73451f2c059a0ec"
NOTES_MODEL = pretrained.with_files(pretrained.BASIC_PITCH, {MODEL_MEMBER: MODEL_SHA256})

TARGET_LEVEL_DB = -20.0
LEVEL_PERCENTILE = 95.0
LEVEL_BLOCK = 2048  # 93 ms at 22.05 kHz
# Windows per onnxruntime call. The windows of all a track's excerpts go through in one stream of
# calls of this size. Measured on one core (60 s, 36 windows, benchmarks/bench_passes.py): 1–4
# windows per call cost the same, 8–36 cost 2–6 % more CPU (the activations are bit-identical
# for every batch size).
BATCH_WINDOWS = 4
# Ghost notes: on bright timbres the model also reports strong overtones (octave, twelfth, double
# octave, …) of a note as notes. A note is dropped as an overtone when a note this many semitones
# below is already sounding when it starts (or starts ≤ 50 ms after it), covers half of it, and is
# clearly surer (confidence ratio below). Checked on real renders: bench_difficulty.py.
OVERTONE_INTERVALS = (12, 19, 24, 28, 31, 36)
OVERTONE_ONSET_S = 0.05
OVERTONE_LOOKBACK_S = 8.0  # longest parent note considered


@dataclass(frozen=True)
class NoteCreation:
    """How activations become notes: basic-pitch's thresholds, its "melodia trick" (notes found in
    the frame activations where no onset was detected) and the overtone filter above."""

    onset_threshold: float = bp.ONSET_THRESHOLD
    frame_threshold: float = bp.FRAME_THRESHOLD
    melodia_trick: bool = True
    overtone_confidence_ratio: float = 0.7
    # A held tone read as repeated notes (bowed strings, winds, organ: 27–34 % of their notes on the
    # development set across timbres, bench_instruments.py): a note of the same pitch that starts
    # ≤ this many frames after the previous one ends, with the tone sounding through (frame
    # activation ≥ the frame threshold at the join) and an onset weaker than
    # ``rearticulation_onset``, continues it. At 0.6 a re-struck piano key mostly keeps its own
    # note (0.8 joined 17 % of the correctly read piano notes into the one before; bench_instruments.py diagnose).
    rearticulation_gap_frames: int = 2  # < 0: off
    rearticulation_onset: float = 0.6


DEFAULT_NOTE_CREATION = NoteCreation()


@dataclass(frozen=True)
class Budget:
    """How much of a track is transcribed: ``excerpts`` equal stretches, ``max_seconds`` in all."""

    # 30 s in 3 excerpts, measured against 60 s in 6 on the difficulty reference (docs/difficulty.md):
    # ρ with symbolic complexity unchanged (+0.001, 95 % −0.020…+0.022) at half the transcription
    max_seconds: float = 30.0
    excerpts: int = 3

    def __post_init__(self):
        if self.max_seconds < 2 * self.excerpts * bp.WINDOW_HOP / SR or self.excerpts < 1:
            raise ValueError(
                f"need at least two model windows (3.3 s) per excerpt, got {self.max_seconds} s for {self.excerpts} excerpts"
            )

    @property
    def tag(self) -> str:
        return f"{self.max_seconds:g}s{self.excerpts}x"


DEFAULT_BUDGET = Budget()


def plan_excerpts(n_samples: int, budget: Budget = DEFAULT_BUDGET) -> list[tuple[int, int]]:
    """(start sample, model windows) of each excerpt; windows × 36,164 samples is its length."""
    total = int(budget.max_seconds * SR // bp.WINDOW_HOP)
    needed = max(1, math.ceil(n_samples / bp.WINDOW_HOP))
    if needed <= total:
        return [(0, needed)]
    per = total // budget.excerpts
    length = per * bp.WINDOW_HOP
    starts = [round((k + 0.5) * n_samples / budget.excerpts - length / 2) for k in range(budget.excerpts)]
    return [(min(max(s, 0), n_samples - length), per) for s in starts]


def loudness_gain_db(y: np.ndarray) -> float:
    """Gain that brings the 95th percentile of the 93 ms block RMS to −20 dBFS."""
    n = len(y) // LEVEL_BLOCK * LEVEL_BLOCK
    blocks = y[:n].reshape(-1, LEVEL_BLOCK) if n else y.reshape(1, -1)
    rms = np.sqrt(np.mean(np.square(blocks, dtype=np.float64), axis=1))
    level = 20 * np.log10(max(float(np.percentile(rms, LEVEL_PERCENTILE)), 1e-9))
    return TARGET_LEVEL_DB - level


def model_path(data_dir: str | os.PathLike | None = None, log=lambda msg: None) -> Path:
    """The verified local ``nmp.onnx`` (fetched from the package index on first use)."""
    return pretrained.ensure_files(NOTES_MODEL, data_dir, log) / MODEL_MEMBER


@dataclass
class Transcription:
    notes: NoteEvents
    duration_s: float  # of the whole track
    gain_db: float  # loudness normalisation applied before the model
    seconds: float  # compute time of the transcription (decode excluded)
    active_pitches: np.ndarray | None = None  # per model frame: pitches with frame activation ≥ 0.3


def drop_overtones(
    notes: NoteEvents, confidence_ratio: float = DEFAULT_NOTE_CREATION.overtone_confidence_ratio
) -> NoteEvents:
    """The notes without those that are overtones of a surer note below them (see above)."""
    n = len(notes)
    if n < 2:
        return notes
    keep = np.ones(n, bool)
    order = np.argsort(notes.onset, kind="stable")
    on, off, pitch, conf = (
        a[order] for a in (notes.onset, notes.offset, notes.pitch.astype(np.int64), notes.confidence)
    )
    starts = np.searchsorted(on, on - OVERTONE_LOOKBACK_S, side="left")
    ends = np.searchsorted(on, on + OVERTONE_ONSET_S, side="right")
    for i in range(n):
        for j in range(starts[i], ends[i]):
            if j == i or off[j] <= on[i] or pitch[i] - pitch[j] not in OVERTONE_INTERVALS:
                continue
            overlap = min(off[i], off[j]) - max(on[i], on[j])
            if overlap >= 0.5 * (off[i] - on[i]) and conf[i] < confidence_ratio * conf[j]:
                keep[i] = False
                break
    k = order[keep]
    return NoteEvents(notes.onset[k], notes.offset[k], notes.pitch[k], notes.confidence[k], notes.spans)


def default_threads() -> int:
    """Intra-op threads of a session outside the worker pool: every core this process may use.
    (The pool runs one worker per core, and each worker's session one thread: ``store._transcriber``.)"""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def session_options(threads: int = 1, spin: bool = False):
    """onnxruntime options of the transcription session, chosen by measurement (one core, 36
    windows; benchmarks/bench_passes.py):

    - graph optimisation ``ORT_ENABLE_ALL``: EXTENDED, BASIC and none each cost 21–25 % more CPU
      (and give activations up to 1.6e-4 apart from ALL's, which the notes were made with);
    - the CPU memory arena on (off: +0–9 %, noise) and sequential execution, one inter-op thread;
    - ``threads`` intra-op threads; no spin-waiting (``spin``): with 2 threads on a loaded 2-core
      machine the spinning threads burnt 22–28 % more CPU for a slower run, and with 1 thread it
      makes no difference. Two threads ran 1.86× faster (wall, same CPU) on an idle machine and
      give activations up to 9e-8 apart from one thread's (the same notes on the 10 synthesized
      tracks checked); the note store is always written with one thread per worker.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = True
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return opts


class Transcriber:
    """One onnxruntime session (opened on first use of ``session``) with ``threads`` intra-op
    threads: by default every core this process may use (``default_threads``); the worker pool
    passes 1, one per worker process."""

    def __init__(
        self,
        model_file: str | os.PathLike | None = None,
        threads: int | None = None,
        budget: Budget = DEFAULT_BUDGET,
        data_dir=None,
    ):
        self.model_file = Path(model_file) if model_file else None
        self.threads = threads or default_threads()
        self.budget = budget
        self.data_dir = data_dir
        self._session = None
        self._lock = threading.Lock()

    @property
    def session(self):
        return self.open()

    def open(self):
        """The session, opened now if it is not yet (a worker opens it before its first track)."""
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                path = self.model_file or model_path(self.data_dir)
                self._session = ort.InferenceSession(
                    str(path), session_options(self.threads), providers=["CPUExecutionProvider"]
                )
            return self._session

    def activations(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(frame, onset) activations of model windows, unwrapped to (windows × 142, 88)."""
        session = self.session
        frames, onsets = [], []
        for i in range(0, len(windows), BATCH_WINDOWS):
            note, onset = session.run(
                [bp.NOTE_OUTPUT, bp.ONSET_OUTPUT], {bp.INPUT_NAME: windows[i : i + BATCH_WINDOWS]}
            )
            frames.append(bp.unwrap(note))
            onsets.append(bp.unwrap(onset))
        return np.concatenate(frames), np.concatenate(onsets)

    def excerpt_activations(self, y: np.ndarray, sr: int = SR) -> Activations:
        """The model's frame and onset activations of each excerpt of the budget (loudness normalised)."""
        if sr != SR:
            raise ValueError(f"transcription needs {SR} Hz audio, got {sr}")
        y = np.asarray(y, np.float32)
        gain_db = loudness_gain_db(y)
        scaled = y * np.float32(10 ** (gain_db / 20))
        plan = plan_excerpts(len(y), self.budget)
        cut = [bp.excerpt_windows(scaled, start, n_windows) for start, n_windows in plan]
        # all windows of all excerpts in one stream of batched calls, then split per excerpt again
        all_frames, all_onsets = self.activations(np.concatenate([windows for windows, _ in cut]))
        excerpts = []
        first = 0
        for (start, n_windows), (_, times) in zip(plan, cut, strict=True):
            end = min(start + n_windows * bp.WINDOW_HOP, len(y))
            rows = slice(first, first + len(times))
            first += len(times)
            keep = times < end / SR  # frames past the excerpt (or the track) describe padding
            excerpts.append(
                ExcerptActivations(start / SR, end / SR, times[keep], all_frames[rows][keep], all_onsets[rows][keep])
            )
        return Activations(excerpts, len(y) / SR, float(gain_db))

    def transcribe(self, y: np.ndarray, sr: int = SR) -> Transcription:
        """Notes of a mono signal at 22,050 Hz (excerpts per the budget, loudness normalised)."""
        t0 = time.perf_counter()
        acts = self.excerpt_activations(y, sr)
        notes = notes_from_activations(acts)
        active = np.concatenate([(e.frames >= bp.FRAME_THRESHOLD).sum(axis=1).astype(np.int16) for e in acts.excerpts])
        return Transcription(notes, acts.duration_s, acts.gain_db, time.perf_counter() - t0, active)


@dataclass
class ExcerptActivations:
    """The model output over one excerpt: frame times (s, in the track) and (frames, 88) activations."""

    start_s: float
    end_s: float
    times: np.ndarray
    frames: np.ndarray
    onsets: np.ndarray


@dataclass
class Activations:
    excerpts: list[ExcerptActivations]
    duration_s: float  # of the whole track
    gain_db: float  # loudness normalisation applied before the model

    @property
    def spans(self) -> list[tuple[float, float]]:
        """(start, end) in seconds of each excerpt: the stretches of the track that were heard."""
        return [(e.start_s, e.end_s) for e in self.excerpts]


def merge_rearticulations(notes, frames: np.ndarray, onsets: np.ndarray, how: NoteCreation):
    """Join notes (start frame, end frame, MIDI pitch, amplitude) that re-articulate one held tone."""
    out = []
    for n in sorted(notes, key=lambda n: (n[2], n[0])):
        if out:
            s0, e0, p0, _ = out[-1]
            s, e, p, _ = n
            col = p - bp.MIDI_OFFSET
            if (
                p == p0
                and 0 <= s - e0 <= how.rearticulation_gap_frames
                and frames[max(e0 - 1, 0) : s + 1, col].min() >= how.frame_threshold
                and onsets[s, col] < how.rearticulation_onset
            ):
                out[-1] = (s0, max(e, e0), p, float(np.mean(frames[s0 : max(e, e0), col])))
                continue
        out.append(n)
    return sorted(out)


def notes_from_activations(acts: Activations, how: NoteCreation = DEFAULT_NOTE_CREATION) -> NoteEvents:
    """Note events from the activations: basic-pitch's note creation per excerpt, then overtones out."""
    parts = []
    for e in acts.excerpts:
        found = bp.output_to_notes_polyphonic(
            e.frames, e.onsets, how.onset_threshold, how.frame_threshold, melodia_trick=how.melodia_trick
        )
        if how.rearticulation_gap_frames >= 0:
            found = merge_rearticulations(found, e.frames, e.onsets, how)
        for s, end, pitch, amp in found:
            parts.append((e.times[s], e.times[min(end, len(e.times) - 1)], pitch, amp))
    arr = np.array(parts, dtype=np.float64).reshape(-1, 4)
    return drop_overtones(
        NoteEvents(arr[:, 0], arr[:, 1], arr[:, 2].astype(np.int16), arr[:, 3], acts.spans),
        how.overtone_confidence_ratio,
    )

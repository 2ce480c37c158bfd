"""The notes of every track, cached by content hash, and the worker pool that transcribes them.

    <data>/notes/<version>/<content-hash>.npz          onset, offset, pitch, confidence, spans,
                                                        descriptor_names, descriptors (corrected for
                                                        the instrument heard), raw_descriptors,
                                                        heard_family, heard_probability,
                                                        note_confidence, duration_s, gain_db,
                                                        compute_seconds
    <data>/notes/<version>/failed/<content-hash>.json  why that content could not be transcribed

``<version>`` names the code and the budget (``v3-30s3x``): new transcription code or another
budget never mixes with old files. Like the feature store, an unchanged file is never transcribed
twice, a renamed or copied one reuses its notes, and a broken or silent file is remembered with
its reason and fails only itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import numpy as np

from music_pipeline.artifacts import read_npz
from music_pipeline.audio.decode import ANALYSIS_SR, SharedDecode, decode
from music_pipeline.content_store import ContentStore, PassJob, PassOutcome, blame_crash, run_pass
from music_pipeline.difficulty.instrument import (
    Heard,
    InstrumentModel,
    note_creation,
    timbre_vector,
)
from music_pipeline.difficulty.note_descriptors import NOTE_DESCRIPTOR_NAMES, note_descriptors
from music_pipeline.notes.events import NoteEvents
from music_pipeline.workers import run_pending

log = logging.getLogger(__name__)

# Bump when the notes or their descriptors change for the same audio.
# 2: held tones joined, 75 ms chords, descriptors corrected for the instrument family heard.
# 3: the notes read as the family heard reads them (instrument.NOTE_READING).
NOTES_VERSION = "3"


def notes_version(budget=None) -> str:
    from music_pipeline.notes.transcribe import DEFAULT_BUDGET

    return f"v{NOTES_VERSION}-{(budget or DEFAULT_BUDGET).tag}"


@dataclass
class TrackNotes:
    notes: NoteEvents
    descriptors: dict[str, float]  # corrected for the instrument family heard: what the PDI uses
    duration_s: float
    gain_db: float
    compute_seconds: float
    heard: Heard
    raw_descriptors: dict[str, float]  # of the notes as read


class NotesStore(ContentStore):
    """Per-content-hash note files under ``<data>/notes/<version>/``."""

    kind = "notes"

    def __init__(self, data_dir, budget=None):
        super().__init__(data_dir, notes_version(budget))
        self.budget = budget

    def save(self, content_hash: str, result: TrackNotes):
        heard, raw = result.heard, result.raw_descriptors
        return self.save_arrays(
            content_hash,
            {
                **result.notes.to_arrays(),
                "descriptor_names": np.array(NOTE_DESCRIPTOR_NAMES),
                "descriptors": np.array([result.descriptors[n] for n in NOTE_DESCRIPTOR_NAMES], np.float64),
                "raw_descriptors": np.array([raw[n] for n in NOTE_DESCRIPTOR_NAMES], np.float64),
                **{c: np.asarray(v) for c, v in heard_columns(heard).items()},
                "duration_s": np.float64(result.duration_s),
                "gain_db": np.float64(result.gain_db),
                "compute_seconds": np.float64(result.compute_seconds),
            },
        )

    def load(self, content_hash: str) -> TrackNotes:
        z = read_npz(self.path(content_hash))
        names = z["descriptor_names"].tolist()
        if names != NOTE_DESCRIPTOR_NAMES:
            raise ValueError(f"stored notes of {content_hash} have other descriptors than this version computes")
        return TrackNotes(
            NoteEvents.from_arrays(z),
            dict(zip(names, z["descriptors"].tolist(), strict=True)),
            float(z["duration_s"]),
            float(z["gain_db"]),
            float(z["compute_seconds"]),
            heard_of(z),
            dict(zip(names, z["raw_descriptors"].tolist(), strict=True)),
        )


def heard_audio(y: np.ndarray, spans, gain_db: float, sr: int = ANALYSIS_SR) -> np.ndarray:
    """The stretches of ``y`` the transcription heard (``spans`` in seconds), end to end, at the
    loudness it heard them (``gain_db``): a quieter copy sounds like the same instrument."""
    heard = np.concatenate([y[int(a * sr) : int(b * sr)] for a, b in spans]) if len(spans) else y
    return (heard * 10 ** (gain_db / 20)).astype(np.float32)


@cache
def instrument_model() -> InstrumentModel:
    return InstrumentModel.load()


def notes_of_signal(y: np.ndarray, sr: int, transcriber) -> TrackNotes:
    """Hear the model's activations and the instrument family, read the notes as that family's
    are read, describe them, and correct the description for the family."""
    from music_pipeline.notes.transcribe import notes_from_activations

    t0 = time.perf_counter()
    acts = transcriber.excerpt_activations(y, sr)
    model = instrument_model()
    family, probabilities = model.family(timbre_vector(heard_audio(y, acts.spans, acts.gain_db, sr), sr))
    notes = notes_from_activations(acts, note_creation(family))
    seconds = time.perf_counter() - t0
    raw = note_descriptors(notes)
    heard, corrected = model.heard_as(family, probabilities, raw, notes.confidence)
    return TrackNotes(notes, corrected, acts.duration_s, acts.gain_db, seconds, heard, raw)


def notes_of_file(path: str | Path, transcriber, audio: SharedDecode | None = None) -> TrackNotes:
    """Decode and transcribe one file (``audio``: the decode the track's other passes share).
    Raises ``AudioError`` for input that cannot be analysed."""
    t0 = time.perf_counter()
    y = (audio.get() if audio is not None else decode(path)).y
    result = notes_of_signal(y, ANALYSIS_SR, transcriber)
    result.compute_seconds = time.perf_counter() - t0
    return result


NotesJob, NotesOutcome = PassJob, PassOutcome  # the notes pass's job and outcome (status "transcribed")


_TRANSCRIBER = None  # one onnxruntime session per worker process, one intra-op thread (a worker per core)


def _transcriber(data_dir: str):
    global _TRANSCRIBER
    if _TRANSCRIBER is None:
        from music_pipeline.notes.transcribe import Transcriber

        _TRANSCRIBER = Transcriber(threads=1, data_dir=data_dir)
    return _TRANSCRIBER


def run_notes_job(
    job: NotesJob, retry_failed: bool = False, transcriber=None, audio: SharedDecode | None = None
) -> NotesOutcome:
    """Transcribe one track into the store unless its content is already there; failures follow
    the policy of ``content_store``. Never raises."""
    return run_pass(
        NotesStore(job.data_dir),
        job,
        NotesOutcome,
        lambda: notes_of_file(job.path, transcriber or _transcriber(job.data_dir), audio),
        done="transcribed",
        retry_failed=retry_failed,
        extra=lambda result: result.duration_s,
    )


def crashed(job: NotesJob) -> NotesOutcome:
    """A track whose worker died twice, the second time alone: the file is blamed."""
    return blame_crash(NotesStore(job.data_dir), job, NotesOutcome)


def prepare(data_dir: str, log: Callable[[str], None] = lambda _m: None) -> None:
    """The model file fetched and verified once, before any worker starts."""
    from music_pipeline.notes.transcribe import model_path

    model_path(data_dir, log)


def _warm(data_dir: str) -> None:
    """A worker's onnxruntime session, opened before it takes a track (the session is opened on
    first use: building the ``Transcriber`` alone would leave it to the worker's first track)."""
    _transcriber(data_dir).open()


def transcribe_many(
    jobs: Iterable[NotesJob],
    workers: int = 1,
    on_result: Callable[[NotesOutcome], None] | None = None,
    retry_failed: bool = False,
    log_fn: Callable[[str], None] = lambda msg: None,
) -> list[NotesOutcome]:
    """Run ``jobs`` (in ``workers`` processes when > 1); results in input order. The model file is
    fetched and verified once here, before any worker starts."""

    jobs = list(jobs)
    results: dict[int, NotesOutcome] = {}

    def done(i: int, outcome: NotesOutcome) -> None:
        results[i] = outcome
        if on_result:
            on_result(outcome)

    pending = []
    for i, job in enumerate(jobs):
        store = NotesStore(job.data_dir)
        quick = (
            job.scan_error
            or not job.content_hash
            or store.has(job.content_hash)
            or (not retry_failed and store.failure(job.content_hash))
        )
        if quick:
            done(i, run_notes_job(job, retry_failed))
        else:
            pending.append(i)

    if pending:
        prepare(jobs[pending[0]].data_dir, log_fn)
        run_pending(
            jobs,
            pending,
            partial(run_notes_job, retry_failed=retry_failed),
            done,
            crashed,
            workers,
            warm=partial(_warm, jobs[pending[0]].data_dir),
        )
    return [results[i] for i in range(len(jobs))]


NOTES_VERSION_KEY = "music_pipeline.notes_version"
NOTE_TABLE_ID_COLUMNS = ["key", "relpath", "content_hash", "duration_s", "n_notes", "gain_db"]
# what was heard, beside the descriptors (``Heard.to_dict`` key -> note-file array and table column)
HEARD_COLUMNS = {
    "family": "heard_family",
    "family_probability": "heard_probability",
    "note_confidence": "note_confidence",
}


def heard_columns(heard: Heard) -> dict:
    """What was heard, under its ``HEARD_COLUMNS`` names (the writer ``heard_of`` reads back)."""
    said = heard.to_dict()
    return {column: said[k] for k, column in HEARD_COLUMNS.items()}


def heard_of(row: Mapping) -> Heard:
    """What a note file or a note-table row says was heard (``HEARD_COLUMNS``); how surely its
    notes were read follows from them through the shipped model's reading lines."""
    return instrument_model().heard(
        str(row[HEARD_COLUMNS["family"]]),
        float(row[HEARD_COLUMNS["family_probability"]]),
        float(row[HEARD_COLUMNS["note_confidence"]]),
    )


def note_table(tracks, store: NotesStore, previous=None):
    """(table, missing): one row per track of ``tracks`` (a frame with key, relpath, content_hash)
    whose notes are stored — id columns + the note descriptors —, and the rows without notes.
    Rows of ``previous`` (a note table of the same version) are reused by content hash, so a
    refresh reads only new note files."""
    import pandas as pd

    reuse = {}
    if previous is not None and len(previous):
        reuse = {h: r for h, r in zip(previous["content_hash"], previous.to_dict("records"), strict=True)}
    available = store.hashes()
    rows, missing = [], []
    for t in tracks.itertuples(index=False):
        h = t.content_hash
        if h in reuse:
            rows.append({**reuse[h], "key": t.key, "relpath": t.relpath})
            continue
        if h not in available:
            missing.append(t)
            continue
        try:
            r = store.load(h)
        except Exception as exc:  # noqa: BLE001 - a damaged file: transcribe again rather than lose the track
            log.warning("stored notes of %s unreadable (%s): removed, transcribed again next build", t.relpath, exc)
            store.forget(h)
            missing.append(t)
            continue
        rows.append(
            {
                "key": t.key,
                "relpath": t.relpath,
                "content_hash": h,
                "duration_s": r.duration_s,
                "n_notes": len(r.notes),
                "gain_db": r.gain_db,
                **r.descriptors,
                **heard_columns(r.heard),
            }
        )
    cols = NOTE_TABLE_ID_COLUMNS + NOTE_DESCRIPTOR_NAMES + list(HEARD_COLUMNS.values())
    table = pd.DataFrame(rows, columns=cols).astype(
        {
            **{c: "float64" for c in NOTE_DESCRIPTOR_NAMES + ["duration_s", "gain_db"]},
            HEARD_COLUMNS["family"]: "str",
            HEARD_COLUMNS["family_probability"]: "float64",
            HEARD_COLUMNS["note_confidence"]: "float64",
        }
    )
    return table, pd.DataFrame(missing, columns=list(tracks.columns))

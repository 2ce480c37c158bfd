"""One read of each file for every per-track pass a run wants: features, notes, learned embedding,
fingerprints.

A worker takes a track, decodes it once (``audio.decode.SharedDecode``) and runs each wanted pass
whose store lacks the content: the 641-D features at 22,050 Hz (and their by-product, the harmonic
sequence of ``features.harmonic``), the notes from the same signal, the
learned embedding from it resampled to 16 kHz, the fingerprints from the same 22,050 Hz signal. So a new or changed file is read once, and a new
version of one pass reruns only that pass (the others answer from their stores without decoding).
Each pass keeps its own store, failure records and code version; the workers are the shared pool of
``workers.py``, so the cores stay busy across the passes instead of waiting between three pools.
Why one step fills three stores: ``docs/scale.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

from music_pipeline.audio.decode import SharedDecode
from music_pipeline.content_store import PassJob
from music_pipeline.features.extract import ExtractJob, FeatureStore, run_job, warm_up
from music_pipeline.features.extract import crashed as extract_crashed
from music_pipeline.features.harmonic import SequenceStore
from music_pipeline.features.segments import DEFAULT_SEGMENTS
from music_pipeline.identity import store as fingerprints
from music_pipeline.learned import store as learned
from music_pipeline.notes import store as notes
from music_pipeline.workers import refuse_in_bootstrap, run_pending

PASSES = ("features", "notes", "learned", "fingerprints")


@dataclass(frozen=True)
class TrackJob:
    key: str
    path: str
    relpath: str
    content_hash: str | None
    data_dir: str
    passes: tuple[str, ...] = PASSES
    scan_error: str | None = None
    n_segments: int = DEFAULT_SEGMENTS
    retry_failed: bool = False


def _pass_job(job: TrackJob, name: str):
    """The job of one pass for this track, as that pass's own module takes it."""
    if name == "features":
        return ExtractJob(
            job.key, job.path, job.relpath, job.content_hash, job.data_dir, job.n_segments, job.scan_error
        )
    if name in ("notes", "fingerprints"):
        return PassJob(job.key, job.path, job.relpath, job.content_hash, job.data_dir, job.scan_error)
    return learned.LearnedJob(job.key, job.path, job.relpath, job.content_hash, job.scan_error)


def _answer(job: TrackJob, name: str, audio: SharedDecode | None):
    """One pass of one track (from its store when it has the content: then nothing is decoded)."""
    one = _pass_job(job, name)
    if name == "features":
        return run_job(one, job.retry_failed, audio)
    if name == "notes":
        return notes.run_notes_job(one, job.retry_failed, audio=audio)
    if name == "fingerprints":
        return fingerprints.run_fingerprint_job(one, job.retry_failed, audio=audio)
    return learned.run_learned_job(one, job.data_dir, retry_failed=job.retry_failed, audio=audio)


def analyse_track(job: TrackJob) -> dict:
    """{pass: its outcome} for the passes of ``job``, from at most one decode. Never raises."""
    audio = SharedDecode(job.path)
    return {name: _answer(job, name, audio) for name in job.passes}


def _crashed(job: TrackJob) -> dict:
    """A track whose worker died twice, the second time alone: the file is blamed in every pass
    whose store lacks it (a pass that has its result answers from the store)."""
    out = {}
    for name in job.passes:
        stored = job.content_hash and job.content_hash in _analysed((name,), job.data_dir, job.n_segments, True)[name]
        if stored or not job.content_hash:
            out[name] = _answer(job, name, None)  # from the store (or the scan's error): nothing decoded
        elif name == "features":
            out[name] = extract_crashed(_pass_job(job, name))
        elif name == "notes":
            out[name] = notes.crashed(_pass_job(job, name))
        elif name == "fingerprints":
            out[name] = fingerprints.crashed(_pass_job(job, name))
        else:
            out[name] = learned.crashed(_pass_job(job, name), learned.LearnedStore(job.data_dir))
    return out


def _warm(passes: Sequence[str], data_dir: str) -> None:
    """A worker's numba kernels and onnxruntime sessions, ready before it takes a track."""
    if "features" in passes:
        warm_up()
    if "notes" in passes:
        notes._warm(data_dir)
    if "learned" in passes:
        learned._warm(data_dir)


def _analysed(passes: Sequence[str], data_dir: str, n_segments: int, retry_failed: bool) -> dict[str, set[str]]:
    """Per pass, the content hashes it answers without decoding (one listing per store)."""
    out = {}
    for name in passes:
        if name == "features":  # its by-product too: a library older than the sequences gets them
            out[name] = FeatureStore(data_dir, n_segments).analysed_hashes(retry_failed) & SequenceStore(
                data_dir
            ).analysed_hashes(retry_failed)
        elif name == "notes":
            out[name] = notes.NotesStore(data_dir).analysed_hashes(retry_failed)
        elif name == "fingerprints":
            out[name] = fingerprints.FingerprintStore(data_dir).analysed_hashes(retry_failed)
        else:
            out[name] = learned.LearnedStore(data_dir).analysed_hashes(retry_failed)
    return out


def analyse_many(
    jobs: Iterable[TrackJob],
    workers: int = 1,
    on_result: Callable[[dict], None] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> list[dict]:
    """Run ``jobs`` (in up to ``workers`` processes, see ``workers.py``); {pass: outcome} per job, in
    input order. The pinned model files are fetched and verified once here, before any worker."""
    refuse_in_bootstrap()
    jobs = list(jobs)
    results: dict[int, dict] = {}

    def done(i: int, outcome: dict) -> None:
        results[i] = outcome
        if on_result:
            on_result(outcome)

    listings: dict[tuple, dict[str, set[str]]] = {}
    pending = []
    for i, job in enumerate(jobs):
        ident = (job.passes, job.data_dir, job.n_segments, job.retry_failed)
        if ident not in listings:
            listings[ident] = _analysed(*ident)
        answered = job.scan_error or not job.content_hash
        if answered or all(job.content_hash in listings[ident][p] for p in job.passes):
            done(i, analyse_track(job))  # from the stores: nothing is decoded
        else:
            pending.append(i)
    if not pending:
        return [results[i] for i in range(len(jobs))]
    passes = sorted({p for i in pending for p in jobs[i].passes}, key=PASSES.index)
    data_dir = jobs[pending[0]].data_dir
    if "notes" in passes:
        notes.prepare(data_dir, log)
    if "learned" in passes:
        learned.prepare(data_dir, log)
    if "features" in passes and workers > 1 and len(pending) > 1:
        warm_up()  # numba compiles once here, then the workers load its cache (numba issue 10128)
    run_pending(jobs, pending, analyse_track, done, _crashed, workers, warm=partial(_warm, tuple(passes), data_dir))
    return [results[i] for i in range(len(jobs))]

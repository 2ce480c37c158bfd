"""The per-track pass: decode once, analyse once, produce embedding + descriptors + segments.

Results are cached on disk by *content hash* (``FeatureStore``), so an unchanged file is never
re-extracted, a renamed or copied file reuses its features, and a broken file is remembered as
broken (with its reason) until its content changes or a build asks for ``retry_failed``.

Only failures caused by the file's content are permanent (read/decode/format errors: not audio,
truncated, silent, too short, a decoder that crashes on it): ``failed/<hash>.json``. Anything
else — a bug in the analysis, MemoryError, a full disk, a file that vanished — is recorded as
``failed/<hash>.retry.json`` (``"permanent": false``), reported as status ``error`` so the run
fails, and the track is analysed again by the next build. Both records are JSON:
``{content_hash, relpath, reason, version, permanent, recorded_at}``. ``extract_many`` runs the pass in worker
processes: per-track work is CPU-bound numpy/numba, and processes scale with cores where threads
contend for the GIL in librosa's Python-level glue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np

from music_pipeline.artifacts import (
    list_names,
    npz_member_shape,
    read_json,
    read_npz,
    remove,
    safe_join,
    write_json,
    write_npz,
)
from music_pipeline.audio.decode import ANALYSIS_SR, AudioError, SharedDecode, decode
from music_pipeline.content_store import CRASH_REASON, Failure, attempt
from music_pipeline.difficulty.audio_descriptors import DESCRIPTOR_NAMES, compute_descriptors
from music_pipeline.features.embedding import EMBEDDING_DIM, compute_embedding
from music_pipeline.features.harmonic import SequenceStore, sequence_of_signal, sequence_of_spectra
from music_pipeline.features.rhythm import compute_rhythm
from music_pipeline.features.segments import DEFAULT_SEGMENTS, extract_segments
from music_pipeline.features.spectra import compute_spectra
from music_pipeline.layout import DataLayout
from music_pipeline.workers import refuse_in_bootstrap, run_pending

log = logging.getLogger(__name__)

# Bump when any extracted value changes: it is part of the cache path and the Dagster code version.
FEATURE_VERSION = "2"
RETRY_MARK = ".retry"  # failed/<hash>.retry.json: a failure that was not the file's fault
RETRY_SUFFIX = RETRY_MARK + ".json"


def feature_version(n_segments: int = DEFAULT_SEGMENTS) -> str:
    return f"v{FEATURE_VERSION}-seg{n_segments}"


@dataclass
class TrackFeatures:
    embedding: np.ndarray  # (641,) float64
    descriptors: dict[str, float]
    segments: np.ndarray  # (n, 128, 128) float16
    duration_s: float
    source_sr: int
    source_channels: int
    compute_seconds: float = 0.0
    # by-product stored beside the features (``features.harmonic``), not in the features file
    harmonic_sequence: np.ndarray | None = None


def features_from_signal(y: np.ndarray, sr: int = ANALYSIS_SR, n_segments: int = DEFAULT_SEGMENTS) -> TrackFeatures:
    t0 = time.perf_counter()
    spectra = compute_spectra(y, sr)
    rhythm = compute_rhythm(spectra)
    return TrackFeatures(
        embedding=compute_embedding(spectra, rhythm),
        descriptors=compute_descriptors(spectra, rhythm),
        segments=extract_segments(spectra, n_segments),
        duration_s=len(y) / sr,
        source_sr=sr,
        source_channels=1,
        compute_seconds=time.perf_counter() - t0,
        harmonic_sequence=sequence_of_spectra(spectra, rhythm),
    )


def extract_features(
    path: str | Path, n_segments: int = DEFAULT_SEGMENTS, audio: SharedDecode | None = None
) -> TrackFeatures:
    """Decode ``path`` (or take ``audio``, the decode other passes share) and compute everything.
    Raises ``AudioError`` for input that cannot be analysed."""
    t0 = time.perf_counter()
    audio = audio.get() if audio is not None else decode(path)
    try:
        feats = features_from_signal(audio.y, audio.sr, n_segments)
    except AudioError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # the file decoded and passed every check: a bug of ours, not the file's fault
        raise AudioError(path, f"analysis failed ({type(exc).__name__}: {exc})", permanent=False) from exc
    feats.source_sr, feats.source_channels = audio.source_sr, audio.source_channels
    feats.compute_seconds = time.perf_counter() - t0
    return feats


class FeatureStore:
    """Per-content-hash feature files under ``<data>/features/<version>/``."""

    def __init__(self, data_dir: str | Path, n_segments: int = DEFAULT_SEGMENTS):
        self.layout = DataLayout(data_dir)
        self.n_segments = n_segments
        self.version = feature_version(n_segments)

    def path(self, content_hash: str) -> Path:
        return self.layout.features_path(content_hash, self.version)

    def failure_path(self, content_hash: str) -> Path:
        """The record of a permanent failure (the content cannot be analysed)."""
        return self.layout.failure_path(content_hash, self.version)

    def retry_path(self, content_hash: str) -> Path:
        """The record of a failure that was not the file's fault (analysed again next time)."""
        return safe_join(self.layout.failures_dir(self.version), f"{content_hash}{RETRY_SUFFIX}")

    def has(self, content_hash: str) -> bool:
        return self.path(content_hash).is_file()

    def save(self, content_hash: str, feats: TrackFeatures) -> Path:
        out = write_npz(
            self.path(content_hash),
            {
                "embedding": feats.embedding.astype(np.float64),
                "descriptor_names": np.array(DESCRIPTOR_NAMES),
                "descriptors": np.array([feats.descriptors[n] for n in DESCRIPTOR_NAMES], dtype=np.float64),
                "segments": feats.segments.astype(np.float16),
                "duration_s": np.float64(feats.duration_s),
                "source_sr": np.int64(feats.source_sr),
                "source_channels": np.int64(feats.source_channels),
                "compute_seconds": np.float64(feats.compute_seconds),
            },
            compress=False,  # deflating the float16 segments took ~4 ms a file to save a fifth of 100 kB
        )
        for record in (self.failure_path(content_hash), self.retry_path(content_hash)):
            remove(record)
        return out

    def load(self, content_hash: str) -> TrackFeatures:
        z = read_npz(self.path(content_hash))
        if z["embedding"].shape != (EMBEDDING_DIM,):
            raise ValueError(f"stored features for {content_hash} have the wrong width {z['embedding'].shape}")
        return TrackFeatures(
            embedding=z["embedding"],
            descriptors=dict(zip(z["descriptor_names"].tolist(), z["descriptors"].tolist(), strict=True)),
            segments=z["segments"],
            duration_s=float(z["duration_s"]),
            source_sr=int(z["source_sr"]),
            source_channels=int(z["source_channels"]),
            compute_seconds=float(z["compute_seconds"]),
        )

    def forget(self, content_hash: str) -> None:
        """Remove stored features that cannot be read: the next build extracts the track again."""
        remove(self.path(content_hash))

    def segments_shape(self, content_hash: str) -> tuple[int, ...]:
        """Shape of the stored segments, read from the file's header (the array stays packed)."""
        return npz_member_shape(self.path(content_hash), "segments")[0]

    def save_failure(self, content_hash: str, relpath: str, reason: str, permanent: bool = True) -> None:
        record = {
            "content_hash": content_hash,
            "relpath": relpath,
            "reason": reason,
            "version": self.version,
            "permanent": bool(permanent),
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json(self.failure_path(content_hash) if permanent else self.retry_path(content_hash), record)
        remove(self.retry_path(content_hash) if permanent else self.failure_path(content_hash))

    def is_analysed(self, content_hash: str) -> bool:
        """Features or a permanent failure record exist: nothing left to do for this content."""
        return self.has(content_hash) or self.failure_path(content_hash).is_file()

    def feature_hashes(self) -> set[str]:
        """Content hashes with stored features (``has``), from one directory listing."""
        return _hashes_in(self.layout.features_version_dir(self.version), ".npz")

    def failed_hashes(self) -> set[str]:
        """Content hashes with a permanent failure record, from one directory listing."""
        return {h for h in _hashes_in(self.layout.failures_dir(self.version), ".json") if not h.endswith(RETRY_MARK)}

    def analysed_hashes(self, retry_failed: bool = False) -> set[str]:
        """Every content hash ``is_analysed`` would accept, from two directory listings: on an
        object store one LIST per 1000 files instead of two HEAD requests per track. With
        ``retry_failed`` only hashes with features count (permanent failures are tried again)."""
        return self.feature_hashes() if retry_failed else self.feature_hashes() | self.failed_hashes()

    def failure_record(self, content_hash: str) -> dict | None:
        """The failure record of this content (permanent first), or None."""
        for path, permanent in ((self.failure_path(content_hash), True), (self.retry_path(content_hash), False)):
            if path.is_file():
                try:
                    record = dict(read_json(path))
                except Exception:  # noqa: BLE001 - any unreadable record is reported as unreadable
                    record = {"reason": "failure record unreadable"}
                record.setdefault("permanent", permanent)
                return record
        return None

    def permanent_failure(self, content_hash: str) -> str | None:
        """The reason this content cannot be analysed, when that is known for good."""
        record = self.failure_record(content_hash)
        return str(record.get("reason")) if record and record["permanent"] else None

    def failure(self, content_hash: str) -> str | None:
        """Why this content has no features: the permanent reason, or the last attempt's error
        (marked as retried on the next build)."""
        record = self.failure_record(content_hash)
        if record is None:
            return None
        reason = str(record.get("reason"))
        return reason if record["permanent"] else f"last attempt failed, tried again on the next build: {reason}"


def _hashes_in(folder, suffix: str) -> set[str]:
    """Names ending in ``suffix`` without it (temporary ``.name.…`` files excluded)."""
    return {n[: -len(suffix)] for n in list_names(folder) if n.endswith(suffix) and not n.startswith(".")}


@dataclass(frozen=True)
class ExtractJob:
    key: str
    path: str
    relpath: str
    content_hash: str | None
    data_dir: str
    n_segments: int = DEFAULT_SEGMENTS
    scan_error: str | None = None


@dataclass
class ExtractOutcome:
    key: str
    relpath: str
    content_hash: str | None
    status: str  # "extracted" | "cached" | "failed" (the file's fault, remembered) | "error" (not the file's fault)
    reason: str | None = None
    seconds: float = 0.0
    duration_s: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("extracted", "cached")

    @property
    def permanent(self) -> bool:
        """A failure the same content will always give (skipped until it changes)."""
        return self.status == "failed"


def _transient(job: ExtractJob, store: FeatureStore, reason: str, t0: float) -> ExtractOutcome:
    """A failure that is not the file's fault: recorded as such (so it is retried) and reported."""
    try:
        store.save_failure(job.content_hash, job.relpath, reason, permanent=False)
    except Exception as exc:  # noqa: BLE001 - a full disk may refuse the record too: the outcome still says why
        log.warning("could not record the failure of %s: %s", job.path, exc)
    return ExtractOutcome(
        job.key, job.relpath, job.content_hash, "error", f"{job.path}: {reason}", time.perf_counter() - t0
    )


def run_job(job: ExtractJob, retry_failed: bool = False, audio: SharedDecode | None = None) -> ExtractOutcome:
    """Extract one track into the store unless its content is already there (``audio``: the decode
    the track's other passes share). Never raises."""
    t0 = time.perf_counter()
    if job.scan_error or not job.content_hash:
        return ExtractOutcome(
            job.key, job.relpath, job.content_hash, "failed", f"{job.path}: {job.scan_error or 'no content hash'}"
        )
    store = FeatureStore(job.data_dir, job.n_segments)
    sequences = SequenceStore(job.data_dir)
    if store.has(job.content_hash):
        if not sequences.has(job.content_hash) and (retry_failed or not sequences.failure(job.content_hash)):
            _add_sequence(job, sequences, audio)
        return ExtractOutcome(job.key, job.relpath, job.content_hash, "cached", seconds=time.perf_counter() - t0)
    if not retry_failed and (reason := store.permanent_failure(job.content_hash)):
        sequences.record(job.content_hash, job.relpath, Failure(reason, True))  # no sequence either
        return ExtractOutcome(job.key, job.relpath, job.content_hash, "failed", f"{job.path}: {reason}")
    feats = attempt(
        lambda: extract_features(job.path, job.n_segments, audio),
        lambda f: (store.save(job.content_hash, f), sequences.save(job.content_hash, f.harmonic_sequence)),
    )
    if isinstance(feats, Failure):
        if not feats.permanent:
            return _transient(job, store, feats.reason, t0)
        store.save_failure(job.content_hash, job.relpath, feats.reason, permanent=True)
        sequences.record(job.content_hash, job.relpath, feats)
        return ExtractOutcome(
            job.key, job.relpath, job.content_hash, "failed", f"{job.path}: {feats.reason}", time.perf_counter() - t0
        )
    return ExtractOutcome(
        job.key, job.relpath, job.content_hash, "extracted", None, time.perf_counter() - t0, feats.duration_s
    )


def _add_sequence(job: ExtractJob, sequences: SequenceStore, audio: SharedDecode | None) -> None:
    """The harmonic sequence of a track whose features were stored without it (from the shared
    decode; the features stay). A failure is logged and left for the next build."""
    a = audio if audio is not None else SharedDecode(job.path)
    result = sequences.analyse(job.content_hash, job.relpath, lambda: sequence_of_signal(a.get().y, a.get().sr))
    if isinstance(result, Failure):
        log.warning("%s: no harmonic sequence (%s)", job.path, result.reason)


def crashed(job: ExtractJob) -> ExtractOutcome:
    """A track whose worker died twice, the second time alone: the file is blamed."""
    if job.content_hash:
        FeatureStore(job.data_dir, job.n_segments).save_failure(job.content_hash, job.relpath, CRASH_REASON)
        SequenceStore(job.data_dir).record(job.content_hash, job.relpath, Failure(CRASH_REASON, True))
    return ExtractOutcome(job.key, job.relpath, job.content_hash, "failed", f"{job.path}: {CRASH_REASON}")


def warm_up() -> None:
    """Compile librosa's numba kernels once in this process before workers start (shared cache)."""
    rng = np.random.default_rng(0)
    features_from_signal((0.1 * rng.standard_normal(ANALYSIS_SR * 4)).astype(np.float32))


def _answer_without_work(job: ExtractJob, retry_failed: bool) -> ExtractOutcome | None:
    """Cached, known-broken or unreadable tracks are answered without decoding anything."""
    if job.scan_error or not job.content_hash:
        return run_job(job, retry_failed)
    store = FeatureStore(job.data_dir, job.n_segments)
    if store.has(job.content_hash) or (not retry_failed and store.is_analysed(job.content_hash)):
        return run_job(job, retry_failed)
    return None


def extract_many(
    jobs: Iterable[ExtractJob],
    workers: int = 1,
    on_result: Callable[[ExtractOutcome], None] | None = None,
    retry_failed: bool = False,
) -> list[ExtractOutcome]:
    """Run ``jobs`` (in up to ``workers`` processes, see ``music_pipeline.workers``); results in input order."""
    refuse_in_bootstrap()
    jobs = list(jobs)
    results: dict[int, ExtractOutcome] = {}

    def done(i: int, outcome: ExtractOutcome) -> None:
        results[i] = outcome
        if on_result:
            on_result(outcome)

    pending = []
    for i, job in enumerate(jobs):
        quick = _answer_without_work(job, retry_failed)
        if quick is None:
            pending.append(i)
        else:
            done(i, quick)
    run_pending(
        jobs,
        pending,
        partial(run_job, retry_failed=retry_failed),
        done,
        crashed,
        workers,
        warm=warm_up,
        warm_parent=True,
    )
    return [results[i] for i in range(len(jobs))]

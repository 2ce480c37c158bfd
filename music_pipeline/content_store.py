"""Per-content-hash results of a per-track pass, the records of content it cannot analyse, and the
one failure policy every per-track pass (features, notes, learned embedding, fingerprints) follows.
``run_pass`` applies it to one track of the notes, learned and fingerprint passes, ``blame_crash``
to a file whose worker crashed; the feature store keeps transient failures of its own.

The policy: a failure whose cause is the file's content (not audio, truncated, silent, too short —
``AudioError.permanent``) is **permanent**: remembered until the content changes or ``build
--retry-failed``. Anything else — the file missing or unreadable by the operating system, out of
memory, a full disk, a bug of ours — is **transient**: not remembered, reported by the step, and
tried again by the next build. A worker process that crashes is retried once alone before its file
is blamed (``workers.run_pending``); crashing alone again is then the file's fault.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from music_pipeline.artifacts import (
    ArtifactPath,
    list_names,
    read_json,
    remove,
    safe_join,
    write_json,
    write_npz,
)
from music_pipeline.audio.decode import AudioError
from music_pipeline.layout import DataLayout

log = logging.getLogger(__name__)
T = TypeVar("T")

# the reason recorded for a file whose worker crashed twice, the second time alone
CRASH_REASON = "the analysis process crashed on this file twice, the second time alone (a decoder fault)"


FAILED, ERROR = "failed", "error"  # outcome statuses: the content's fault (remembered), or retried


@dataclass(frozen=True)
class Failure:
    """Why a track could not be analysed by a pass, and whether that is the content's fault."""

    reason: str
    permanent: bool

    @property
    def status(self) -> str:
        """The outcome status every pass reports: ``failed`` (remembered) or ``error`` (retried)."""
        return FAILED if self.permanent else ERROR


def failure_of(exc: BaseException) -> Failure:
    """The failure policy (module docstring) applied to an exception raised while analysing a file."""
    if isinstance(exc, AudioError):
        return Failure(exc.reason, exc.permanent)
    if isinstance(exc, MemoryError):
        return Failure("out of memory", False)
    if isinstance(exc, OSError):
        return Failure(f"{type(exc).__name__}: {exc.strerror or exc}", False)
    log.error("unexpected error\n%s", "".join(traceback.format_exception(exc)))
    return Failure(f"unexpected {type(exc).__name__}: {exc}", False)


def attempt(compute: Callable[[], T], save: Callable[[T], object]) -> T | Failure:
    """``compute()`` then ``save(result)``; a failure of either as a ``Failure`` (a result that
    cannot be stored — a full disk, a lost mount — is transient: the content is fine)."""
    try:
        result = compute()
    except Exception as exc:  # noqa: BLE001 - the policy sorts every failure; none may stop the library
        return failure_of(exc)
    try:
        save(result)
    except Exception as exc:  # noqa: BLE001 - storing failed, not the analysis
        return Failure(f"could not store the result ({type(exc).__name__}: {exc})", False)
    return result


class ContentStore:
    """Per-content-hash results of one pass as ``<data>/<kind>/<version>/<hash>.npz``, with a JSON
    failure record ``failed/<hash>.json`` for content the pass cannot analyse (the notes and the
    learned embedding; the feature store adds transient failures of its own). Subclasses set
    ``kind`` and ``version`` and say how a result is saved and loaded."""

    kind = ""

    def __init__(self, data_dir, version: str):
        self.layout = DataLayout(data_dir)
        self.version = version

    @property
    def folder(self) -> ArtifactPath:
        return self.layout.store_dir(self.kind, self.version)

    def path(self, content_hash: str) -> ArtifactPath:
        return safe_join(self.folder, f"{content_hash}.npz")

    def failure_path(self, content_hash: str) -> ArtifactPath:
        return safe_join(self.folder, "failed", f"{content_hash}.json")

    def has(self, content_hash: str) -> bool:
        return self.path(content_hash).is_file()

    def save_arrays(self, content_hash: str, arrays: dict) -> ArtifactPath:
        """Store a result (a success replaces an earlier failure record)."""
        self.failure_path(content_hash).unlink(missing_ok=True)
        return write_npz(self.path(content_hash), arrays)

    def save_failure(self, content_hash: str, relpath: str, reason: str) -> None:
        write_json(
            self.failure_path(content_hash),
            {"content_hash": content_hash, "relpath": relpath, "reason": reason, "version": self.version},
        )

    def analyse(self, content_hash: str, relpath: str, compute: Callable[[], T]) -> T | Failure:
        """``compute()`` the content's result and store it, under the failure policy: a permanent
        failure is remembered, a transient one is not."""
        result = attempt(compute, lambda r: self.save(content_hash, r))
        if isinstance(result, Failure):
            self.record(content_hash, relpath, result)
        return result

    def record(self, content_hash: str, relpath: str, failure: Failure) -> None:
        """Remember a permanent failure; a transient one is not remembered (tried again next time)."""
        if not failure.permanent:
            return
        try:
            self.save_failure(content_hash, relpath, failure.reason)
        except Exception as exc:  # noqa: BLE001 - a full disk may refuse the record too: the outcome still says why
            log.warning("could not record the failure of %s: %s", relpath, exc)

    def forget(self, content_hash: str) -> None:
        """Remove a stored result that cannot be read (damaged, cut short): the content then counts
        as not analysed, and the next build computes it again."""
        remove(self.path(content_hash))

    def failure(self, content_hash: str) -> str | None:
        p = self.failure_path(content_hash)
        if not p.is_file():
            return None
        try:
            return str(read_json(p)["reason"])
        except Exception:  # noqa: BLE001 - any unreadable record is reported as unreadable
            return "failure record unreadable"

    def hashes(self) -> set[str]:
        """Content hashes with a stored result, from one directory listing."""
        return {n[:-4] for n in list_names(self.folder) if n.endswith(".npz") and not n.startswith(".")}

    def failed_hashes(self) -> set[str]:
        return {
            n[:-5]
            for n in list_names(safe_join(self.folder, "failed"))
            if n.endswith(".json") and not n.startswith(".")
        }

    def analysed_hashes(self, retry_failed: bool = False) -> set[str]:
        """Content hashes with a result or a failure record (with ``retry_failed``: results only)."""
        return self.hashes() if retry_failed else self.hashes() | self.failed_hashes()


@dataclass(frozen=True)
class PassJob:
    """One track for a per-track pass that needs nothing but the track (notes, fingerprints)."""

    key: str
    path: str
    relpath: str
    content_hash: str | None
    data_dir: str
    scan_error: str | None = None


@dataclass
class PassOutcome:
    """What ``run_pass`` answers for one track of such a pass: its ``done`` status (``transcribed``,
    ``computed``), ``cached``, ``failed`` (the file's fault, remembered) or ``error`` (retried)."""

    key: str
    relpath: str
    content_hash: str | None
    status: str
    reason: str | None = None
    seconds: float = 0.0
    duration_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status not in (FAILED, ERROR)


def run_pass(
    store: ContentStore,
    job,
    outcome: Callable[..., T],
    compute: Callable[[], object],
    *,
    done: str = "computed",
    retry_failed: bool = False,
    extra: Callable[[object], object] = lambda _result: None,
    time_cached: bool = True,
) -> T:
    """One track of one per-track pass under the failure policy above: the scan's error (or no
    content hash) fails it; content already stored answers "cached"; content that failed before
    answers "failed" unless ``retry_failed``; else ``compute`` runs through ``store.analyse`` and
    the outcome is ``done`` or the failure's status. ``job`` has key, path, relpath, content_hash and
    scan_error; ``outcome(key, relpath, content_hash, status, reason, seconds, extra(result))``
    builds the pass's outcome. Never raises."""
    t0 = time.perf_counter()
    head = (job.key, job.relpath, job.content_hash)
    if job.scan_error or not job.content_hash:
        return outcome(*head, FAILED, f"{job.path}: {job.scan_error or 'no content hash'}")
    if store.has(job.content_hash):
        return outcome(*head, "cached", None, time.perf_counter() - t0 if time_cached else 0.0)
    if not retry_failed and (reason := store.failure(job.content_hash)):
        return outcome(*head, FAILED, f"{job.path}: {reason}")
    result = store.analyse(job.content_hash, job.relpath, compute)
    seconds = time.perf_counter() - t0
    if isinstance(result, Failure):
        return outcome(*head, result.status, f"{job.path}: {result.reason}", seconds)
    return outcome(*head, done, None, seconds, extra(result))


def blame_crash(store: ContentStore, job, outcome: Callable[..., T]) -> T:
    """A track whose worker died twice, the second time alone: the file is blamed (remembered as
    a permanent failure of its content)."""
    if job.content_hash:
        store.record(job.content_hash, job.relpath, Failure(CRASH_REASON, True))
    return outcome(job.key, job.relpath, job.content_hash, FAILED, f"{job.path}: {CRASH_REASON}")

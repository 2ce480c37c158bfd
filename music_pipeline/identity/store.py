"""The fingerprints of every track, cached by content hash.

    <data>/fingerprints/<version>/<content-hash>.npz          hashes, frames, duration_s, compute_seconds
    <data>/fingerprints/<version>/failed/<content-hash>.json  why that content could not be fingerprinted

Computed by the shared per-track analysis (``analysis.py``) from the one decode the other passes
use; an unchanged file is never fingerprinted twice, a renamed or copied one reuses its
fingerprint, and a broken file is remembered with its reason and fails only itself
(``content_store``'s policy).
"""

from __future__ import annotations

import time
from pathlib import Path

from music_pipeline.artifacts import read_npz
from music_pipeline.audio.decode import SharedDecode, decode
from music_pipeline.content_store import ContentStore, PassJob, PassOutcome, blame_crash, run_pass
from music_pipeline.identity.fingerprint import Fingerprint, fingerprint_signal

# Bump when the fingerprint of the same audio changes (the index is rebuilt from the new store).
FINGERPRINT_VERSION = "v1"


class FingerprintStore(ContentStore):
    """Per-content-hash fingerprints under ``<data>/fingerprints/<version>/``."""

    kind = "fingerprints"

    def __init__(self, data_dir):
        super().__init__(data_dir, FINGERPRINT_VERSION)

    def save(self, content_hash: str, result: Fingerprint):
        return self.save_arrays(content_hash, result.to_arrays())

    def load(self, content_hash: str) -> Fingerprint:
        return Fingerprint.from_arrays(read_npz(self.path(content_hash)))


def fingerprint_file(path: str | Path, audio: SharedDecode | None = None) -> Fingerprint:
    """Decode (or take the shared decode) and fingerprint one file; ``AudioError`` when it cannot."""
    t0 = time.perf_counter()
    a = audio.get() if audio is not None else decode(path)
    fp = fingerprint_signal(a.y, a.sr)
    fp.compute_seconds = time.perf_counter() - t0
    return fp


FingerprintJob, FingerprintOutcome = PassJob, PassOutcome  # the fingerprint pass's job and outcome


def run_fingerprint_job(
    job: FingerprintJob, retry_failed: bool = False, audio: SharedDecode | None = None
) -> FingerprintOutcome:
    """Fingerprint one track into the store unless its content is already there. Never raises."""
    return run_pass(
        FingerprintStore(job.data_dir),
        job,
        FingerprintOutcome,
        lambda: fingerprint_file(job.path, audio),
        retry_failed=retry_failed,
        extra=lambda result: result.duration_s,
    )


def crashed(job: FingerprintJob) -> FingerprintOutcome:
    """A track whose worker died twice, the second time alone: the file is blamed."""
    return blame_crash(FingerprintStore(job.data_dir), job, FingerprintOutcome)

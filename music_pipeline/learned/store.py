"""The learned embedding of a track: what is computed, how it is pooled, where it is kept.

Per track (``compute_learned``): decode at 16 kHz, take at most ``max_patches`` 3-s log-mel patches
spread over the whole track, run both musicnn checkpoints on them (batched) and keep, per patch,
the 200-unit penultimate layer of each and the 50 tag probabilities of each:

* ``MSD_musicnn`` (Million Song Dataset tags: rock, electronic, ambient, jazz, …) — its pooled
  penultimate layer is the learned embedding (``LEARNED_NAMES``: mean and max over the patches,
  400 dims);
* ``MTT_musicnn`` (MagnaTagATune tags: guitar, piano, strings, drums, classical, techno, …) — its
  tag scores, with the MSD ones, are the plain-language layer (``TAG_NAMES``: mean over patches).

Stored once per content hash in ``<data>/learned/<LEARNED_VERSION>/<hash>.npz`` (npz, no pickle):
``msd_penultimate`` (P, 200), ``mtt_penultimate`` (P, 200), ``msd_tags`` (P, 50), ``mtt_tags``
(P, 50) float32, ``patch_start_s`` (P,), ``duration_s``, ``compute_seconds``. A file that cannot be
decoded gets ``failed/<hash>.json`` with the reason. The networks run on onnxruntime
(``onnx_graph.py``: the graphs are written from the checkpoints once and cached), so nothing here
imports TensorFlow.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from music_pipeline.artifacts import ArtifactPath, read_npz
from music_pipeline.audio.decode import SharedDecode
from music_pipeline.content_store import ContentStore, blame_crash, run_pass
from music_pipeline.learned.musicnn import DEFAULT_MAX_PATCHES, MSD_TAGS, MTT_TAGS, PENULTIMATE_UNITS, SR
from music_pipeline.workers import run_pending

# Bump when a stored value changes (front end, network, patch choice): it is in the cache path.
# 2: the networks run as ONNX graphs on onnxruntime instead of Keras (values differ from v1 in the
# last float32 bits: ≤ 1.5e-5 on the penultimate layers, ≤ 5e-6 on the tags), and the 16 kHz signal
# is resampled from the analysis-rate decode every pass shares instead of decoded on its own.
LEARNED_CODE_VERSION = "2"


def learned_version(max_patches: int = DEFAULT_MAX_PATCHES) -> str:
    return f"musicnn-v{LEARNED_CODE_VERSION}-p{max_patches}"


def _slug(tag: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", tag.lower()).strip("_")


EMBEDDING_SOURCE = "msd"  # whose penultimate layer is the learned embedding
LEARNED_NAMES = [f"{EMBEDDING_SOURCE}_{stat}_{i:03d}" for stat in ("mean", "max") for i in range(PENULTIMATE_UNITS)]
TAG_SOURCES = {"mtt": MTT_TAGS, "msd": MSD_TAGS}
TAG_NAMES = [f"tag_{src}_{_slug(t)}" for src, tags in TAG_SOURCES.items() for t in tags]
# column -> "guitar"
TAG_TEXT = dict(zip(TAG_NAMES, [t.lower() for tags in TAG_SOURCES.values() for t in tags], strict=True))
LEARNED_DIM = len(LEARNED_NAMES)


@dataclass
class LearnedFeatures:
    msd_penultimate: np.ndarray  # (P, 200)
    mtt_penultimate: np.ndarray  # (P, 200)
    msd_tags: np.ndarray  # (P, 50)
    mtt_tags: np.ndarray  # (P, 50)
    patch_start_s: np.ndarray  # (P,)
    duration_s: float
    compute_seconds: float = 0.0

    @property
    def n_patches(self) -> int:
        return len(self.patch_start_s)

    def embedding(self) -> np.ndarray:
        """(400,) float64 in ``LEARNED_NAMES`` order: mean and max of the MSD penultimate layer."""
        pen = np.asarray(self.msd_penultimate, dtype=np.float64)
        return np.concatenate([pen.mean(axis=0), pen.max(axis=0)])

    def tags(self) -> np.ndarray:
        """(100,) in ``TAG_NAMES`` order: mean tag probability over the patches (MTT, then MSD)."""
        return np.concatenate(
            [np.asarray(self.mtt_tags, np.float64).mean(axis=0), np.asarray(self.msd_tags, np.float64).mean(axis=0)]
        )

    def row(self) -> np.ndarray:
        return np.concatenate([self.embedding(), self.tags()])

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "msd_penultimate": np.asarray(self.msd_penultimate, np.float32),
            "mtt_penultimate": np.asarray(self.mtt_penultimate, np.float32),
            "msd_tags": np.asarray(self.msd_tags, np.float32),
            "mtt_tags": np.asarray(self.mtt_tags, np.float32),
            "patch_start_s": np.asarray(self.patch_start_s, np.float64),
            "duration_s": np.float64(self.duration_s),
            "compute_seconds": np.float64(self.compute_seconds),
        }

    @classmethod
    def from_arrays(cls, z: dict) -> LearnedFeatures:
        if (
            z["msd_penultimate"].ndim != 2
            or z["msd_penultimate"].shape[1] != PENULTIMATE_UNITS
            or len(z["patch_start_s"]) == 0
        ):
            raise ValueError(f"stored learned features have the wrong shape {z['msd_penultimate'].shape}")
        return cls(
            z["msd_penultimate"],
            z["mtt_penultimate"],
            z["msd_tags"],
            z["mtt_tags"],
            z["patch_start_s"],
            float(z["duration_s"]),
            float(z["compute_seconds"]),
        )


class LearnedStore(ContentStore):
    """Per-content-hash learned features under ``<data>/learned/<version>/``."""

    kind = "learned"

    def __init__(self, data_dir, max_patches: int = DEFAULT_MAX_PATCHES):
        super().__init__(data_dir, learned_version(max_patches))
        self.max_patches = max_patches

    def save(self, content_hash: str, feats: LearnedFeatures) -> ArtifactPath:
        return self.save_arrays(content_hash, feats.arrays())

    def load(self, content_hash: str) -> LearnedFeatures:
        return LearnedFeatures.from_arrays(read_npz(self.path(content_hash)))


# ---------------------------------------------------------------- computing


_MODEL = None  # one session pair per process
INTRA_OP_THREADS = 1  # per session: the build runs one worker per core


def _network(data_dir=None, log: Callable[[str], None] = lambda _m: None, threads: int = INTRA_OP_THREADS):
    global _MODEL
    if _MODEL is None:
        from music_pipeline.learned.musicnn import MSD_MUSICNN, MTT_MUSICNN
        from music_pipeline.learned.onnx_graph import OnnxMusicnn

        _MODEL = OnnxMusicnn((MSD_MUSICNN, MTT_MUSICNN), data_dir, log, threads)
    return _MODEL


def features_from_signal(y16k: np.ndarray, max_patches: int = DEFAULT_MAX_PATCHES, data_dir=None) -> LearnedFeatures:
    """Learned features of 16 kHz mono audio (see the module docstring): one front end for both
    taggers, the patches in small batches (``onnx_graph.BATCH_PATCHES``)."""
    from music_pipeline.learned.musicnn import log_mel_patches

    t0 = time.perf_counter()
    patches, starts = log_mel_patches(y16k, max_patches)
    out = _network(data_dir).run(patches)
    (msd_pen, msd_tags), (mtt_pen, mtt_tags) = out["MSD_musicnn"], out["MTT_musicnn"]
    return LearnedFeatures(msd_pen, mtt_pen, msd_tags, mtt_tags, starts, len(y16k) / SR, time.perf_counter() - t0)


def compute_learned(
    path: str | Path, max_patches: int = DEFAULT_MAX_PATCHES, data_dir=None, audio: SharedDecode | None = None
) -> LearnedFeatures:
    """Learned features of ``path``: decoded at the analysis rate as every pass reads it (or taken
    from ``audio``, the decode the track's other passes share) and resampled to 16 kHz, so a file
    gives the same features in a build and alone. Raises ``AudioError`` for a file that cannot be
    analysed (the same checks as the hand-crafted extraction)."""
    t0 = time.perf_counter()
    y16k = (audio or SharedDecode(path)).get(SR).y
    feats = features_from_signal(y16k, max_patches, data_dir)
    feats.compute_seconds = time.perf_counter() - t0
    return feats


@dataclass
class LearnedJob:
    key: str
    path: str
    relpath: str
    content_hash: str | None
    scan_error: str | None = None


@dataclass
class LearnedOutcome:
    key: str
    relpath: str
    content_hash: str | None
    status: str  # computed | cached | failed (the file's fault, remembered) | error (retried next time)
    reason: str | None = None
    seconds: float = 0.0
    audio_seconds: float = 0.0  # seconds of audio the network analysed

    @property
    def ok(self) -> bool:
        return self.status in ("computed", "cached")


def run_learned_job(
    job: LearnedJob,
    data_dir: str,
    max_patches: int = DEFAULT_MAX_PATCHES,
    retry_failed: bool = False,
    audio: SharedDecode | None = None,
) -> LearnedOutcome:
    """Compute one track's learned features into the store unless its content is there; failures
    follow the policy of ``content_store`` (a file whose content cannot be analysed is remembered;
    the weights unavailable, a vanished file, a bug: tried again next time). Never raises."""
    from music_pipeline.learned.musicnn import PATCH_SECONDS

    return run_pass(
        LearnedStore(data_dir, max_patches),
        job,
        LearnedOutcome,
        lambda: compute_learned(job.path, max_patches, data_dir, audio),
        retry_failed=retry_failed,
        extra=lambda feats: feats.n_patches * PATCH_SECONDS,
        time_cached=False,
    )


def crashed(job: LearnedJob, store: LearnedStore) -> LearnedOutcome:
    """A track whose worker died twice, the second time alone: the file is blamed."""
    return blame_crash(store, job, LearnedOutcome)


def prepare(data_dir: str, log: Callable[[str], None] = lambda _m: None) -> None:
    """The weights fetched and verified, and both graphs written and verified, once, before any worker."""
    from music_pipeline.learned.musicnn import CHECKPOINTS, weights_folder
    from music_pipeline.learned.onnx_graph import ensure_graph

    weights_folder(data_dir, log)
    for spec in CHECKPOINTS.values():
        ensure_graph(spec, data_dir, log)


def _warm(data_dir: str) -> None:
    """A worker's session pair, loaded before it takes a track."""
    _network(data_dir)


def embed_many(
    jobs: Iterable[LearnedJob],
    store: LearnedStore,
    on_result: Callable[[LearnedOutcome], None] | None = None,
    retry_failed: bool = False,
    log: Callable[[str], None] = lambda _m: None,
    workers: int = 1,
) -> list[LearnedOutcome]:
    """Compute what the store lacks (in up to ``workers`` processes, see ``music_pipeline.workers``;
    a file's error is recorded against that file and never stops the others); results in input order."""
    jobs = list(jobs)
    data_dir = str(store.layout.root)
    work = partial(run_learned_job, data_dir=data_dir, max_patches=store.max_patches, retry_failed=retry_failed)
    done_hashes = store.hashes()
    failed = set() if retry_failed else store.failed_hashes()
    results: dict[int, LearnedOutcome] = {}

    def done(i: int, outcome: LearnedOutcome) -> None:
        results[i] = outcome
        if on_result:
            on_result(outcome)

    pending = []
    for i, job in enumerate(jobs):
        if job.scan_error or not job.content_hash or job.content_hash in done_hashes or job.content_hash in failed:
            done(i, work(job))  # answered from the store, nothing computed
        else:
            pending.append(i)
    if pending:
        prepare(data_dir, log)
        run_pending(jobs, pending, work, done, partial(crashed, store=store), workers, warm=partial(_warm, data_dir))
    return [results[i] for i in range(len(jobs))]

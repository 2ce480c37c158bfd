"""The one resource every asset uses: where the library and the data live, and how many workers.

Importing this module (every Dagster process that loads the definitions does) also keeps those
processes quiet and lets training code report progress without being handed a logger:
TensorFlow's environment defaults are set before anything imports it and its Python warnings are
raised to ERROR (``music_pipeline/quiet.py``; MUSIC_PIPELINE_VERBOSE=1 keeps everything), and
``progress.ambient`` reports to the run log of the step that is executing.
"""

from collections import OrderedDict
from pathlib import Path

import dagster as dg

from music_pipeline import progress, quiet
from music_pipeline.audio.scan import LibraryScan, scan_library
from music_pipeline.features.extract import FeatureStore
from music_pipeline.features.segments import DEFAULT_SEGMENTS
from music_pipeline.layout import DataLayout
from music_pipeline.settings import Settings

quiet.quiet_environment()
quiet.quiet_python_logs()

_step_reporters: "OrderedDict[tuple[str, str], progress.Report]" = OrderedDict()


def current_step_reporter() -> "progress.Report | None":
    """The progress reporter of the Dagster step executing in this thread (one per step, so its
    run-log lines are throttled across calls), or None outside a step."""
    try:
        context = dg.OpExecutionContext.get()
    except Exception:  # noqa: BLE001 - not inside a Dagster step: no reporter
        return None
    key = (context.run_id, str(context.op_handle))
    if key not in _step_reporters:
        _step_reporters[key] = progress.dagster_reporter(context.log.info)
        while len(_step_reporters) > 64:
            _step_reporters.popitem(last=False)
    return _step_reporters[key]


progress.set_ambient_provider(current_step_reporter)


class MusicPipelineResource(dg.ConfigurableResource):
    """Empty strings / 0 mean: take it from the environment (MUSIC_PIPELINE_DATA, MUSIC_LIBRARY,
    MUSIC_PIPELINE_WORKERS), then from what the data directory recorded at its last build
    (``<data>/library.json``), then the default (``data/``, ``data/library``, all cores).
    ``partitions``/``buckets`` (env MUSIC_PIPELINE_PARTITIONS / MUSIC_PIPELINE_BUCKETS, default
    one partition per track) are read once, when the definitions are built from this resource."""

    data_dir: str = ""
    library_dir: str = ""
    workers: int = 0
    n_segments: int = DEFAULT_SEGMENTS
    partitions: str = ""  # tracks | buckets
    buckets: int = 0

    @property
    def partitioning(self):
        from music_pipeline.defs.partitions import Partitioning

        return Partitioning.resolve(self.partitions or None, self.buckets or None)

    @property
    def settings(self) -> Settings:
        return Settings.resolve(self.data_dir or None, self.library_dir or None, self.workers or None)

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.settings.data_dir)

    @property
    def store(self) -> FeatureStore:
        return FeatureStore(self.settings.data_dir, self.n_segments)

    def track_stores(self) -> list:
        """The per-content-hash store of every per-track asset: features, notes, learned embedding,
        fingerprints, and the harmonic sequences the features step stores beside its features."""
        from music_pipeline.features.harmonic import SequenceStore
        from music_pipeline.identity.store import FingerprintStore
        from music_pipeline.learned.store import LearnedStore
        from music_pipeline.notes.store import NotesStore

        data = self.settings.data_dir
        return [self.store, NotesStore(data), LearnedStore(data), FingerprintStore(data), SequenceStore(data)]

    def analysed_hashes(self, retry_failed: bool = False) -> set[str]:
        """Content hashes every per-track asset has answered (a result or a recorded failure), from
        one listing per store: a track missing from any of them (a new file, or a new version of
        one asset) is analysed again; the others answer it from their caches."""
        return set.intersection(*(s.analysed_hashes(retry_failed=retry_failed) for s in self.track_stores()))

    def scan(self) -> LibraryScan:
        """The library scan; ``LibraryUnavailable`` (naming the folder and the fix) when the
        folder is missing or unreadable."""
        s = self.settings
        return scan_library(s.check_library(), DataLayout(s.data_dir).hash_cache_path)

    def library_path(self) -> Path:
        return self.settings.check_library()

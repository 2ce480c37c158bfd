"""The one resource every asset uses: where the library and the data live, and how many workers."""


from pathlib import Path

import dagster as dg

from music_pipeline.audio.library import LibraryScan, scan_library
from music_pipeline.features.extract import FeatureStore
from music_pipeline.features.segments import DEFAULT_SEGMENTS
from music_pipeline.settings import Settings
from music_pipeline.storage import DataLayout


class MusicPipelineResource(dg.ConfigurableResource):
    """Empty strings / 0 mean: take it from the environment (MUSIC_PIPELINE_DATA, MUSIC_LIBRARY,
    MUSIC_PIPELINE_WORKERS) or the default (``data/``, ``data/library``, all cores)."""

    data_dir: str = ""
    library_dir: str = ""
    workers: int = 0
    n_segments: int = DEFAULT_SEGMENTS

    @property
    def settings(self) -> Settings:
        return Settings.resolve(self.data_dir or None, self.library_dir or None, self.workers or None)

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.settings.data_dir)

    @property
    def store(self) -> FeatureStore:
        return FeatureStore(self.settings.data_dir, self.n_segments)

    def scan(self) -> LibraryScan:
        s = self.settings
        return scan_library(s.require_library(), DataLayout(s.data_dir).hash_cache_path)

    def library_path(self) -> Path:
        return self.settings.require_library()

"""Every path under the data directory, decided here and nowhere else.

``DataLayout(data_dir)`` names each artifact a build writes (tables, per-track stores, models,
reports, plots, caches, records); the formats are described in ``docs/data-layout.md``. Files
*inside* a model's own folder (a genre model version, the similarity index) are named by the
module that owns that format (``genre/persistence.py``, ``search/index.py``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from music_pipeline.artifacts import ArtifactPath, artifact_path, safe_join

if TYPE_CHECKING:  # upath loads on first use of a URL
    from upath import UPath


class DataLayout:
    """Paths of every artifact under the data directory (``docs/data-layout.md``)."""

    def __init__(self, data_dir: str | os.PathLike | UPath):
        root = artifact_path(data_dir)
        self.root = root.resolve() if isinstance(root, Path) else root

    # -- records and caches -------------------------------------------------------------------
    @property
    def library_record(self) -> ArtifactPath:
        """Which library this data directory was built from (``settings.record_library``)."""
        return self.root / "library.json"

    @property
    def explorer_status(self) -> ArtifactPath:
        """Where a running explorer listens (``web/status.py``)."""
        return self.root / "explorer.json"

    @property
    def hash_cache_path(self) -> ArtifactPath:
        return self.root / "cache" / "content_hashes.parquet"

    @property
    def weights_dir(self) -> Path | None:
        """Pinned pretrained files; None on a remote data directory (they are cached locally)."""
        return (self.root / "cache" / "weights").resolve() if isinstance(self.root, Path) else None

    @property
    def logs_dir(self) -> Path | None:
        """Build logs; None on a remote data directory (logs stay on local disk)."""
        return self.root / "logs" if isinstance(self.root, Path) else None

    @property
    def dagster_home(self) -> Path | None:
        """The Dagster instance of a local data directory (None: remote, see settings)."""
        return (self.root / "dagster_home").resolve() if isinstance(self.root, Path) else None

    @property
    def lock_path(self) -> Path:
        """Always local (file locks do not exist on object stores): one per data URL and host."""
        if isinstance(self.root, Path):
            return self.root / ".build.lock"
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"music-pipeline-{digest}.lock"

    # -- per-track stores, keyed by content hash so a renamed file is not recomputed ----------
    @property
    def features_dir(self) -> ArtifactPath:
        return self.root / "features"

    def features_version_dir(self, version: str) -> ArtifactPath:
        return safe_join(self.features_dir, version)

    def failures_dir(self, version: str) -> ArtifactPath:
        return safe_join(self.features_dir, version, "failed")

    def features_path(self, content_hash: str, version: str) -> ArtifactPath:
        return safe_join(self.features_version_dir(version), f"{content_hash}.npz")

    def failure_path(self, content_hash: str, version: str) -> ArtifactPath:
        return safe_join(self.failures_dir(version), f"{content_hash}.json")

    def store_dir(self, kind: str, version: str) -> ArtifactPath:
        """A per-track pass's store (``notes``, ``learned``) for one version of its code."""
        return safe_join(self.root / kind, version)

    # -- library tables ------------------------------------------------------------------------
    @property
    def tables_dir(self) -> ArtifactPath:
        return self.root / "tables"

    @property
    def manifest_path(self) -> ArtifactPath:
        return self.tables_dir / "library_manifest.parquet"

    @property
    def embeddings_path(self) -> ArtifactPath:
        return self.tables_dir / "embeddings.parquet"

    @property
    def fingerprint_index_dir(self) -> ArtifactPath:
        """The fingerprint lookup index: ``CURRENT.json`` naming the folder of its memory-mapped
        arrays (``identity/library.py`` names the files inside)."""
        return self.tables_dir / "fingerprint_index"

    @property
    def legacy_fingerprint_index_path(self) -> ArtifactPath:
        """The index's first format (one ``.npz`` loaded whole): replaced by a rebuild when found."""
        return self.tables_dir / "fingerprint_index.npz"

    @property
    def duplicates_path(self) -> ArtifactPath:
        """The groups of tracks holding the same recording (``duplicate_groups`` asset)."""
        return self.tables_dir / "duplicate_groups.parquet"

    @property
    def versions_index_path(self) -> ArtifactPath:
        """Every track's harmonic sequence packed in one file (``music-pipeline versions``)."""
        return self.tables_dir / "harmonic_sequences.npz"

    @property
    def skipped_path(self) -> ArtifactPath:
        return self.tables_dir / "skipped_tracks.parquet"

    @property
    def learned_table_path(self) -> ArtifactPath:
        return self.tables_dir / "learned_embeddings.parquet"

    @property
    def descriptors_table_path(self) -> ArtifactPath:
        """The audio difficulty descriptors per track (written with the embedding table)."""
        return self.tables_dir / "difficulty_descriptors.parquet"

    @property
    def note_descriptors_table_path(self) -> ArtifactPath:
        """The note descriptors per track (written by the ``difficulty`` asset)."""
        return self.tables_dir / "note_descriptors.parquet"

    @property
    def difficulty_table_path(self) -> ArtifactPath:
        """PDI, subscores and level per track."""
        return self.tables_dir / "difficulty.parquet"

    @property
    def genre_predictions_path(self) -> ArtifactPath:
        """Out-of-fold predictions of the labelled tracks (grouped CV)."""
        return self.tables_dir / "genre_predictions.parquet"

    @property
    def track_genres_path(self) -> ArtifactPath:
        """Every track classified by the deployed genre model."""
        return self.tables_dir / "track_genres.parquet"

    @property
    def embedding_map_path(self) -> ArtifactPath:
        return self.tables_dir / "embedding_map.parquet"

    @property
    def label_similarity_path(self) -> ArtifactPath:
        return self.tables_dir / "label_similarity.parquet"

    @property
    def playlist_tracks_path(self) -> ArtifactPath:
        """Each track's playlist and place in it (for the map's colours)."""
        return self.tables_dir / "playlists.parquet"

    @property
    def playlists_dir(self) -> ArtifactPath:
        """The library's playlists: ``playlists.json`` and an M3U8 and an XSPF file per playlist
        (``playlists/library.py`` names the files)."""
        return self.root / "playlists"

    # -- models --------------------------------------------------------------------------------
    @property
    def models_dir(self) -> ArtifactPath:
        return self.root / "models"

    @property
    def genre_dir(self) -> ArtifactPath:
        """Genre model versions, ``CURRENT.json`` and ``status.json`` (``genre/versions.py``)."""
        return self.models_dir / "genre"

    @property
    def genre_status_path(self) -> ArtifactPath:
        """Why there is no genre model (or that there is one), for the summary and ``models``."""
        return self.genre_dir / "status.json"

    @property
    def similarity_dir(self) -> ArtifactPath:
        """The similarity index (``search/index.py`` names the files inside)."""
        return self.models_dir / "similarity"

    @property
    def difficulty_dir(self) -> ArtifactPath:
        """The PDI model and the segment CNN with its report (``difficulty/pdi.py``, ``difficulty/cnn.py`` name the files)."""
        return self.models_dir / "difficulty"

    def training_state_path(self, model: str) -> ArtifactPath:
        """What ``model`` was last trained on (``models/staleness.py``)."""
        return safe_join(self.models_dir / "state", f"{model}.json")

    @property
    def listening_model_dir(self) -> ArtifactPath:
        """The listening model (``listening/recommender.py`` names the files inside)."""
        return self.models_dir / "listening"

    # -- listening history ---------------------------------------------------------------------
    @property
    def listening_dir(self) -> ArtifactPath:
        return self.root / "listening"

    @property
    def listening_log_path(self) -> ArtifactPath:
        """The append-only event log of plays, skips and likes (``listening/history.py``)."""
        return self.listening_dir / "events.jsonl"

    # -- reports and plots ---------------------------------------------------------------------
    @property
    def reports_dir(self) -> ArtifactPath:
        return self.root / "reports"

    @property
    def reports_index(self) -> ArtifactPath:
        return self.reports_dir / "index.html"

    @property
    def genre_report_path(self) -> ArtifactPath:
        return self.reports_dir / "genre_classifier.md"

    @property
    def genre_comparison_paths(self) -> tuple[ArtifactPath, ArtifactPath]:
        """The comparison of genre approaches as Markdown and JSON."""
        return self.reports_dir / "genre_models.md", self.reports_dir / "genre_models.json"

    @property
    def embedding_map_html(self) -> tuple[ArtifactPath, ArtifactPath]:
        """The interactive 2-D and 3-D maps."""
        return self.reports_dir / "embedding_map_2d.html", self.reports_dir / "embedding_map_3d.html"

    @property
    def plots_dir(self) -> ArtifactPath:
        return self.root / "plots"

    @property
    def difficulty_plots_dir(self) -> ArtifactPath:
        return self.plots_dir / "difficulty"

    @property
    def genre_plots_dir(self) -> ArtifactPath:
        return self.plots_dir / "genre"

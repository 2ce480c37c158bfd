"""Where things live and how much of the machine to use.

Resolution order for every setting: explicit argument (CLI flag / resource config) >
environment variable > default. Nothing here imports Dagster.

The data directory may be an fsspec URL (``s3://bucket/prefix``) shared by every worker host;
then the library folder must be given explicitly and DAGSTER_HOME defaults to a local folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from music_pipeline.storage import ArtifactPath, artifact_path

DEFAULT_DATA_DIR = Path("data")
DEFAULT_LIBRARY_SUBDIR = "library"

ENV_DATA = "MUSIC_PIPELINE_DATA"
ENV_LIBRARY = "MUSIC_LIBRARY"
ENV_WORKERS = "MUSIC_PIPELINE_WORKERS"


def default_workers() -> int:
    env = os.environ.get(ENV_WORKERS)
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> ArtifactPath:
    """A resolved local Path, or a UPath for an fsspec URL (``s3://…``)."""
    raw = data_dir or os.environ.get(ENV_DATA) or DEFAULT_DATA_DIR
    resolved = artifact_path(raw)
    return resolved.expanduser().resolve() if isinstance(resolved, Path) else resolved


def resolve_library_dir(
    library_dir: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None
) -> Path | None:
    """The library folder; None when the data directory is remote and no folder was given."""
    raw = library_dir or os.environ.get(ENV_LIBRARY)
    if raw:
        return Path(raw).expanduser().resolve()
    data = resolve_data_dir(data_dir)
    return data / DEFAULT_LIBRARY_SUBDIR if isinstance(data, Path) else None


class LibraryNotGiven(ValueError):
    """A command that reads the library was run with a remote data dir and no library folder."""


@dataclass(frozen=True)
class Settings:
    data_dir: ArtifactPath
    library_dir: Path | None  # None: remote data dir and no library given (queries need none)
    workers: int = field(default_factory=default_workers)

    def require_library(self) -> Path:
        if self.library_dir is None:
            raise LibraryNotGiven(
                f"the data directory {self.data_dir} is remote: give the library folder with --library or "
                f"{ENV_LIBRARY} (a path every worker can read)"
            )
        return self.library_dir

    @classmethod
    def resolve(cls, data_dir=None, library_dir=None, workers: int | None = None) -> "Settings":
        return cls(
            data_dir=resolve_data_dir(data_dir),
            library_dir=resolve_library_dir(library_dir, data_dir),
            workers=workers if workers and workers > 0 else default_workers(),
        )

    @property
    def dagster_home(self) -> Path:
        if os.environ.get("DAGSTER_HOME"):
            return Path(os.environ["DAGSTER_HOME"]).resolve()
        if isinstance(self.data_dir, Path):
            return (self.data_dir / "dagster_home").resolve()
        return (Path.home() / ".music-pipeline" / "dagster_home").resolve()  # instance storage stays local

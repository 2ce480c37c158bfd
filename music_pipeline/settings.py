"""Where things live and how much of the machine to use.

Resolution order for every setting: explicit argument (CLI flag / resource config) >
environment variable > default. Nothing here imports Dagster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    raw = data_dir or os.environ.get(ENV_DATA) or DEFAULT_DATA_DIR
    return Path(raw).expanduser().resolve()


def resolve_library_dir(
    library_dir: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None
) -> Path:
    raw = library_dir or os.environ.get(ENV_LIBRARY)
    if raw:
        return Path(raw).expanduser().resolve()
    return resolve_data_dir(data_dir) / DEFAULT_LIBRARY_SUBDIR


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    library_dir: Path
    workers: int = field(default_factory=default_workers)

    @classmethod
    def resolve(cls, data_dir=None, library_dir=None, workers: int | None = None) -> "Settings":
        return cls(
            data_dir=resolve_data_dir(data_dir),
            library_dir=resolve_library_dir(library_dir, data_dir),
            workers=workers if workers and workers > 0 else default_workers(),
        )

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME") or self.data_dir / "dagster_home").resolve()

"""Where things live and how much of the machine to use.

Resolution order for every setting: explicit argument (CLI flag / resource config) >
environment variable > what the data directory recorded > default. Nothing here imports Dagster.

The library folder: ``--library`` / resource config > ``MUSIC_LIBRARY`` > the library recorded in
``<data>/library.json`` by the last ``build``/``demo`` on that data directory > ``<data>/library``.
So ``music-pipeline ui --data DIR``, the daemon and the sensor follow the library that DIR was
built from without being told again. ``library.json``: ``{"format": 1, "path": absolute folder,
"chosen_by": "--library" | "MUSIC_LIBRARY" | "demo" | "default", "recorded_by": "build" |
"demo", "recorded_at": ISO-8601 UTC}``.

The data directory may be an fsspec URL (``s3://bucket/prefix``) shared by every worker host;
then the library folder must be given explicitly (no record is consulted: a path recorded on one
host means nothing on another) and DAGSTER_HOME defaults to a local folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from music_pipeline.storage import ArtifactPath, artifact_path, write_json

DEFAULT_DATA_DIR = Path("data")
DEFAULT_LIBRARY_SUBDIR = "library"
LIBRARY_RECORD = "library.json"

ENV_DATA = "MUSIC_PIPELINE_DATA"
ENV_LIBRARY = "MUSIC_LIBRARY"
ENV_WORKERS = "MUSIC_PIPELINE_WORKERS"
ENV_PARTITIONS = "MUSIC_PIPELINE_PARTITIONS"
ENV_BUCKETS = "MUSIC_PIPELINE_BUCKETS"

# How the per-track assets are partitioned: one partition per track (personal and label libraries),
# or a fixed set of hash buckets of tracks (catalogues past ~100k tracks; see README).
PARTITION_MODES = ("tracks", "buckets")
DEFAULT_BUCKETS = 4096
MAX_BUCKETS = 65536

# how the library folder was chosen (Settings.library_source)
SOURCE_FLAG = "--library"
SOURCE_ENV = ENV_LIBRARY
SOURCE_RECORD = "recorded"
SOURCE_DEFAULT = "default"


class SettingsError(ValueError):
    """A setting (argument or environment variable) that cannot be used; the message says which."""


def default_workers() -> int:
    env = os.environ.get(ENV_WORKERS)
    if env:
        try:
            value = int(env)
        except ValueError:
            raise SettingsError(f"{ENV_WORKERS}={env!r} is not a whole number") from None
        if value < 1:
            raise SettingsError(f"{ENV_WORKERS}={env!r}: at least 1 worker is needed")
        return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_partitioning(mode: str | None = None, buckets: int | None = None) -> tuple[str, int]:
    """(mode, bucket count): argument > MUSIC_PIPELINE_PARTITIONS / MUSIC_PIPELINE_BUCKETS > per
    track. The count is 0 in per-track mode."""
    raw_mode = (mode or os.environ.get(ENV_PARTITIONS) or "tracks").strip().lower()
    if raw_mode not in PARTITION_MODES:
        source = "the partitions setting" if mode else ENV_PARTITIONS
        raise SettingsError(f"{source}={raw_mode!r}: expected one of {', '.join(PARTITION_MODES)}")
    if raw_mode == "tracks":
        return "tracks", 0
    if buckets:
        count, source = buckets, "the buckets setting"
    else:
        env = os.environ.get(ENV_BUCKETS, "").strip()
        source = ENV_BUCKETS
        try:
            count = int(env) if env else DEFAULT_BUCKETS
        except ValueError:
            raise SettingsError(f"{ENV_BUCKETS}={env!r} is not a whole number") from None
    if not 1 <= count <= MAX_BUCKETS:
        raise SettingsError(f"{source}={count}: the bucket count must be between 1 and {MAX_BUCKETS}")
    return "buckets", count


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> ArtifactPath:
    """A resolved local Path, or a UPath for an fsspec URL (``s3://…``)."""
    raw = data_dir or os.environ.get(ENV_DATA) or DEFAULT_DATA_DIR
    resolved = artifact_path(raw)
    return resolved.expanduser().resolve() if isinstance(resolved, Path) else resolved


def library_record_path(data_dir: ArtifactPath) -> ArtifactPath:
    return data_dir / LIBRARY_RECORD


def read_library_record(data_dir: str | os.PathLike | ArtifactPath) -> dict | None:
    """The library recorded in a local data directory, or None (none, remote, or unreadable)."""
    data = resolve_data_dir(data_dir)
    if not isinstance(data, Path):
        return None
    try:
        record = json.loads(library_record_path(data).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("path"), str) else None


def record_library(data_dir: ArtifactPath, library: Path, chosen_by: str, recorded_by: str) -> ArtifactPath:
    """Remember which library this data directory was built from (written atomically)."""
    return write_json(
        library_record_path(data_dir),
        {
            "format": 1,
            "path": str(Path(library).resolve()),
            "chosen_by": chosen_by,
            "recorded_by": recorded_by,
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )


def resolve_library(
    library_dir: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None
) -> tuple[Path | None, str]:
    """(library folder, how it was chosen); the folder is None when the data directory is remote
    and no folder was given."""
    if library_dir:
        return Path(library_dir).expanduser().resolve(), SOURCE_FLAG
    if os.environ.get(ENV_LIBRARY):
        return Path(os.environ[ENV_LIBRARY]).expanduser().resolve(), SOURCE_ENV
    data = resolve_data_dir(data_dir)
    if not isinstance(data, Path):
        return None, SOURCE_DEFAULT
    record = read_library_record(data)
    if record:
        return Path(record["path"]), SOURCE_RECORD
    return data / DEFAULT_LIBRARY_SUBDIR, SOURCE_DEFAULT


def resolve_library_dir(
    library_dir: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None
) -> Path | None:
    """The library folder; None when the data directory is remote and no folder was given."""
    return resolve_library(library_dir, data_dir)[0]


class LibraryNotGiven(SettingsError):
    """A command that reads the library was run with a remote data dir and no library folder."""


class LibraryUnavailable(SettingsError):
    """The library folder is missing, not a folder or cannot be read. The message names the
    folder, how it was chosen and what to do."""


def library_problem(path: Path) -> str | None:
    """Why ``path`` cannot serve as the library folder (None: it can)."""
    try:
        if not path.exists():
            return f"library folder {path} does not exist"
        if not path.is_dir():
            return f"library folder {path} is not a folder"
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as exc:
        return f"library folder {path} cannot be read ({exc.strerror or exc})"
    return None


@dataclass(frozen=True)
class Settings:
    data_dir: ArtifactPath
    library_dir: Path | None  # None: remote data dir and no library given (queries need none)
    workers: int = field(default_factory=default_workers)
    library_source: str = SOURCE_FLAG  # how library_dir was chosen (SOURCE_*)

    def require_library(self) -> Path:
        if self.library_dir is None:
            raise LibraryNotGiven(
                f"the data directory {self.data_dir} is remote: give the library folder with --library or "
                f"{ENV_LIBRARY} (a path every worker can read)"
            )
        return self.library_dir

    def library_fix(self) -> str:
        """What to do when the library folder is unavailable, for how it was chosen."""
        data = f" --data {self.data_dir}" if self.data_dir != resolve_data_dir(None) else ""
        if self.library_source == SOURCE_RECORD:
            record = read_library_record(self.data_dir) or {}
            when = f" on {record['recorded_at']}" if record.get("recorded_at") else ""
            return (
                f"it is the library recorded by `{record.get('recorded_by', 'build')}`{when} in {library_record_path(self.data_dir)}; "
                f"mount or restore it, or build from its new place: music-pipeline build --library NEW_FOLDER{data}"
            )
        if self.library_source == SOURCE_ENV:
            return f"it comes from {ENV_LIBRARY}: set {ENV_LIBRARY} to your music folder (or unset it to use the recorded library)"
        if self.library_source == SOURCE_DEFAULT:
            return (
                f"no library is recorded for {self.data_dir}: give your music folder with --library DIR "
                f"(or {ENV_LIBRARY}=DIR), or run music-pipeline demo{data}"
            )
        return "check the --library argument"

    def check_library(self) -> Path:
        """The library folder, or LibraryUnavailable naming the folder, its origin and the fix."""
        library = self.require_library()
        problem = library_problem(library)
        if problem:
            raise LibraryUnavailable(f"{problem}: {self.library_fix()}")
        return library

    @classmethod
    def resolve(cls, data_dir=None, library_dir=None, workers: int | None = None) -> Settings:
        library, source = resolve_library(library_dir, data_dir)
        return cls(
            data_dir=resolve_data_dir(data_dir),
            library_dir=library,
            workers=workers if workers and workers > 0 else default_workers(),
            library_source=source,
        )

    @property
    def dagster_home(self) -> Path:
        if os.environ.get("DAGSTER_HOME"):
            return Path(os.environ["DAGSTER_HOME"]).resolve()
        if isinstance(self.data_dir, Path):
            return (self.data_dir / "dagster_home").resolve()
        return (Path.home() / ".music-pipeline" / "dagster_home").resolve()  # instance storage stays local

    @property
    def logs_dir(self) -> Path:
        """Build logs (native-library output, full warnings): always on local disk."""
        if isinstance(self.data_dir, Path):
            return self.data_dir / "logs"
        return self.dagster_home.parent / "logs"

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

from music_pipeline.artifacts import ArtifactPath, artifact_path, write_json
from music_pipeline.layout import DataLayout

DEFAULT_DATA_DIR = Path("data")
DEFAULT_LIBRARY_SUBDIR = "library"
# where a remote data directory keeps what must stay on local disk (Dagster instance, weights, logs)
LOCAL_HOME = Path.home() / ".music-pipeline"

# Every environment variable the program reads (documented in docs/development.md).
ENV_DATA = "MUSIC_PIPELINE_DATA"
ENV_LIBRARY = "MUSIC_LIBRARY"
ENV_WORKERS = "MUSIC_PIPELINE_WORKERS"
ENV_PARTITIONS = "MUSIC_PIPELINE_PARTITIONS"
ENV_BUCKETS = "MUSIC_PIPELINE_BUCKETS"
ENV_WEIGHTS = "MUSIC_PIPELINE_WEIGHTS"
ENV_VERBOSE = "MUSIC_PIPELINE_VERBOSE"
ENV_EXECUTOR = "MUSIC_PIPELINE_EXECUTOR"
ENV_CELERY_BROKER = "MUSIC_PIPELINE_CELERY_BROKER"
ENV_CELERY_BACKEND = "MUSIC_PIPELINE_CELERY_BACKEND"
ENV_REBUILD_CRON = "MUSIC_PIPELINE_REBUILD_CRON"
ENV_RETRAIN_SHARE = "MUSIC_PIPELINE_RETRAIN_SHARE"
ENV_DAGSTER_HOME = "DAGSTER_HOME"
ENV_EVENT_BATCH = "DAGSTER_EVENT_BATCH_SIZE"

EXECUTORS = ("multiprocess", "in_process", "celery")
DEFAULT_CELERY_BROKER = "redis://127.0.0.1:6379/0"
DEFAULT_REBUILD_CRON = "0 3 * * *"
# retrain a library model when more than this share of its training tracks changed
DEFAULT_RETRAIN_SHARE = 0.10
# events per batch: planned/materialized events of one asset over a 500-track range fit in one
DEFAULT_EVENT_BATCH = "1000"

# How the per-track assets are partitioned: one partition per track (personal and label libraries),
# or a fixed set of hash buckets of tracks (catalogues past ~100k tracks; see docs/scale.md).
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


def verbose() -> bool:
    """``--verbose`` / MUSIC_PIPELINE_VERBOSE: let native libraries' chatter through."""
    return os.environ.get(ENV_VERBOSE, "").strip().lower() in ("1", "true", "yes")


def set_verbose() -> None:
    """Verbose for this process and the ones it starts."""
    os.environ[ENV_VERBOSE] = "1"


def weights_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Where pinned pretrained files are cached (always a local folder): MUSIC_PIPELINE_WEIGHTS >
    ``<data>/cache/weights`` of a local data directory > ``~/.music-pipeline/weights``."""
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        return Path(env).expanduser().resolve()
    local = DataLayout(data_dir).weights_dir if data_dir is not None else None
    return local or (LOCAL_HOME / "weights").resolve()


def executor_kind() -> str:
    """MUSIC_PIPELINE_EXECUTOR: multiprocess (default) | in_process | celery."""
    kind = os.environ.get(ENV_EXECUTOR, EXECUTORS[0]).strip().lower()
    if kind not in EXECUTORS:
        raise SettingsError(f"{ENV_EXECUTOR}={kind!r}: expected {', '.join(EXECUTORS)}")
    return kind


def celery_urls() -> tuple[str, str]:
    """(broker, result backend) of the Celery executor; the backend defaults to the broker."""
    broker = os.environ.get(ENV_CELERY_BROKER, DEFAULT_CELERY_BROKER)
    return broker, os.environ.get(ENV_CELERY_BACKEND, broker)


def rebuild_cron() -> str:
    return os.environ.get(ENV_REBUILD_CRON, DEFAULT_REBUILD_CRON)


def retrain_share() -> float:
    """MUSIC_PIPELINE_RETRAIN_SHARE: the share of changed training tracks that makes a model stale."""
    raw = os.environ.get(ENV_RETRAIN_SHARE)
    if not raw:
        return DEFAULT_RETRAIN_SHARE
    share = float(raw)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{ENV_RETRAIN_SHARE}={raw!r}: expected a share between 0 and 1")
    return share


def enable_event_batching() -> None:
    """Let Dagster hand asset events to ``store_event_batch`` in batches (read at every event, so
    setting it in the run's process before the run starts is enough). A user's own setting wins."""
    os.environ.setdefault(ENV_EVENT_BATCH, DEFAULT_EVENT_BATCH)


def dagster_home_from_env() -> Path | None:
    raw = os.environ.get(ENV_DAGSTER_HOME)
    return Path(raw).resolve() if raw else None


def use_dagster_home(home: Path) -> Path:
    """DAGSTER_HOME for this process and its children, unless the user set one."""
    return Path(os.environ.setdefault(ENV_DAGSTER_HOME, str(home))).resolve()


def read_library_record(data_dir: str | os.PathLike | ArtifactPath) -> dict | None:
    """The library recorded in a local data directory, or None (none, remote, or unreadable)."""
    data = resolve_data_dir(data_dir)
    if not isinstance(data, Path):
        return None
    try:
        record = json.loads(DataLayout(data).library_record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("path"), str) else None


def record_library(data_dir: ArtifactPath, library: Path, chosen_by: str, recorded_by: str) -> ArtifactPath:
    """Remember which library this data directory was built from (written atomically)."""
    return write_json(
        DataLayout(data_dir).library_record,
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
                f"it is the library recorded by `{record.get('recorded_by', 'build')}`{when} in {DataLayout(self.data_dir).library_record}; "
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
        """DAGSTER_HOME > ``<data>/dagster_home`` > a local folder (instance storage stays local)."""
        return (
            dagster_home_from_env() or DataLayout(self.data_dir).dagster_home or (LOCAL_HOME / "dagster_home").resolve()
        )

    @property
    def logs_dir(self) -> Path:
        """Build logs (native-library output, full warnings): always on local disk."""
        return DataLayout(self.data_dir).logs_dir or self.dagster_home.parent / "logs"

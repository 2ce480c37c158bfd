"""Atomic, pickle-free artifact storage and the layout of the data directory.

Every write goes to a temporary file in the destination directory and is renamed into place,
so a reader sees either the old file or the new one, never a partial one (rename is atomic on
POSIX within one file system). Arrays are stored as ``.npz`` and always loaded with
``allow_pickle=False``; tables are parquet written by pyarrow.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; artifacts get the mode a plain open() would have given them
_FILE_MODE = 0o666 & ~_current_umask()


class UnsafePathError(ValueError):
    """A name would resolve outside the directory it must stay in."""


def safe_join(root: Path, *parts: str) -> Path:
    """Join ``parts`` under ``root`` and refuse anything that escapes it (path traversal)."""
    root = Path(root).resolve()
    candidate = root.joinpath(*parts).resolve()
    if candidate != root and root not in candidate.parents:
        raise UnsafePathError(f"{'/'.join(parts)!r} resolves outside {root}")
    return candidate


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(dest: Path, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text(dest: Path, text: str) -> Path:
    return write_bytes(dest, text.encode("utf-8"))


def write_json(dest: Path, obj: Any) -> Path:
    return write_text(dest, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_npz(dest: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write numeric/str arrays compressed; object arrays are refused (they would need pickle)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype=object, which cannot be stored without pickle")
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return write_bytes(dest, buf.getvalue())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def write_parquet(dest: Path, df: pd.DataFrame) -> Path:
    table = pa.Table.from_pandas(df, preserve_index=False)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(dest)


def read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    return pq.read_table(path, columns=columns).to_pandas()


class DataLayout:
    """Paths of every artifact under the data directory (documented in the README)."""

    def __init__(self, data_dir: Path):
        self.root = Path(data_dir).resolve()

    # per-track feature cache, keyed by content hash so a renamed file is not recomputed
    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    def features_path(self, content_hash: str, version: str) -> Path:
        return safe_join(self.features_dir, version, f"{content_hash}.npz")

    def failure_path(self, content_hash: str, version: str) -> Path:
        return safe_join(self.features_dir, version, "failed", f"{content_hash}.json")

    @property
    def hash_cache_path(self) -> Path:
        return self.root / "cache" / "content_hashes.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.root / "tables" / "library_manifest.parquet"

    @property
    def embeddings_path(self) -> Path:
        return self.root / "tables" / "embeddings.parquet"

    @property
    def skipped_path(self) -> Path:
        return self.root / "tables" / "skipped_tracks.parquet"

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    @property
    def lock_path(self) -> Path:
        return self.root / ".build.lock"

"""Atomic, pickle-free reads and writes of artifacts, on local disk or any fsspec URL.

The data directory is a local folder or any fsspec URL (``s3://bucket/prefix``, ``gs://…``,
``az://…``): local names become ``pathlib.Path``, URLs become ``upath.UPath``, and every read and
write of an artifact goes through the functions here, so the same code serves a laptop and
workers on several hosts sharing an object store.

Atomicity: a local write goes to a temporary file in the destination directory and is renamed
into place (rename is atomic on POSIX within one file system). On an object store a write is one
PUT of the finished file, which readers see whole or not at all. On other remote file systems
(sftp, webdav, …) the file is uploaded under a temporary name and moved into place. Arrays are
``.npz`` loaded with ``allow_pickle=False``; tables are parquet written by pyarrow.

Libraries that only write to local files (Keras, faiss) are given a local temporary path by
``atomic_path`` and their output is published from it; ``local_copy`` does the same for reads.
"""

from __future__ import annotations

import contextlib
import io
import json
import mmap as mmap_module
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

if TYPE_CHECKING:  # pandas, pyarrow and upath load on first use: `embed` and workers need none of them
    import pandas as pd
    import pyarrow as pa
    from upath import UPath

# A local Path or a UPath on an fsspec file system. Functions here accept either (or a string).
ArtifactPath = Union[Path, "UPath"]

_LOCAL_PROTOCOLS = {"", "file", "local"}
# Object stores: one PUT is atomic, and a rename would be a copy plus a delete.
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; artifacts get the mode a plain open() would have given them
_FILE_MODE = 0o666 & ~_current_umask()


class UnsafePathError(ValueError):
    """A name would resolve outside the directory it must stay in."""


def is_url(raw: str | os.PathLike) -> bool:
    return isinstance(raw, str) and "://" in raw


def _is_upath(obj: Any) -> bool:
    return type(obj).__module__.split(".", 1)[0] == "upath"


def artifact_path(raw: str | os.PathLike | UPath) -> ArtifactPath:
    """``raw`` as a local ``Path`` (plain names and ``file://`` URLs) or a ``UPath`` (other URLs).

    Remote file systems are opened without fsspec's directory-listing cache: other hosts write
    into the same prefixes, and a long-lived worker would otherwise keep answering from a
    listing made before their files existed.
    """
    if isinstance(raw, Path):
        return raw
    if _is_upath(raw):
        return Path(raw.path) if raw.protocol in _LOCAL_PROTOCOLS else raw
    if is_url(raw):
        from upath import UPath

        protocol = raw.split("://", 1)[0]
        if protocol in _LOCAL_PROTOCOLS:
            return Path(UPath(raw).path)
        return UPath(raw, use_listings_cache=False)
    return Path(raw)


def is_remote(p: str | os.PathLike | UPath) -> bool:
    return not isinstance(artifact_path(p), Path)


def safe_join(root: str | os.PathLike | UPath, *parts: str) -> ArtifactPath:
    """Join ``parts`` under ``root`` and refuse anything that escapes it (path traversal)."""
    root = artifact_path(root)
    if isinstance(root, Path):
        root = root.resolve()
        candidate = root.joinpath(*parts).resolve()
        if candidate != root and root not in candidate.parents:
            raise UnsafePathError(f"{'/'.join(parts)!r} resolves outside {root}")
        return candidate
    for part in parts:  # URLs have no symlinks: refusing '..', absolute and empty names is enough
        pieces = str(part).replace("\\", "/").split("/")
        if str(part).startswith("/") or any(x in ("", ".", "..") for x in pieces):
            raise UnsafePathError(f"{'/'.join(parts)!r} resolves outside {root}")
    return root.joinpath(*parts)


def ensure_dir(p: str | os.PathLike | UPath) -> ArtifactPath:
    """Create a local directory; object stores have no directories, so nothing to do there."""
    p = artifact_path(p)
    if isinstance(p, Path) or p.protocol not in _OBJECT_STORES:
        p.mkdir(parents=True, exist_ok=True)
    return p


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike | UPath, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a local temporary path; publish it as ``dest`` only if the block succeeds.

    ``suffix`` lets libraries that choose a format by the file ending (Keras, xgboost) see it.
    """
    dest = artifact_path(dest)
    if isinstance(dest, Path):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = dest.parent
    else:
        tmp_dir = None  # the system temp dir; published by upload below
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=tmp_dir)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if isinstance(dest, Path):
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp_path, _FILE_MODE)
            os.replace(tmp_path, dest)
        else:
            _upload(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _upload(local: Path, dest: UPath) -> None:
    fs = dest.fs
    if dest.protocol in _OBJECT_STORES:
        fs.put_file(str(local), dest.path)
        return
    fs.makedirs(dest.parent.path, exist_ok=True)
    staged = f"{dest.parent.path}/.{dest.name}.{os.getpid()}.uploading"
    fs.put_file(str(local), staged)
    fs.mv(staged, dest.path)


@contextlib.contextmanager
def local_copy(path: str | os.PathLike | UPath) -> Iterator[Path]:
    """A local file with the contents of ``path`` (the file itself when it is local)."""
    path = artifact_path(path)
    if isinstance(path, Path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="music-pipeline-") as tmp:
        local = Path(tmp) / path.name
        path.fs.get_file(path.path, str(local))
        yield local


def read_bytes(path: str | os.PathLike | UPath) -> bytes:
    return artifact_path(path).read_bytes()


def write_bytes(dest: str | os.PathLike | UPath, data: bytes) -> ArtifactPath:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return artifact_path(dest)


def write_text(dest: str | os.PathLike | UPath, text: str) -> ArtifactPath:
    return write_bytes(dest, text.encode("utf-8"))


def write_json(dest: str | os.PathLike | UPath, obj: Any) -> ArtifactPath:
    return write_text(dest, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike | UPath) -> Any:
    return json.loads(read_bytes(path).decode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path) or _is_upath(obj):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_npz(dest: str | os.PathLike | UPath, arrays: Mapping[str, np.ndarray], compress: bool = True) -> ArtifactPath:
    """Write numeric/str arrays (deflated unless ``compress`` is false); object arrays are refused
    (they would need pickle)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype=object, which cannot be stored without pickle")
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return write_bytes(dest, buf.getvalue())


def read_npz(path: str | os.PathLike | UPath) -> dict[str, np.ndarray]:
    path = artifact_path(path)
    source = path if isinstance(path, Path) else io.BytesIO(path.read_bytes())
    with np.load(source, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def npz_member_shape(path: str | os.PathLike | UPath, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array in an ``.npz`` from its header alone (nothing decompressed
    beyond the first bytes; on an object store a few small range reads)."""
    import zipfile

    with artifact_path(path).open("rb") as fh, zipfile.ZipFile(fh) as zf, zf.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
    return tuple(shape), np.dtype(dtype)


def write_npy(dest: str | os.PathLike | UPath, array: np.ndarray) -> ArtifactPath:
    with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)
    return artifact_path(dest)


def read_npy(path: str | os.PathLike | UPath, mmap: bool = False, random_access: bool = False) -> np.ndarray:
    """Memory-mapped when asked and local; a remote array is read whole. ``random_access``: the
    mapping is read in scattered small pieces (a lookup), so the kernel is told not to read ahead
    (without it each touched page brought its neighbours in, ~32 pages a touch)."""
    path = artifact_path(path)
    if isinstance(path, Path):
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        m = getattr(arr, "_mmap", None)
        if random_access and m is not None and hasattr(m, "madvise") and hasattr(mmap_module, "MADV_RANDOM"):
            m.madvise(mmap_module.MADV_RANDOM)
        return arr
    return np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)


def write_parquet(
    dest: str | os.PathLike | UPath, df: pd.DataFrame, metadata: Mapping[str, str] | None = None
) -> ArtifactPath:
    """``metadata``: extra key/value pairs kept in the file's schema (see ``read_parquet_metadata``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), **{k.encode(): str(v).encode() for k, v in metadata.items()}}
        )
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return artifact_path(dest)


def read_parquet(path: str | os.PathLike | UPath, columns: list[str] | None = None, filters=None) -> pd.DataFrame:
    return read_table(path, columns, filters).to_pandas()


def read_parquet_metadata(path: str | os.PathLike | UPath) -> dict[str, str]:
    """The key/value pairs of a parquet file's schema (without pandas' own), read from its footer."""
    import pyarrow.parquet as pq

    path = artifact_path(path)
    schema = pq.read_schema(path) if isinstance(path, Path) else pq.read_schema(path.path, filesystem=path.fs)
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items() if k != b"pandas"}


def read_table(path: str | os.PathLike | UPath, columns: list[str] | None = None, filters=None) -> pa.Table:
    """A parquet file as an Arrow table; ``filters`` as in ``pyarrow.parquet.read_table``."""
    import pyarrow.parquet as pq

    path = artifact_path(path)
    if isinstance(path, Path):
        return pq.read_table(path, columns=columns, filters=filters)
    return pq.read_table(path.path, columns=columns, filters=filters, filesystem=path.fs)


def list_names(path: str | os.PathLike | UPath) -> list[str]:
    """Names in a directory; none when it does not exist (an object store has no empty
    directories, so "missing" and "empty" are the same there). Remote: one LIST request, where
    ``is_dir`` + ``iterdir`` would make three."""
    path = artifact_path(path)
    try:
        if isinstance(path, Path):
            return os.listdir(path)
        entries = path.fs.ls(path.path, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    own = path.path.rstrip("/")
    return [e.rstrip("/").rsplit("/", 1)[-1] for e in entries if e.rstrip("/") != own]


def list_dir(path: str | os.PathLike | UPath) -> list[ArtifactPath]:
    """The entries of a directory as paths (see ``list_names``)."""
    path = artifact_path(path)
    return [path / name for name in list_names(path)]


def remove(path: str | os.PathLike | UPath) -> None:
    """Delete a file if it exists."""
    artifact_path(path).unlink(missing_ok=True)


def remove_tree(path: str | os.PathLike | UPath) -> None:
    """Delete a directory and everything under it, if it exists."""
    path = artifact_path(path)
    if isinstance(path, Path):
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.fs.rm(path.path, recursive=True)

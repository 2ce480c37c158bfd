"""The library's fingerprint index (``<data>/tables/fingerprint_index/``) and the questions
asked of it: which track a clip comes from (``identify``).

The index holds one entry per distinct content (files with identical bytes share it) and the
tracks that hold each content (key, relpath); it is rebuilt from the fingerprint store by the
library-level asset ``fingerprint_index`` (or by ``identify`` when it is missing, of an older
format or version, or older than the library's scan).

On disk (format 2): ``CURRENT.json`` names a folder holding the landmark arrays as plain ``.npy``
files (``hashes`` sorted, ``tracks``, ``frames`` and the ``directory`` of hash ranges), which a
lookup memory-maps without read-ahead: a clip's hashes read the page or two of their ranges, so a
lookup's memory is that of the clip, not of the library (~12 bytes a landmark stay on disk). ``library.npz`` beside them holds the small
per-content and per-track arrays. A rebuild writes a new folder and then ``CURRENT.json`` (atomic),
so a reader never mixes two builds; older folders and the first format's single
``fingerprint_index.npz`` (loaded whole) are removed.
"""

from __future__ import annotations

import logging
import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from music_pipeline.artifacts import (
    list_names,
    read_json,
    read_npy,
    read_npz,
    read_parquet,
    remove,
    remove_tree,
    safe_join,
    write_json,
    write_npy,
    write_npz,
)
from music_pipeline.audio.decode import decode
from music_pipeline.identity.fingerprint import fingerprint_signal
from music_pipeline.identity.index import FingerprintIndex, Match
from music_pipeline.identity.store import FINGERPRINT_VERSION, FingerprintStore
from music_pipeline.layout import DataLayout

log = logging.getLogger(__name__)

# a clip shorter than this is refused: too few landmarks to tell a match from chance;
MIN_CLIP_S = 4.9  # 5-s clips, with room for the samples an encoder trims

INDEX_FORMAT = 2  # 1: one .npz loaded whole; 2: memory-mapped .npy arrays under CURRENT.json
LANDMARK_ARRAYS = ("hashes", "tracks", "frames", "directory")
CURRENT = "CURRENT.json"


class IndexNotBuilt(Exception):
    pass


@dataclass
class LibraryIndex:
    index: FingerprintIndex
    keys: np.ndarray  # per track: key, relpath and the number of its content in ``index``
    relpaths: np.ndarray
    content_of: np.ndarray

    def track_of(self, content: int) -> tuple[str, str]:
        """(key, relpath) of the first track that holds content number ``content``."""
        i = int(np.flatnonzero(self.content_of == content)[0])
        return str(self.keys[i]), str(self.relpaths[i])


def _tracks(data_dir):
    path = DataLayout(data_dir).manifest_path
    if not path.is_file():
        raise IndexNotBuilt(f"no library scan in {data_dir} ({path} is missing): run `music-pipeline build` first")
    t = read_parquet(path, columns=["key", "relpath", "content_hash"])
    return t[t["content_hash"].notna()].sort_values("key")


def build_index(data_dir) -> tuple[LibraryIndex, list[str]]:
    """Build and store the index from the fingerprints of the scanned tracks; (index, relpaths of
    tracks without a stored fingerprint)."""
    store = FingerprintStore(data_dir)
    tracks = _tracks(data_dir)
    available = store.hashes()
    contents: dict[str, int] = {}
    items, keys, relpaths, content_of, missing = [], [], [], [], []
    for t in tracks.itertuples(index=False):
        h = t.content_hash
        if h not in contents:
            if h not in available:
                missing.append(t.relpath)
                continue
            try:
                fp = store.load(h)
            except Exception as exc:  # noqa: BLE001 - a damaged file: fingerprinted again next build
                log.warning("stored fingerprint of %s unreadable (%s): removed", t.relpath, exc)
                store.forget(h)
                missing.append(t.relpath)
                continue
            contents[h] = len(items)
            items.append((h, fp))
        keys.append(t.key)
        relpaths.append(t.relpath)
        content_of.append(contents[h])
    lib = LibraryIndex(
        FingerprintIndex.build(items),
        np.array(keys, dtype=str),
        np.array(relpaths, dtype=str),
        np.array(content_of, dtype=np.int32),
    )
    save_index(data_dir, lib)
    return lib, missing


def save_index(data_dir, lib: LibraryIndex) -> None:
    """Write ``lib`` as a new folder, then point ``CURRENT.json`` at it and remove older folders
    (and the first format's ``.npz``)."""
    layout = DataLayout(data_dir)
    root = layout.fingerprint_index_dir
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    folder = safe_join(root, name)
    for array in LANDMARK_ARRAYS:
        write_npy(folder / f"{array}.npy", getattr(lib.index, array))
    write_npz(
        folder / "library.npz",
        {
            "content_hashes": lib.index.content_hashes,
            "keys": lib.keys,
            "relpaths": lib.relpaths,
            "content_of": lib.content_of,
        },
        compress=False,
    )
    write_json(
        root / CURRENT,
        {
            "format": INDEX_FORMAT,
            "version": FINGERPRINT_VERSION,
            "folder": name,
            "landmarks": len(lib.index.hashes),
            "contents": len(lib.index),
            "tracks": len(lib.keys),
        },
    )
    for old in list_names(root):
        if old not in (name, CURRENT) and not old.startswith("."):
            remove_tree(root / old)
    remove(layout.legacy_fingerprint_index_path)


def _open_current(layout: DataLayout) -> LibraryIndex | None:
    """The index ``CURRENT.json`` names, memory-mapped; None when it is of another format or
    version, or its folder is gone (a rebuild replaced it meanwhile)."""
    try:
        current = read_json(layout.fingerprint_index_dir / CURRENT)
        if current.get("format") != INDEX_FORMAT or current.get("version") != FINGERPRINT_VERSION:
            return None
        folder = safe_join(layout.fingerprint_index_dir, str(current["folder"]))
        arrays = {a: read_npy(folder / f"{a}.npy", mmap=True, random_access=True) for a in LANDMARK_ARRAYS}
        meta = read_npz(folder / "library.npz")
    except (FileNotFoundError, KeyError, ValueError) as exc:
        log.info("fingerprint index not usable (%s): rebuilt", exc)
        return None
    if len(arrays["hashes"]) != current.get("landmarks"):
        return None
    index = MappedIndex(
        arrays["hashes"], arrays["tracks"], arrays["frames"], meta["content_hashes"], arrays["directory"]
    )
    return LibraryIndex(index, meta["keys"], meta["relpaths"], meta["content_of"])


class MappedIndex(FingerprintIndex):
    """A memory-mapped index that asks the kernel for every page a lookup step will read before
    reading any (``madvise(MADV_WILLNEED)``): the reads of a cold lookup then go to the disk
    together instead of one page fault after another."""

    def will_need(self, array: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        m = getattr(array, "_mmap", None)
        if m is None or not hasattr(mmap, "MADV_WILLNEED") or not len(lo):
            return
        start = array.offset % mmap.ALLOCATIONGRANULARITY  # where the data starts in the mapping
        item = array.itemsize
        first = (start + np.asarray(lo, dtype=np.int64) * item) // mmap.PAGESIZE
        last = (start + np.maximum(np.asarray(hi, dtype=np.int64) * item - 1, 0)) // mmap.PAGESIZE
        order = np.argsort(first, kind="stable")
        first, last = first[order], np.maximum.accumulate(last[order])
        # runs of touching or overlapping pages, one madvise each
        breaks = np.flatnonzero(first[1:] > last[:-1] + 1) + 1
        for a, z in zip(np.r_[0, breaks], np.r_[breaks, len(first)], strict=True):
            p0, p1 = int(first[a]), int(last[z - 1])
            m.madvise(mmap.MADV_WILLNEED, p0 * mmap.PAGESIZE, (p1 - p0 + 1) * mmap.PAGESIZE)


def index_mtime(data_dir) -> float | None:
    """When the current index was written (None: there is none)."""
    path = DataLayout(data_dir).fingerprint_index_dir / CURRENT
    return path.stat().st_mtime if path.is_file() else None


def load_index(data_dir, rebuild_if_stale: bool = True) -> LibraryIndex:
    """The stored index, memory-mapped; rebuilt first when missing, of another format or version
    (the first format's ``.npz`` included) or older than the scan."""
    layout = DataLayout(data_dir)
    written = index_mtime(data_dir)
    stale = written is None or (layout.manifest_path.is_file() and layout.manifest_path.stat().st_mtime > written)
    if not stale and (lib := _open_current(layout)) is not None:
        return lib
    if not rebuild_if_stale:
        raise IndexNotBuilt(f"no fingerprint index in {data_dir}: run `music-pipeline build` first")
    lib, _ = build_index(data_dir)
    if not len(lib.keys):
        raise IndexNotBuilt(f"no fingerprinted tracks in {data_dir}: run `music-pipeline build` first")
    return lib


def identify_file(path: str | Path, lib: LibraryIndex) -> dict:
    """``{"file", "match": {"track", "path", "offset_s", "confidence"} | None}`` for one clip;
    ``AudioError`` (naming the file) when it cannot be read or is shorter than MIN_CLIP_S."""
    a = decode(path, min_duration_s=MIN_CLIP_S)
    m: Match | None = lib.index.identify(fingerprint_signal(a.y, a.sr))
    if m is None:
        return {"file": str(path), "match": None}
    key, relpath = lib.track_of(m.track)
    return {
        "file": str(path),
        "match": {
            "track": key,
            "path": relpath,
            "offset_s": round(m.offset_s, 2),
            "confidence": round(m.confidence, 3),
        },
    }

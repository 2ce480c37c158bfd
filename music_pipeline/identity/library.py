"""The library's fingerprint index (``<data>/tables/fingerprint_index.npz``) and the questions
asked of it: which track a clip comes from (``identify``).

The index holds one entry per distinct content (files with identical bytes share it) and the
tracks that hold each content (key, relpath); it is rebuilt from the fingerprint store by the
library-level asset ``fingerprint_index`` (or by ``identify`` when it is missing or older than
the library's scan).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from music_pipeline.artifacts import read_npz, read_parquet, write_npz
from music_pipeline.audio.decode import decode
from music_pipeline.identity.fingerprint import fingerprint_signal
from music_pipeline.identity.index import FingerprintIndex, Match
from music_pipeline.identity.store import FINGERPRINT_VERSION, FingerprintStore
from music_pipeline.layout import DataLayout

log = logging.getLogger(__name__)

# a clip shorter than this is refused: too few landmarks to tell a match from chance;
MIN_CLIP_S = 4.9  # 5-s clips, with room for the samples an encoder trims


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
    write_npz(
        DataLayout(data_dir).fingerprint_index_path,
        {
            **lib.index.to_arrays(),
            "keys": lib.keys,
            "relpaths": lib.relpaths,
            "content_of": lib.content_of,
            "version": np.array(FINGERPRINT_VERSION),
        },
        compress=False,
    )
    return lib, missing


def load_index(data_dir, rebuild_if_stale: bool = True) -> LibraryIndex:
    """The stored index; rebuilt first when missing, of another version or older than the scan."""
    layout = DataLayout(data_dir)
    path = layout.fingerprint_index_path
    stale = not path.is_file() or (
        layout.manifest_path.is_file() and layout.manifest_path.stat().st_mtime > path.stat().st_mtime
    )
    if not stale:
        z = read_npz(path)
        if str(z["version"]) == FINGERPRINT_VERSION:
            return LibraryIndex(FingerprintIndex.from_arrays(z), z["keys"], z["relpaths"], z["content_of"])
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

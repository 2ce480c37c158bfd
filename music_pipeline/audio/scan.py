"""Scan a music library: which files are tracks, their stable keys, labels, groups and hashes."""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from music_pipeline.audio.decode import AUDIO_EXTENSIONS, FFMPEG_EXTENSIONS, SOUNDFILE_EXTENSIONS  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)


LABELS_FILE = "labels.csv"
_KEY_STEM_MAX = 60


def track_key(relpath: str) -> str:
    """Stable partition key for a path relative to the library root.

    Readable stem (safe characters only) plus 8 hex digits of the SHA-1 of the exact relative path,
    so two paths that slug to the same stem ("a b.mp3", "a_b.mp3", "a b.wav") never collide.
    """
    posix = PurePosixPath(relpath).as_posix()
    stem = re.sub(r"[^A-Za-z0-9]+", "_", str(PurePosixPath(posix).with_suffix(""))).strip("_")
    stem = stem[:_KEY_STEM_MAX].rstrip("_") or "track"
    digest = hashlib.sha1(posix.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{stem}-{digest}"


def content_hash(path: Path, chunk_size: int = 1 << 20) -> str:
    """BLAKE2b-128 of the file's bytes: the identity of the audio content."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class TrackRef:
    key: str
    relpath: str
    path: str
    label: str | None
    group: str | None
    size: int
    mtime_ns: int
    content_hash: str | None = None
    scan_error: str | None = None  # e.g. permission denied: the track is reported, not dropped

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class LibraryScan:
    root: Path
    tracks: list[TrackRef]
    problems: list[tuple[str, str]]  # (relpath or dir, reason) for things that are not tracks

    def by_key(self) -> dict[str, TrackRef]:
        return {t.key: t for t in self.tracks}

    def to_frame(self) -> pd.DataFrame:
        cols = list(TrackRef.__dataclass_fields__)
        return pd.DataFrame([t.as_dict() for t in self.tracks], columns=cols)

    def duplicates(self) -> dict[str, list[str]]:
        """content hash -> keys, for content that appears under more than one path."""
        seen: dict[str, list[str]] = {}
        for t in self.tracks:
            if t.content_hash:
                seen.setdefault(t.content_hash, []).append(t.key)
        return {h: keys for h, keys in seen.items() if len(keys) > 1}


def _walk_audio_files(root: Path, problems: list[tuple[str, str]]) -> list[Path]:
    """Walk ``root`` following directory symlinks once each (a symlink loop is reported, not looped)."""
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()

    def onerror(err: OSError) -> None:
        problems.append((str(err.filename), f"cannot list directory: {err.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=onerror):
        try:
            st = os.stat(dirpath)
        except OSError as exc:
            problems.append((dirpath, f"cannot stat directory: {exc.strerror}"))
            dirnames[:] = []
            continue
        ident = (st.st_dev, st.st_ino)
        if ident in visited:
            problems.append((os.path.relpath(dirpath, root), "directory already scanned (symlink loop or alias)"))
            dirnames[:] = []
            continue
        visited.add(ident)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            if p.suffix.lower() in AUDIO_EXTENSIONS:
                found.append(p)
    return found


def read_labels_csv(root: Path) -> dict[str, tuple[str | None, str | None]]:
    """``labels.csv`` beside the audio: ``path,label[,group]`` with paths relative to the root."""
    path = root / LABELS_FILE
    if not path.is_file():
        return {}
    out: dict[str, tuple[str | None, str | None]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    for row in rows:
        if not row or not row[0].strip():
            continue
        rel = PurePosixPath(row[0].strip()).as_posix()
        label = row[1].strip() or None if len(row) > 1 else None
        group = row[2].strip() or None if len(row) > 2 else None
        out[rel] = (label, group)
    return out


def _tag_label_and_group(path: Path) -> tuple[str | None, str | None]:
    try:
        import mutagen

        tags = mutagen.File(path, easy=True)
    except Exception:  # noqa: BLE001 - unreadable tags are not an error: the label is optional
        return None, None
    if not tags:
        return None, None

    def first(name: str) -> str | None:
        try:
            vals = tags.get(name)
        except Exception:  # noqa: BLE001 - mutagen tag readers raise many kinds; the label is optional
            return None
        return str(vals[0]).strip() or None if vals else None

    return first("genre"), first("albumartist") or first("artist") or first("album")


def _label_and_group(rel: str, path: Path, labels: dict) -> tuple[str | None, str | None]:
    if rel in labels:
        return labels[rel]
    parts = PurePosixPath(rel).parts
    if len(parts) >= 2:
        label = parts[0]
        # library/<label>/<album or artist>/file: the second folder is the best group we know
        group = f"{parts[0]}/{parts[1]}" if len(parts) >= 3 else None
        return label, group
    return _tag_label_and_group(path)


class HashCache:
    """Content hashes remembered by (relpath, size, mtime_ns): an unchanged file is never re-read."""

    def __init__(self, path: str | os.PathLike | None):
        from music_pipeline.artifacts import artifact_path, read_parquet

        self.path = artifact_path(path) if path else None
        self._entries: dict[str, tuple[int, int, str]] = {}
        if self.path is not None and self.path.is_file():
            try:
                df = read_parquet(self.path)
                for r in df.itertuples(index=False):
                    self._entries[r.relpath] = (int(r.size), int(r.mtime_ns), str(r.content_hash))
            except Exception as exc:  # noqa: BLE001 - a corrupt cache costs a re-hash, never a failure
                log.warning("ignoring unreadable hash cache %s: %s", path, exc)
        self.dirty = False

    def get(self, rel: str, size: int, mtime_ns: int) -> str | None:
        hit = self._entries.get(rel)
        return hit[2] if hit and hit[0] == size and hit[1] == mtime_ns else None

    def put(self, rel: str, size: int, mtime_ns: int, digest: str) -> None:
        self._entries[rel] = (size, mtime_ns, digest)
        self.dirty = True

    def save(self, keep: set[str]) -> None:
        if not self.path:
            return
        if not self.dirty and set(self._entries) == keep:
            return
        from music_pipeline.artifacts import write_parquet

        rows = [(r, *v) for r, v in self._entries.items() if r in keep]
        write_parquet(self.path, pd.DataFrame(rows, columns=["relpath", "size", "mtime_ns", "content_hash"]))


def scan_library(
    root: str | os.PathLike, hash_cache_path: str | os.PathLike | None = None, with_hashes: bool = True
) -> LibraryScan:
    """List the tracks under ``root`` with keys, labels, groups and (cached) content hashes."""
    root = Path(root).resolve()
    problems: list[tuple[str, str]] = []
    if not root.is_dir():
        raise FileNotFoundError(f"library folder {root} does not exist or is not a directory")
    labels = read_labels_csv(root)
    cache = HashCache(hash_cache_path) if with_hashes else None
    tracks: list[TrackRef] = []
    keys_seen: dict[str, str] = {}
    for p in _walk_audio_files(root, problems):
        rel = p.relative_to(root).as_posix()
        key = track_key(rel)
        if key in keys_seen:  # practically impossible (SHA-1 of distinct paths), but never silent
            problems.append((rel, f"track key {key} collides with {keys_seen[key]}"))
            continue
        keys_seen[key] = rel
        label, group = _label_and_group(rel, p, labels)
        try:
            st = p.stat()
        except OSError as exc:
            tracks.append(TrackRef(key, rel, str(p), label, group, 0, 0, None, f"cannot stat file: {exc.strerror}"))
            continue
        digest, error = None, None
        if cache is not None:
            digest = cache.get(rel, st.st_size, st.st_mtime_ns)
            if digest is None:
                try:
                    digest = content_hash(p)
                    cache.put(rel, st.st_size, st.st_mtime_ns, digest)
                except OSError as exc:
                    error = f"cannot read file: {exc.strerror or exc}"
        tracks.append(TrackRef(key, rel, str(p), label, group, st.st_size, st.st_mtime_ns, digest, error))
    if cache is not None:
        cache.save({t.relpath for t in tracks})
    return LibraryScan(root=root, tracks=tracks, problems=problems)

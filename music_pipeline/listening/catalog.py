"""Which library track an event names: a track key, a library path (absolute or relative to the
library) or, for ListenBrainz / Last.fm exports, the artist and title tags of the files.

The names come from the library manifest (``<data>/tables/library_manifest.parquet``); paths and
tags are used to *find* a track, never as features of one.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path, PurePosixPath

from music_pipeline.artifacts import read_parquet
from music_pipeline.layout import DataLayout


def norm_tag(text) -> str:
    """Artist/title text compared loosely: case, accents, punctuation and spacing ignored."""
    text = unicodedata.normalize("NFKD", str(text or "")).casefold()
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


class Catalog:
    """Track keys of a library, and the ways an event may name one of them."""

    def __init__(self, keys: list[str], relpaths: list[str], library_root: Path | None):
        self.keys = list(keys)
        self.key_set = set(self.keys)
        self.by_relpath = {PurePosixPath(r).as_posix(): k for k, r in zip(keys, relpaths, strict=True)}
        self.relpaths = dict(zip(keys, relpaths, strict=True))
        self.library_root = Path(library_root) if library_root else None
        self._roots = []
        if self.library_root is not None:
            self._roots = [self.library_root]
            resolved = self.library_root.resolve()
            if resolved != self.library_root:
                self._roots.append(resolved)
        self._by_tags: dict[tuple[str, str], str] | None = None

    @classmethod
    def open(cls, data_dir, library_root: str | Path | None = None) -> Catalog:
        layout = DataLayout(data_dir)
        if not layout.manifest_path.exists():
            raise FileNotFoundError(
                f"no library manifest in {layout.root}: build the library first (`music-pipeline build`)"
            )
        t = read_parquet(layout.manifest_path, columns=["key", "relpath"])
        if library_root is None:
            from music_pipeline.settings import read_library_record

            record = read_library_record(layout.root) or {}
            library_root = record.get("path")
        return cls(t["key"].astype(str).tolist(), t["relpath"].astype(str).tolist(), library_root)

    def resolve(self, name: str) -> str | None:
        """The key of the track ``name`` stands for (key, absolute or library-relative path), or None."""
        name = str(name).strip()
        if name in self.key_set:
            return name
        rel = PurePosixPath(name.replace(os.sep, "/")).as_posix()
        if rel in self.by_relpath:
            return self.by_relpath[rel]
        p = Path(name)
        if p.is_absolute():
            for root in self._roots:
                for candidate in (p, Path(os.path.normpath(p))):
                    try:
                        rel = candidate.relative_to(root).as_posix()
                    except ValueError:
                        continue
                    if rel in self.by_relpath:
                        return self.by_relpath[rel]
            try:
                resolved = p.resolve()
            except OSError:
                return None
            for root in self._roots:
                try:
                    rel = resolved.relative_to(root.resolve()).as_posix()
                except ValueError:
                    continue
                if rel in self.by_relpath:
                    return self.by_relpath[rel]
        return None

    def by_tags(self, artist, title) -> str | None:
        """The track whose files' artist and title tags match (None when none or several do)."""
        if self._by_tags is None:
            self._by_tags = self._read_tags()
        return self._by_tags.get((norm_tag(artist), norm_tag(title)))

    def _read_tags(self) -> dict[tuple[str, str], str]:
        import mutagen

        found: dict[tuple[str, str], str | None] = {}
        if self.library_root is None:
            return {}
        for key, rel in self.relpaths.items():
            try:
                tags = mutagen.File(self.library_root / PurePosixPath(rel), easy=True)
            except Exception:  # noqa: BLE001 - unreadable tags: the track just cannot be matched by tags
                tags = None
            if not tags:
                continue
            artist = (tags.get("artist") or tags.get("albumartist") or [""])[0]
            title = (tags.get("title") or [""])[0]
            pair = (norm_tag(artist), norm_tag(title))
            if pair[0] and pair[1]:
                found[pair] = None if pair in found else key  # ambiguous tags match nothing
        return {pair: key for pair, key in found.items() if key is not None}

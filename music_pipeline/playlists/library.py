"""The library's playlists: tracks grouped by sound, named, ordered, saved as M3U8 and XSPF.

Only the audio counts: the learned embedding and the 641 hand-crafted dimensions place the tracks
(``clusters``), the tagger's tags,
the measured tempo and the difficulty level name them (``describe``). File names, folders and
labels are shown, never used.

Saved under ``<data>/playlists/`` (``DataLayout.playlists_dir``): ``playlists.json`` (what
``music-pipeline playlists --json`` prints, plus how the groups were found) and, per playlist,
``NN-<name>.m3u8`` and ``NN-<name>.xspf`` (absolute paths, written by ``formats``); the
track → playlist table ``<data>/tables/playlists.parquet`` (key, playlist, position) colours the
map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from music_pipeline.artifacts import (
    ensure_dir,
    list_dir,
    read_json,
    read_parquet,
    remove,
    write_json,
    write_parquet,
    write_text,
)
from music_pipeline.layout import DataLayout
from music_pipeline.playlists import formats
from music_pipeline.playlists.clusters import MIN_K, MISFIT_SHARE, cluster, misfits, playlist_space
from music_pipeline.playlists.describe import describe_groups, sequence, tag_scores

PLAYLISTS_JSON = "playlists.json"
PLAYLISTS_FORMAT = 1
FILE_KINDS = ("m3u8", "xspf")
TRACK_COLUMNS = ["key", "playlist", "position"]
MISFIT_REASON = f"sounds like no playlist (among the {MISFIT_SHARE:.0%} of tracks farthest from their group's centre)"


class PlaylistsNotBuilt(FileNotFoundError):
    pass


@dataclass
class LibraryPlaylists:
    playlists: list[dict]  # name, why, tracks [{track, path, relpath, title, duration_s}], facts
    clustering: dict = field(default_factory=dict)
    left_out: list[dict] = field(default_factory=list)  # {track, relpath, reason}

    def as_json(self) -> dict:
        return {
            "format": PLAYLISTS_FORMAT,
            "playlists": self.playlists,
            "clustering": self.clustering,
            "left_out": self.left_out,
        }

    def track_table(self) -> pd.DataFrame:
        rows = [(t["track"], p["name"], i) for p in self.playlists for i, t in enumerate(p["tracks"])]
        return pd.DataFrame(rows, columns=TRACK_COLUMNS)


def make_playlists(
    table: pd.DataFrame, difficulty: pd.DataFrame | None = None, library_root: str | Path | None = None, seed: int = 0
) -> LibraryPlaylists:
    """Playlists of the tracks of ``table`` (the embeddings table joined with the learned table:
    key, relpath, duration_s, tempo_bpm, the learned embedding and the tag scores); ``difficulty``
    (key, level) names levels when given. Tracks without the learned embedding are left out."""
    from music_pipeline.features.embedding import FEATURE_NAMES
    from music_pipeline.learned.store import LEARNED_NAMES, TAG_NAMES, TAG_TEXT

    learned = table[LEARNED_NAMES].to_numpy(dtype=np.float64)
    hand = table[FEATURE_NAMES].to_numpy(dtype=np.float64)
    has_learned, has_hand = np.isfinite(learned).all(axis=1), np.isfinite(hand).all(axis=1)
    usable = has_learned & has_hand
    left_out = [
        {
            "track": k,
            "relpath": r,
            "reason": "no learned embedding (the pretrained network did not analyse it)"
            if not ok_learned
            else "features not finite (extracted by an older or damaged pass)",
        }
        for k, r, ok_learned in zip(table["key"][~usable], table["relpath"][~usable], has_learned[~usable], strict=True)
    ]
    t = table[usable].reset_index(drop=True)
    if t.empty:
        return LibraryPlaylists([], {"reason": "no track has the learned embedding and finite features"}, left_out)
    blocks = [learned[usable], hand[usable]]
    if len(t) < 2 * MIN_K:  # too few to split: one playlist
        labels = np.zeros(len(t), dtype=np.int64)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            vectors = playlist_space(blocks, seed=seed).vectors if len(t) > 1 else np.ones((1, 1))
        summary = {"k": 1, "reason": f"{len(t)} tracks: too few to split (need {2 * MIN_K})"}
    else:
        c = cluster(blocks, seed=seed)
        labels, vectors, summary = c.labels, c.space.vectors, c.summary()
        apart = misfits(vectors, labels)
        summary["misfits"] = int(apart.sum())
        left_out += [
            {"track": str(k), "relpath": str(r), "reason": MISFIT_REASON}
            for k, r in zip(t["key"][apart], t["relpath"][apart], strict=True)
        ]
        labels = np.where(apart, -1, labels)  # named and ordered without them
    tag_z, tag_names = tag_scores(t[TAG_NAMES].to_numpy(dtype=np.float64), [TAG_TEXT[n] for n in TAG_NAMES])
    levels = _levels(t["key"], difficulty)
    tempo = t["tempo_bpm"].to_numpy(dtype=np.float64) if "tempo_bpm" in t else np.full(len(t), np.nan)
    descriptions = describe_groups(labels, tag_z, tag_names, tempo, levels)
    root = Path(library_root) if library_root else None
    playlists = []
    for g, d in enumerate(descriptions):
        rows = np.flatnonzero(labels == g)
        rows = rows[sequence(vectors[rows])]
        tracks = [_track(t.iloc[int(i)], root) for i in rows]
        playlists.append({"name": d.name, "why": d.why, "tracks": tracks, "facts": d.facts})
    return LibraryPlaylists(playlists, summary, left_out)


def _levels(keys: pd.Series, difficulty: pd.DataFrame | None) -> list[str | None]:
    if difficulty is None or not {"key", "level"} <= set(difficulty.columns):
        return [None] * len(keys)
    level = dict(zip(difficulty["key"], difficulty["level"], strict=True))
    return [lv if isinstance(lv := level.get(k), str) and lv else None for k in keys]


def _track(row, root: Path | None) -> dict:
    relpath = str(row["relpath"])
    duration = row.get("duration_s")
    return {
        "track": str(row["key"]),
        "path": str(root / relpath) if root else relpath,
        "relpath": relpath,
        "title": PurePosixPath(relpath).stem,
        "duration_s": float(duration) if duration is not None and np.isfinite(duration) else None,
    }


def read_inputs(data_dir) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The embeddings table joined with the learned table, and the difficulty table if built."""
    from music_pipeline.learned.table import read_learned_table, with_learned

    layout = DataLayout(data_dir)
    if not layout.embeddings_path.is_file():
        raise PlaylistsNotBuilt(f"{layout.embeddings_path} does not exist: build the library first")
    table = with_learned(read_parquet(layout.embeddings_path), read_learned_table(data_dir))
    diff = layout.difficulty_table_path
    return table, (read_parquet(diff, columns=["key", "level"]) if diff.is_file() else None)


def file_stem(position: int, name: str) -> str:
    return formats.filename(f"{position + 1:02d}-{name}", "x")[:-2]


def save_playlists(result: LibraryPlaylists, data_dir) -> list:
    """Write playlists.json, the M3U8/XSPF files (older playlist files removed) and the
    track table; returns the paths written."""
    layout = DataLayout(data_dir)
    directory = ensure_dir(layout.playlists_dir)
    written = []
    for i, p in enumerate(result.playlists):
        p["files"] = {}
        entries = [
            {"path": t["path"], "title": t["title"], "label": None, "duration_s": t["duration_s"]} for t in p["tracks"]
        ]
        for kind in FILE_KINDS:
            render = formats.m3u8 if kind == "m3u8" else formats.xspf
            dest = directory / f"{file_stem(i, p['name'])}.{kind}"
            written.append(write_text(dest, render(p["name"], entries)))
            p["files"][kind] = dest.name
    keep = {w.name for w in written}
    for old in list_dir(directory):
        if old.name.endswith(tuple(f".{k}" for k in FILE_KINDS)) and old.name not in keep:
            remove(old)
    written.append(write_json(directory / PLAYLISTS_JSON, result.as_json()))
    written.append(write_parquet(layout.playlist_tracks_path, result.track_table()))
    return written


def build_playlists(data_dir, library_root=None, seed: int = 0) -> LibraryPlaylists:
    """Read the tables of ``data_dir``, make the playlists, save them."""
    table, difficulty = read_inputs(data_dir)
    result = make_playlists(table, difficulty, library_root, seed)
    save_playlists(result, data_dir)
    return result


def load_playlists(data_dir) -> dict:
    """The saved ``playlists.json`` (raises ``PlaylistsNotBuilt``)."""
    path = DataLayout(data_dir).playlists_dir / PLAYLISTS_JSON
    if not path.is_file():
        raise PlaylistsNotBuilt(f"no playlists in {DataLayout(data_dir).root}: build the library first")
    return read_json(path)


def public_json(saved: dict) -> dict:
    """What ``playlists --json`` prints: each playlist's name, tracks (track key, absolute path,
    title, duration) and why, and the files written."""
    return {
        "playlists": [
            {
                "name": p["name"],
                "why": p["why"],
                "tracks": [{k: t[k] for k in ("track", "path", "title", "duration_s")} for t in p["tracks"]],
                "files": p.get("files", {}),
            }
            for p in saved.get("playlists", [])
        ],
        "clustering": saved.get("clustering", {}),
        "left_out": saved.get("left_out", []),
    }

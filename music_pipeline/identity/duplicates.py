"""Tracks that hold the same recording: identical bytes, or another encoding, bitrate, level, light
noise, a trim or padding of it.

Each distinct content is asked of the index in ``WINDOWS`` windows of ``WINDOW_S`` seconds spread
over it (a sample: the cost stays a few lookups per track). Another content is the same recording
when, in most of those windows, it holds a large share of the window's landmarks at one aligned
offset (``SHARE``, and at least the identification's ``MIN_VOTES``): different music, even of the
same game with the same instruments, shares a few chance landmarks, scattered over offsets.
Pairs are joined into groups (union-find); files of one content are one group of kind
``identical bytes``, a group holding several contents is ``same recording``.

The groups are computed once per build (the ``duplicate_groups`` asset, after the fingerprint
index) into ``<data>/tables/duplicate_groups.parquet`` (group, kind, track, path: one row per
track of a group); ``duplicates``, the build summary, the explorer and the similarity queries read
that table. ``library_duplicates`` computes them again only when it is missing or older than the
index or the scan.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from music_pipeline.artifacts import read_parquet, read_parquet_metadata, write_parquet
from music_pipeline.identity.fingerprint import FRAME_S, Fingerprint
from music_pipeline.identity.index import MIN_VOTES
from music_pipeline.identity.library import LibraryIndex, index_mtime, load_index
from music_pipeline.identity.store import FINGERPRINT_VERSION, FingerprintStore
from music_pipeline.layout import DataLayout

WINDOWS = 6
WINDOW_S = 10.0
SHARE = 0.05  # of a window's landmarks, at one aligned offset
IDENTICAL, SAME_RECORDING = "identical bytes", "same recording"
# Bump when the grouping of the same fingerprints changes (the table is then computed again).
DUPLICATES_VERSION = f"1-{FINGERPRINT_VERSION}"
TABLE_COLUMNS = ["group", "kind", "track", "path"]
VERSION_KEY = "music_pipeline.duplicates_version"


def _windows(fp: Fingerprint) -> list[Fingerprint]:
    span = round(WINDOW_S / FRAME_S)
    last = int(fp.frames.max()) if len(fp.frames) else 0
    starts = np.linspace(0, max(0, last - span), WINDOWS).astype(int)
    out = []
    for s in np.unique(starts):
        keep = (fp.frames >= s) & (fp.frames < s + span)
        out.append(Fingerprint(fp.hashes[keep], fp.frames[keep] - s, WINDOW_S))
    return out


def same_recordings(content: int, fp: Fingerprint, lib: LibraryIndex) -> set[int]:
    """The other contents of the index that hold the recording of ``fp`` (content ``content``)."""
    windows = _windows(fp)
    hits: dict[int, int] = {}
    for w in windows:
        track, _, votes = lib.index.votes(w, exclude=content)
        need = max(MIN_VOTES, SHARE * len(w.hashes))
        for t in np.unique(track[votes >= need]):
            hits[int(t)] = hits.get(int(t), 0) + 1
    return {t for t, n in hits.items() if n * 2 > len(windows)}


def _root(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def duplicate_groups(data_dir, lib: LibraryIndex) -> list[dict]:
    """``[{"kind", "tracks": [{"track", "path"}]}]``: every group of two or more tracks holding the
    same recording, in the order of their first track's key."""
    store = FingerprintStore(data_dir)
    n = len(lib.index)
    parent = list(range(n))
    for c in range(n):
        fp = store.load(str(lib.index.content_hashes[c]))
        for other in same_recordings(c, fp, lib):
            parent[_root(parent, other)] = _root(parent, c)
    members: dict[int, list[int]] = {}
    for i, c in enumerate(lib.content_of):
        members.setdefault(_root(parent, int(c)), []).append(i)
    groups = []
    for rows in members.values():
        if len(rows) < 2:
            continue
        contents = {int(lib.content_of[i]) for i in rows}
        rows = sorted(rows, key=lambda i: str(lib.keys[i]))
        groups.append(
            {
                "kind": IDENTICAL if len(contents) == 1 else SAME_RECORDING,
                "tracks": [{"track": str(lib.keys[i]), "path": str(lib.relpaths[i])} for i in rows],
            }
        )
    return sorted(groups, key=lambda g: g["tracks"][0]["track"])


def groups_table(groups: list[dict]) -> pd.DataFrame:
    """One row per track of a group: group (0-based, in the groups' order), kind, track, path."""
    rows = [(g, grp["kind"], t["track"], t["path"]) for g, grp in enumerate(groups) for t in grp["tracks"]]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS).astype({"group": "int32"})


def groups_of_table(table: pd.DataFrame) -> list[dict]:
    """The inverse of ``groups_table``."""
    out = []
    for _, rows in table.sort_values("group", kind="stable").groupby("group", sort=True):
        out.append(
            {
                "kind": str(rows["kind"].iloc[0]),
                "tracks": [{"track": str(k), "path": str(p)} for k, p in zip(rows["track"], rows["path"], strict=True)],
            }
        )
    return out


def write_duplicates(data_dir, groups: list[dict]) -> None:
    write_parquet(DataLayout(data_dir).duplicates_path, groups_table(groups), {VERSION_KEY: DUPLICATES_VERSION})


def read_duplicates(data_dir) -> pd.DataFrame | None:
    """The stored table when it is of this version and not older than the index and the scan;
    None otherwise (computed again by the next build, or by ``library_duplicates``)."""
    layout = DataLayout(data_dir)
    path = layout.duplicates_path
    if not path.is_file():
        return None
    written = path.stat().st_mtime
    index = index_mtime(data_dir)
    if index is None or index > written:
        return None
    if layout.manifest_path.is_file() and layout.manifest_path.stat().st_mtime > written:
        return None
    try:
        if read_parquet_metadata(path).get(VERSION_KEY) != DUPLICATES_VERSION:
            return None
        return read_parquet(path, columns=TABLE_COLUMNS)
    except Exception:  # noqa: BLE001 - a damaged table: the groups are computed again
        return None


def group_per_track(table: pd.DataFrame | None, keys) -> np.ndarray:
    """For each track key of ``keys``: its group number in ``table``, -1 when it is in none."""
    if table is None or not len(table):
        return np.full(len(keys), -1, dtype=np.int64)
    group = dict(zip(table["track"].astype(str), table["group"].astype(int), strict=True))
    return np.array([group.get(str(k), -1) for k in keys], dtype=np.int64)


def library_duplicates(data_dir) -> list[dict]:
    """The groups of the library: read from the build's table when fresh, else computed from the
    fingerprint index (``IndexNotBuilt`` when there is none to compute from)."""
    table = read_duplicates(data_dir)
    if table is not None:
        return groups_of_table(table)
    return duplicate_groups(data_dir, load_index(data_dir))


def extra_copies(groups: list[dict]) -> int:
    """How many tracks could go without losing a recording: every track of a group but one."""
    return sum(len(g["tracks"]) - 1 for g in groups)


def table_counts(table: pd.DataFrame | None) -> dict:
    """{"groups", "extra_copies", "kinds": {kind: groups}} of a stored table (none: zeros)."""
    if table is None or not len(table):
        return {"groups": 0, "extra_copies": 0, "kinds": {}}
    kinds = table.groupby("group")["kind"].first()
    return {
        "groups": len(kinds),
        "extra_copies": len(table) - len(kinds),
        "kinds": {str(k): int(v) for k, v in kinds.value_counts().sort_index().items()},
    }

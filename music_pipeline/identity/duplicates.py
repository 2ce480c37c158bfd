"""Tracks that hold the same recording: identical bytes, or another encoding, bitrate, level, light
noise, a trim or padding of it.

Each distinct content is asked of the index in ``WINDOWS`` windows of ``WINDOW_S`` seconds spread
over it (a sample: the cost stays a few lookups per track). Another content is the same recording
when, in most of those windows, it holds a large share of the window's landmarks at one aligned
offset (``SHARE``, and at least the identification's ``MIN_VOTES``): different music, even of the
same game with the same instruments, shares a few chance landmarks, scattered over offsets.
Pairs are joined into groups (union-find); files of one content are one group of kind
``identical bytes``, a group holding several contents is ``same recording``.
"""

from __future__ import annotations

import numpy as np

from music_pipeline.identity.fingerprint import FRAME_S, Fingerprint
from music_pipeline.identity.index import MIN_VOTES
from music_pipeline.identity.library import LibraryIndex
from music_pipeline.identity.store import FingerprintStore

WINDOWS = 6
WINDOW_S = 10.0
SHARE = 0.05  # of a window's landmarks, at one aligned offset
IDENTICAL, SAME_RECORDING = "identical bytes", "same recording"


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

"""The lookup index over every stored fingerprint, and the answer for a clip.

The index is three arrays sorted by hash (hash, track number, anchor frame), a directory of where
each range of hash values starts (the top ``directory_bits`` bits of a hash, about
``BUCKET_ENTRIES`` landmarks a range) and the tracks' content hashes. A clip's hashes are found by
a bisection inside their ranges only, so a lookup reads a page or two of the arrays per clip hash:
on a memory-mapped index (``identity/library.py``) its memory is that of the clip, not of the
library (a plain ``searchsorted`` over the whole array touched ~log₂ n pages per hash, most of the
hash array for a 10-s clip). Each hit votes for
(track, track frame − clip frame). The clip comes from the track and place with the most votes
in one offset bin (± one frame of jitter) when that count is both large in itself
(``MIN_VOTES``) and well above the best competing track (``MIN_RATIO``) unless that one is strong
too (the same recording stored twice): a clip of music not in the library scatters its few
chance hits over many offsets and tracks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from music_pipeline.identity.fingerprint import DF_BITS, DT_BITS, F_BITS, FRAME_S, Fingerprint

# chosen by measurement (benchmarks/bench_fingerprint.py, docs/identity.md)
MIN_VOTES = 25
MIN_RATIO = 2.0
# a hash found in more places than this says little (silence, a drone): skipped at lookup
MAX_HITS_PER_HASH = 200
HASH_BITS = F_BITS + DF_BITS + DT_BITS
BUCKET_ENTRIES = 256  # landmarks per directory range (1 KB of hashes: a page), on average


def directory_bits(n: int) -> int:
    """How many top bits of a hash the directory resolves for ``n`` landmarks."""
    return int(np.clip(np.ceil(np.log2(max(n, 1) / BUCKET_ENTRIES)), 0, HASH_BITS))


def make_directory(hashes: np.ndarray, bits: int) -> np.ndarray:
    """int64 (2^bits + 1): where in ``hashes`` (sorted) each range of hash values starts."""
    # of the hashes' own dtype: searchsorted would otherwise cast the whole (mapped) array first
    starts = (np.arange((1 << bits) + 1, dtype=np.uint64) << np.uint64(HASH_BITS - bits)).astype(hashes.dtype)
    return np.searchsorted(hashes, starts, side="left").astype(np.int64)


def bisect(a: np.ndarray, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, right: bool) -> np.ndarray:
    """``searchsorted`` of each ``x[i]`` within ``a[lo[i]:hi[i]]`` (sorted), all at once: only
    those slices of ``a`` are read."""
    lo, hi = lo.astype(np.int64), hi.astype(np.int64)
    active = np.flatnonzero(lo < hi)
    while len(active):
        mid = (lo[active] + hi[active]) // 2
        v = a[mid]
        go = v <= x[active] if right else v < x[active]
        lo[active[go]] = mid[go] + 1
        hi[active[~go]] = mid[~go]
        active = active[lo[active] < hi[active]]
    return lo


@dataclass(frozen=True)
class Match:
    track: int  # number in the index
    offset_s: float  # where in the track the clip starts
    votes: int
    runner_up: int  # votes of the best other track
    confidence: float  # 0..1


@dataclass
class FingerprintIndex:
    hashes: np.ndarray  # uint32, sorted
    tracks: np.ndarray  # int32
    frames: np.ndarray  # int32
    content_hashes: np.ndarray  # str, one per track number
    directory: np.ndarray | None = None  # make_directory(hashes, directory_bits(len(hashes))); made when None

    def __post_init__(self):
        if self.directory is None:
            self.directory = make_directory(self.hashes, directory_bits(len(self.hashes)))
        self.shift = HASH_BITS - ((len(self.directory) - 1).bit_length() - 1)

    @classmethod
    def build(cls, items: Iterable[tuple[str, Fingerprint]]) -> FingerprintIndex:
        names, hs, ts, fs = [], [], [], []
        for i, (content_hash, fp) in enumerate(items):
            names.append(content_hash)
            hs.append(fp.hashes)
            fs.append(fp.frames)
            ts.append(np.full(len(fp.hashes), i, np.int32))
        if not names:
            return cls(np.zeros(0, np.uint32), np.zeros(0, np.int32), np.zeros(0, np.int32), np.array([], dtype=str))
        h = np.concatenate(hs)
        order = np.argsort(h, kind="stable")
        return cls(h[order], np.concatenate(ts)[order], np.concatenate(fs)[order], np.array(names, dtype=str))

    def to_arrays(self) -> dict:
        return {
            "hashes": self.hashes,
            "tracks": self.tracks,
            "frames": self.frames,
            "content_hashes": self.content_hashes,
            "directory": self.directory,
        }

    @classmethod
    def from_arrays(cls, z) -> FingerprintIndex:
        return cls(z["hashes"], z["tracks"], z["frames"], z["content_hashes"], z.get("directory"))

    def ranges(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first, end) position of each hash's entries."""
        h = np.asarray(hashes, dtype=np.uint32)
        b = (h >> np.uint32(self.shift)).astype(np.int64)
        self.will_need(self.directory, b, b + 2)
        lo, hi = self.directory[b], self.directory[b + 1]
        self.will_need(self.hashes, lo, hi)
        return bisect(self.hashes, h, lo, hi, right=False), bisect(self.hashes, h, lo, hi, right=True)

    def will_need(self, array: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        """Say which slices of ``array`` are about to be read (a mapped index reads them ahead,
        all at once: ``identity.library``); in memory, nothing to do."""

    def __len__(self) -> int:
        return len(self.content_hashes)

    def votes(self, fp: Fingerprint, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(track, offset frame, votes) of every aligned bin the clip's hashes hit, ± one frame."""
        lo, hi = self.ranges(fp.hashes)
        n = hi - lo
        ok = (n > 0) & (n <= MAX_HITS_PER_HASH)
        lo, n, clip_frames = lo[ok], n[ok], fp.frames[ok]
        if not len(lo):
            return (np.zeros(0, np.int64),) * 3
        self.will_need(self.tracks, lo, lo + n)
        self.will_need(self.frames, lo, lo + n)
        rep = np.repeat(np.arange(len(lo)), n)
        pos = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(n.sum())
        track = self.tracks[pos].astype(np.int64)
        offset = self.frames[pos].astype(np.int64) - clip_frames[rep]
        if exclude is not None:
            keep = track != exclude
            track, offset = track[keep], offset[keep]
        span = 1 << 24
        key = track * (2 * span) + (offset + span)
        uniq, counts = np.unique(key, return_counts=True)
        # one frame of jitter either side: a bin's votes plus its neighbours'
        smooth = counts.copy()
        for d in (-1, 1):
            j = np.searchsorted(uniq, uniq + d)
            hit = (j < len(uniq)) & (uniq[np.minimum(j, len(uniq) - 1)] == uniq + d)
            smooth[hit] += counts[j[hit]]
        return uniq // (2 * span), uniq % (2 * span) - span, smooth

    def best(self, fp: Fingerprint, exclude: int | None = None) -> Match | None:
        """The best-aligned track for ``fp`` (before any threshold); None when nothing is hit."""
        track, offset, votes = self.votes(fp, exclude)
        if not len(votes):
            return None
        i = int(np.argmax(votes))
        others = votes[track != track[i]]
        runner = int(others.max()) if len(others) else 0
        v = int(votes[i])
        # a runner-up with MIN_VOTES of its own is the same recording stored again, not chance
        background = runner if runner < MIN_VOTES else 0
        conf = float(np.clip((v - background) / (4 * MIN_VOTES), 0.0, 1.0))
        return Match(int(track[i]), float(offset[i]) * FRAME_S, v, runner, conf)

    def identify(self, fp: Fingerprint) -> Match | None:
        """The track and place ``fp`` comes from, or None when it is not in the library."""
        m = self.best(fp)
        if m is None or not accepted(m):
            return None
        return m


def accepted(m: Match) -> bool:
    """Enough aligned votes, and well above the best other track — unless that track has
    MIN_VOTES aligned votes too: then the library holds the recording twice (a remaster, a
    copy), and the best of the two is the answer."""
    return m.votes >= MIN_VOTES and (m.votes >= MIN_RATIO * max(m.runner_up, 1) or m.runner_up >= MIN_VOTES)

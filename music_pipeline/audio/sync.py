"""Plan how the per-track partitions follow the library: what to add, remove and extract.

Pure logic shared by the Dagster sensor and the CLI ``build`` so both react to a library change
the same way. Two partitionings (see ``music_pipeline/defs/partitions.py``):

- per track: ``plan_sync`` against the registered dynamic partitions; runs cover contiguous
  ranges of partition keys.
- hash buckets: ``plan_buckets`` against the track keys the tables were last built from; a
  track's bucket is a fixed function of its key (``bucket_of``), runs cover ranges of buckets.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from music_pipeline.audio.scan import LibraryScan


@dataclass
class SyncPlan:
    to_add: list[str]  # keys of new files, in scan order
    to_remove: list[str]  # registered keys whose file is gone
    to_run: list[str]  # keys that need a materialization (new, or content never analysed)
    ranges: list[tuple[str, str]] = field(default_factory=list)  # contiguous, batch-sized
    buckets: list[str] = field(default_factory=list)  # bucket mode: the buckets the ranges must cover

    @property
    def changed(self) -> bool:
        return bool(self.to_add or self.to_remove or self.to_run)


def contiguous_ranges(order: list[str], selected: set[str], batch_size: int) -> list[tuple[str, str]]:
    """Cover ``selected`` with runs of consecutive keys in ``order``, each at most ``batch_size``."""
    ranges: list[tuple[str, str]] = []
    start = prev = None
    count = 0
    for key in order:
        if key in selected and start is not None and count < batch_size:
            prev, count = key, count + 1
            continue
        if start is not None:
            ranges.append((start, prev))
            start = None
        if key in selected:
            start = prev = key
            count = 1
    if start is not None:
        ranges.append((start, prev))
    return ranges


def plan_sync(scan: LibraryScan, registered: list[str], needs_run, batch_size: int = 500) -> SyncPlan:
    """``needs_run(track) -> bool`` says whether a registered track must be (re-)materialized,
    typically: its content hash has neither features nor a failure record yet. New tracks always run."""
    current = [t.key for t in scan.tracks]
    current_set, registered_set = set(current), set(registered)
    to_add = [k for k in current if k not in registered_set]
    to_remove = [k for k in registered if k not in current_set]
    new = set(to_add)
    to_run = [t.key for t in scan.tracks if t.key in new or needs_run(t)]
    order = [k for k in registered if k in current_set] + to_add  # partition order after the change
    return SyncPlan(to_add, to_remove, to_run, contiguous_ranges(order, set(to_run), batch_size))


# --- hash buckets -------------------------------------------------------------------------------


def bucket_index(key: str, n_buckets: int) -> int:
    """The bucket of a track key: CRC-32 of the key modulo the bucket count. CRC-32 is a fixed,
    standard function (Python's ``hash`` is salted per process) and runs in C; the keys end in
    8 hex digits of the SHA-1 of the path, so the buckets fill evenly."""
    return zlib.crc32(key.encode("utf-8", "surrogateescape")) % n_buckets


def bucket_name(index: int, n_buckets: int) -> str:
    """``b0042``: zero-padded so the partition keys sort in bucket order."""
    return f"b{index:0{max(4, len(str(n_buckets - 1)))}d}"


def bucket_names(n_buckets: int) -> list[str]:
    return [bucket_name(i, n_buckets) for i in range(n_buckets)]


def bucket_of(key: str, n_buckets: int) -> str:
    return bucket_name(bucket_index(key, n_buckets), n_buckets)


def bucket_ranges(work: dict[int, int], n_buckets: int, batch_size: int, buckets_per_run: int) -> list[tuple[str, str]]:
    """Cover the buckets in ``work`` (bucket index -> tracks to analyse in it, possibly 0) with
    ranges in bucket order. A range may pass over buckets with nothing to do — their tracks are
    answered from the caches, far cheaper than another run — but spans at most ``buckets_per_run``
    buckets and holds at most ``batch_size`` tracks to analyse (one bucket alone may hold more)."""
    ranges: list[tuple[str, str]] = []
    start = last = None
    count = 0
    for i in sorted(work):
        if start is not None and i - start < buckets_per_run and count + work[i] <= batch_size:
            last, count = i, count + work[i]
            continue
        if start is not None:
            ranges.append((bucket_name(start, n_buckets), bucket_name(last, n_buckets)))
        start = last = i
        count = work[i]
    if start is not None:
        ranges.append((bucket_name(start, n_buckets), bucket_name(last, n_buckets)))
    return ranges


def plan_buckets(
    scan: LibraryScan,
    known: Iterable[str] | None,
    needs_run,
    n_buckets: int,
    batch_size: int = 500,
    buckets_per_run: int = 256,
    also: Iterable[str] = (),
) -> SyncPlan:
    """The bucket-mode plan. ``known``: the track keys already accounted for — those the library
    tables were last built from, plus keys already requested (None: nothing built yet, every
    track is new). New keys and tracks for which ``needs_run(track)`` is true run; ``to_remove``
    are known keys whose file is gone. ``also``: bucket names to run even without work (never
    materialized). Costs one pass over the scan and one CRC-32 per track to run."""
    known_set = set(known) if known is not None else set()
    current = {t.key for t in scan.tracks}
    to_add = [t.key for t in scan.tracks if t.key not in known_set]
    to_remove = sorted(known_set - current)
    new = set(to_add)
    to_run = [t.key for t in scan.tracks if t.key in new or needs_run(t)]
    work = Counter(bucket_index(k, n_buckets) for k in to_run)
    for name in also:
        work.setdefault(int(name[1:]), 0)
    ranges = bucket_ranges(work, n_buckets, batch_size, buckets_per_run)
    return SyncPlan(to_add, to_remove, to_run, ranges, [bucket_name(i, n_buckets) for i in sorted(work)])

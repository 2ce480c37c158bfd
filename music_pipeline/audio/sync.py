"""Plan how the registered track partitions follow the library: what to add, remove and extract.

Pure logic shared by the Dagster sensor and the CLI ``build`` so both react to a library change
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from music_pipeline.audio.library import LibraryScan


@dataclass
class SyncPlan:
    to_add: list[str]  # keys of new files, in scan order
    to_remove: list[str]  # registered keys whose file is gone
    to_run: list[str]  # keys that need a materialization (new, or content never analysed)
    ranges: list[tuple[str, str]] = field(default_factory=list)  # contiguous, batch-sized

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

"""The listening history: one append-only, crash-safe event log of plays, skips and likes.

``<data>/listening/events.jsonl`` holds one JSON object a line::

    {"id": "3f…", "user": "ana", "track": "<track key>", "ts": 1700000000.0, "event": "play",
     "seconds_played": 93.5, "finished": false, "source": "explorer"}

- ``event`` is ``play`` (``seconds_played`` listened, ``finished`` whether it reached the end),
  ``skip`` or ``like``; ``ts`` is Unix seconds (UTC); ``source`` says where it came from
  (``explorer``, ``import:plain``, ``import:listenbrainz``, ``import:lastfm``).
- ``id`` is derived from the content (user, track, ts to the millisecond, event, seconds): the
  same event written twice — an import run again, a page that sends twice — is stored once.
- **Append-only and crash-safe**: a batch of events is appended with a single ``write`` and an
  ``fsync`` under a lock file, so writers never interleave. A crash mid-write can only leave a
  torn *last* line (no newline at the end): readers ignore it, and the next append cuts it off
  before writing, so an earlier event is never lost or altered. A damaged line elsewhere (a hand
  edit) is skipped and counted, never fatal.

The log needs a local data directory (object stores cannot append). Nothing here imports Dagster.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from music_pipeline.artifacts import ArtifactPath, ensure_dir
from music_pipeline.layout import DataLayout

EVENT_KINDS = ("play", "skip", "like")
SOURCES = ("explorer", "import:plain", "import:listenbrainz", "import:lastfm")
MAX_USER_LENGTH = 64
LOCK_TIMEOUT_S = 30.0


class HistoryError(ValueError):
    """An event or a log that cannot be used; the message says which and why."""


def check_user(name) -> str:
    """A listener profile name: 1–64 printable characters, surrounding spaces removed."""
    if not isinstance(name, str) or not name.strip():
        raise HistoryError("the listener name is empty")
    name = name.strip()
    if len(name) > MAX_USER_LENGTH or not name.isprintable():
        raise HistoryError(f"the listener name must be at most {MAX_USER_LENGTH} printable characters, got {name!r}")
    return name


@dataclass(frozen=True)
class Event:
    user: str
    track: str  # a track key (docs/data-layout.md)
    ts: float  # Unix seconds, UTC
    event: str  # play | skip | like
    seconds_played: float | None = None
    finished: bool | None = None
    source: str = "explorer"

    def __post_init__(self):
        check_user(self.user)
        if not isinstance(self.track, str) or not self.track:
            raise HistoryError("the track key is empty")
        if self.event not in EVENT_KINDS:
            raise HistoryError(f"event must be one of {', '.join(EVENT_KINDS)}, got {self.event!r}")
        if not isinstance(self.ts, (int, float)) or not math.isfinite(self.ts) or self.ts < 0:
            raise HistoryError(f"ts must be a non-negative number of Unix seconds, got {self.ts!r}")
        s = self.seconds_played
        if s is not None and (not isinstance(s, (int, float)) or not math.isfinite(s) or s < 0):
            raise HistoryError(f"seconds_played must be a non-negative number, got {s!r}")
        if self.source not in SOURCES:
            raise HistoryError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")

    @property
    def id(self) -> str:
        """Derived from what happened (not from where it was recorded): a re-import adds nothing."""
        s = None if self.seconds_played is None else round(float(self.seconds_played), 3)
        key = json.dumps([self.user, self.track, round(float(self.ts) * 1000), self.event, s], separators=(",", ":"))
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]

    def to_line(self) -> bytes:
        row = {"id": self.id, **asdict(self)}
        row["ts"] = float(self.ts)
        return (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")

    @classmethod
    def from_row(cls, row: dict) -> Event:
        return cls(
            user=row["user"],
            track=row["track"],
            ts=float(row["ts"]),
            event=row["event"],
            seconds_played=None if row.get("seconds_played") is None else float(row["seconds_played"]),
            finished=row.get("finished"),
            source=row.get("source", "explorer"),
        )


@dataclass
class LogContents:
    events: list[Event]
    damaged_lines: list[int]  # 1-based numbers of complete lines that could not be read
    torn_tail: bool  # the last line was cut off by a crash (ignored)

    @property
    def ids(self) -> set[str]:
        return {e.id for e in self.events}


class EventLog:
    """The event log of one data directory (``DataLayout.listening_log_path``)."""

    def __init__(self, data_dir):
        layout = DataLayout(data_dir)
        path: ArtifactPath = layout.listening_log_path
        if not isinstance(path, Path):
            raise HistoryError(
                f"the listening history needs a local data directory (an object store cannot append): {layout.root}"
            )
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def exists(self) -> bool:
        return self.path.is_file()

    def stamp(self) -> tuple[int, int]:
        """(size, mtime_ns): changes whenever an event is appended."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return (0, 0)
        return (st.st_size, st.st_mtime_ns)

    def read(self) -> LogContents:
        """Every stored event, each id once, in the order written."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return LogContents([], [], False)
        return _parse(data)

    def append(self, events: list[Event]) -> int:
        """Append the events not stored yet (by id) in one write + fsync; returns how many."""
        from filelock import FileLock

        if not events:
            return 0
        ensure_dir(self.path.parent)
        with FileLock(str(self.lock_path), timeout=LOCK_TIMEOUT_S):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                with os.fdopen(os.dup(fd), "rb") as fh:
                    data = fh.read()
                end = len(data)
                if data and not data.endswith(b"\n"):  # a torn last line from a crash: cut it off
                    end = data.rfind(b"\n") + 1
                    os.ftruncate(fd, end)
                seen = _parse(data[:end]).ids
                batch, fresh = [], 0
                for e in events:
                    if e.id not in seen:
                        seen.add(e.id)
                        batch.append(e.to_line())
                        fresh += 1
                if batch:
                    os.lseek(fd, end, os.SEEK_SET)
                    _write_all(fd, b"".join(batch))
                    os.fsync(fd)
                return fresh
            finally:
                os.close(fd)


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _parse(data: bytes) -> LogContents:
    lines = data.split(b"\n")
    torn = bool(lines[-1].strip())  # text after the last newline: a write cut short
    events, damaged, seen = [], [], set()
    for number, raw in enumerate(lines[:-1], start=1):
        if not raw.strip():
            continue
        try:
            e = Event.from_row(json.loads(raw))
        except (ValueError, KeyError, TypeError, HistoryError):
            damaged.append(number)
            continue
        if e.id not in seen:
            seen.add(e.id)
            events.append(e)
    return LogContents(events, damaged, torn)


def events_frame(events: list[Event]):
    """The events as a DataFrame (user, track, ts, event, seconds_played, finished, source, id)."""
    import pandas as pd

    cols = ["user", "track", "ts", "event", "seconds_played", "finished", "source", "id"]
    return pd.DataFrame([[*asdict(e).values(), e.id] for e in events], columns=cols)

"""``music-pipeline history import FILE``: listening histories from other places into the event log.

Formats (recognised from the content, see ``detect_format``):

- **plain** JSONL or CSV of ``{user, track, ts, seconds_played, event}`` (``event``: play | skip |
  like; optional ``finished``); ``track`` is a track key or a library path (absolute or relative
  to the library); ``ts`` Unix seconds or ISO 8601 (no zone = UTC).
- **ListenBrainz** exports: a JSON array of listens, JSONL of listens, or the export's zip of
  them (``listened_at``, ``track_metadata.artist_name``/``track_name``, ``user_name``).
- **Last.fm** exports: CSV with a header naming ``artist``, ``track`` and ``uts`` or a date
  (lastfm.ghan.nl), headerless ``artist,album,track,date`` (lastfm-to-csv), or the API's JSON
  pages of ``recenttracks``.

ListenBrainz and Last.fm listens are matched to library tracks by the files' artist/title tags
and stored as finished plays (a scrobble is a listen). Every line is checked before anything is
written: a bad line is counted and named (line number and reason) and left out whole, never half
imported; the good ones are appended in one write. Events already stored (same id) are not
added again, so importing a file twice adds nothing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from music_pipeline.listening.catalog import Catalog
from music_pipeline.listening.history import Event, EventLog, HistoryError, check_user

FORMATS = ("plain", "listenbrainz", "lastfm")
PLAIN_FIELDS = ("user", "track", "ts", "seconds_played", "event")
MAX_NAMED = 20  # bad lines / unmatched tracks shown by name in a report


class ImportError_(ValueError):  # not the builtin ImportError
    """The file as a whole cannot be imported (unreadable, unknown format)."""


@dataclass
class ImportReport:
    file: str
    format: str
    records: int = 0  # lines / listens read
    added: int = 0
    already_stored: int = 0
    unmatched: Counter = field(default_factory=Counter)  # what named no library track -> how often
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line or record number, reason)

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "format": self.format,
            "records": self.records,
            "added": self.added,
            "already_stored": self.already_stored,
            "unmatched": sum(self.unmatched.values()),
            "unmatched_tracks": [{"name": n, "count": c} for n, c in self.unmatched.most_common()],
            "bad": len(self.bad),
            "bad_lines": [{"line": n, "reason": r} for n, r in self.bad],
        }

    def lines(self) -> list[str]:
        head = (
            f"{self.file} ({self.format}): {self.records} records, {self.added} events added, "
            f"{self.already_stored} already stored, {sum(self.unmatched.values())} unmatched, {len(self.bad)} bad"
        )
        out = [head]
        for n, r in self.bad[:MAX_NAMED]:
            out.append(f"  bad line {n}: {r}")
        if len(self.bad) > MAX_NAMED:
            out.append(f"  … and {len(self.bad) - MAX_NAMED} more bad lines")
        if self.unmatched:
            out.append(f"  not in the library ({len(self.unmatched)} distinct):")
            for name, count in self.unmatched.most_common(MAX_NAMED):
                out.append(f"    {name}" + (f" ×{count}" if count > 1 else ""))
            if len(self.unmatched) > MAX_NAMED:
                out.append(f"    … and {len(self.unmatched) - MAX_NAMED} more")
        return out


# -- values --------------------------------------------------------------------------------------
def parse_ts(value) -> float:
    """Unix seconds from a number, a numeric string or ISO 8601 (no zone = UTC)."""
    if isinstance(value, bool) or value is None:
        raise HistoryError(f"ts {value!r} is neither Unix seconds nor ISO 8601")
    if isinstance(value, (int, float)):
        ts = float(value)
    else:
        text = str(value).strip()
        try:
            ts = float(text)
        except ValueError:
            try:
                d = datetime.fromisoformat(text)
            except ValueError:
                raise HistoryError(f"ts {text!r} is neither Unix seconds nor ISO 8601") from None
            ts = (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(ts) or ts < 0:
        raise HistoryError(f"ts {value!r} is not a time after 1970")
    return ts


def _seconds(value) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise HistoryError(f"seconds_played {value!r} is not a number")
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise HistoryError(f"seconds_played {value!r} is not a number") from None
    if not math.isfinite(s) or s < 0:
        raise HistoryError(f"seconds_played {value!r} must be a non-negative number")
    return s


def _flag(value) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise HistoryError(f"finished {value!r} is not true/false")


# -- reading records -----------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImportError_(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportError_(f"{path}: not UTF-8 text") from None


def _jsonl(text: str) -> list[tuple[int, object]]:
    """(line number, parsed object or the exception) of every non-empty line."""
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                out.append((n, json.loads(line)))
            except ValueError as exc:
                out.append((n, HistoryError(f"not JSON ({exc.msg})")))
    return out


def _records(path: Path) -> tuple[str, list[tuple[int, object]]]:
    """(format, [(line/record number, record dict or error)]) of a file."""
    if zipfile.is_zipfile(path):
        return "listenbrainz", _listenbrainz_zip(path)
    text = _read_text(path)
    stripped = text.lstrip()
    if not stripped:
        raise ImportError_(f"{path}: the file is empty")
    if stripped[0] in "[{":
        try:
            whole = json.loads(text)
        except ValueError:
            whole = None
        if isinstance(whole, list) and all(isinstance(x, dict) for x in whole):
            if whole and any("recenttracks" in x for x in whole):
                return "lastfm", _lastfm_pages(whole)
            if whole and all("track_metadata" in x for x in whole):
                return "listenbrainz", list(enumerate(whole, start=1))
            return "plain", list(enumerate(whole, start=1))
        if isinstance(whole, dict) and "recenttracks" in whole:
            return "lastfm", _lastfm_pages([whole])
        rows = _jsonl(text)
        first = next((r for _, r in rows if isinstance(r, dict)), {})
        return ("listenbrainz" if "track_metadata" in first else "plain"), rows
    return _csv_records(path, text)


def _listenbrainz_zip(path: Path) -> list[tuple[int, object]]:
    out = []
    with zipfile.ZipFile(path) as zf:
        for name in sorted(zf.namelist()):
            if not name.endswith((".json", ".jsonl")):
                continue
            text = zf.read(name).decode("utf-8-sig")
            try:
                whole = json.loads(text)
                rows = list(enumerate(whole, start=1)) if isinstance(whole, list) else [(1, whole)]
            except ValueError:
                rows = _jsonl(text)
            out.extend((f"{name}:{n}", r) for n, r in rows if not isinstance(r, dict) or "track_metadata" in r)
    return out


def _lastfm_pages(pages: list[dict]) -> list[tuple[int, object]]:
    out, n = [], 0
    for page in pages:
        tracks = (page.get("recenttracks") or {}).get("track") or []
        for t in tracks if isinstance(tracks, list) else [tracks]:
            n += 1
            if not isinstance(t, dict):
                out.append((n, HistoryError("not a track object")))
                continue
            if (t.get("@attr") or {}).get("nowplaying"):
                continue  # playing now: not a finished listen yet
            artist = t.get("artist")
            out.append(
                (
                    n,
                    {
                        "artist": artist.get("#text") or artist.get("name") if isinstance(artist, dict) else artist,
                        "track": t.get("name"),
                        "uts": (t.get("date") or {}).get("uts"),
                    },
                )
            )
    return out


def _csv_records(path: Path, text: str) -> tuple[str, list[tuple[int, object]]]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise ImportError_(f"{path}: the file is empty")
    header = [c.strip().lower() for c in rows[0]]
    if set(PLAIN_FIELDS) - {"seconds_played"} <= set(header):
        fmt = "plain"
    elif "artist" in header and "track" in header and ({"uts", "date", "utc_time"} & set(header)):
        fmt = "lastfm"
    elif len(header) == 4 and not ({"artist", "user"} & set(header)):  # lastfm-to-csv: artist,album,track,date
        return "lastfm", [
            (n, dict(zip(("artist", "album", "track", "date"), r, strict=False)) if len(r) == 4 else _width(r, 4))
            for n, r in enumerate(rows, start=1)
            if any(c.strip() for c in r)
        ]
    else:
        raise ImportError_(
            f"{path}: not a known history format: a CSV needs the columns {', '.join(PLAIN_FIELDS)} (plain) "
            + "or artist, track and uts/date (Last.fm)"
        )
    return fmt, [
        (n, dict(zip(header, r, strict=False)) if len(r) == len(header) else _width(r, len(header)))
        for n, r in enumerate(rows[1:], start=2)
        if any(c.strip() for c in r)
    ]


def _width(row, want: int) -> HistoryError:
    return HistoryError(f"{len(row)} columns where the header has {want}")


def _lastfm_time(rec: dict) -> float:
    if rec.get("uts") not in (None, ""):
        return parse_ts(rec["uts"])
    text = str(rec.get("date") or rec.get("utc_time") or "").strip()
    for fmt in ("%d %b %Y %H:%M", "%d %b %Y, %H:%M", "%d %B %Y %H:%M"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            pass
    return parse_ts(text)


# -- records -> events -----------------------------------------------------------------------------
def _plain_event(rec: dict, catalog: Catalog) -> Event | str:
    """The event of a plain record, or the name of a track that is not in the library."""
    missing = [f for f in ("user", "track", "ts", "event") if rec.get(f) in (None, "")]
    if missing:
        raise HistoryError(f"missing {', '.join(missing)}")
    kind = str(rec["event"]).strip().lower()
    key = catalog.resolve(str(rec["track"]))
    ts = parse_ts(rec["ts"])
    event = Event(
        user=check_user(str(rec["user"])),
        track=key or "?",
        ts=ts,
        event=kind,
        seconds_played=_seconds(rec.get("seconds_played")),
        finished=_flag(rec.get("finished")),
        source="import:plain",
    )
    return event if key else str(rec["track"])


def _tagged_event(fmt: str, rec: dict, catalog: Catalog, user: str | None) -> Event | str:
    if fmt == "listenbrainz":
        meta = rec.get("track_metadata") or {}
        artist, title = meta.get("artist_name"), meta.get("track_name")
        ts = parse_ts(rec.get("listened_at"))
        who = user or rec.get("user_name")
    else:
        artist, title = rec.get("artist"), rec.get("track")
        ts = _lastfm_time(rec)
        who = user
    if not artist or not title:
        raise HistoryError("missing artist or title")
    if not who:
        raise HistoryError("no listener named: give --user NAME")
    key = catalog.by_tags(artist, title)
    if key is None:
        return f"{artist} — {title}"
    return Event(user=check_user(str(who)), track=key, ts=ts, event="play", finished=True, source=f"import:{fmt}")


def import_history(data_dir, file, catalog: Catalog, user: str | None = None) -> ImportReport:
    """Read ``file``, match its records to the library and append the new events (one write)."""
    path = Path(file)
    if not path.is_file():
        raise ImportError_(f"{path}: no such file")
    if user is not None:
        user = check_user(user)
    fmt, records = _records(path)
    report = ImportReport(str(path), fmt, records=len(records))
    events = []
    for n, rec in records:
        try:
            if isinstance(rec, Exception):
                raise rec
            if not isinstance(rec, dict):
                raise HistoryError("not an object")
            if fmt == "plain":
                rec = {**rec, "user": rec.get("user") or user}
                out = _plain_event(rec, catalog)
            else:
                out = _tagged_event(fmt, rec, catalog, user)
        except HistoryError as exc:
            report.bad.append((n, str(exc)))
            continue
        if isinstance(out, str):
            report.unmatched[out] += 1
        else:
            events.append(out)
    log = EventLog(data_dir)
    report.added = log.append(events)
    report.already_stored = len(events) - report.added
    return report

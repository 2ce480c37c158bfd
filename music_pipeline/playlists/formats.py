"""Playlist files a music player opens: M3U8 (UTF-8 extended M3U) and XSPF 1, with absolute paths.

The one writer of both formats: the explorer's downloads and the library's playlists use it.

Each entry is ``{"path": absolute path, "title": str, "label": str|None, "duration_s": float|None}``.
M3U8 lines are the plain absolute path (every player reads that), or its ``file://`` URI when the
path holds a line break or another control character (it would otherwise split into lines a
player reads as other entries); XSPF ``location`` is always the ``file://`` URI (percent-encoded).
"""

from __future__ import annotations

import math
from pathlib import Path
from xml.etree import ElementTree as ET

XSPF_NS = "http://xspf.org/ns/0/"
M3U8_TYPE = "audio/x-mpegurl; charset=utf-8"
XSPF_TYPE = "application/xspf+xml; charset=utf-8"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _m3u8_location(path) -> str:
    text = str(path)
    return Path(text).as_uri() if any(ord(c) < 32 or ord(c) == 127 for c in text) else text


def m3u8(title: str, entries: list[dict]) -> str:
    lines = ["#EXTM3U", f"#PLAYLIST:{_one_line(title)}"]
    for e in entries:
        d = e.get("duration_s")
        seconds = round(d) if d is not None and math.isfinite(d) else -1
        artist = f"{_one_line(e['label'])} - " if e.get("label") else ""
        lines.append(f"#EXTINF:{seconds},{artist}{_one_line(e['title'])}")
        lines.append(_m3u8_location(e["path"]))
    return "\n".join(lines) + "\n"


def xspf(title: str, entries: list[dict]) -> str:
    ET.register_namespace("", XSPF_NS)
    root = ET.Element(f"{{{XSPF_NS}}}playlist", version="1")
    ET.SubElement(root, f"{{{XSPF_NS}}}title").text = title
    tracks = ET.SubElement(root, f"{{{XSPF_NS}}}trackList")
    for e in entries:
        t = ET.SubElement(tracks, f"{{{XSPF_NS}}}track")
        ET.SubElement(t, f"{{{XSPF_NS}}}location").text = Path(e["path"]).as_uri()
        ET.SubElement(t, f"{{{XSPF_NS}}}title").text = e["title"]
        if e.get("label"):
            ET.SubElement(t, f"{{{XSPF_NS}}}album").text = e["label"]
        d = e.get("duration_s")
        if d is not None and math.isfinite(d):
            ET.SubElement(t, f"{{{XSPF_NS}}}duration").text = str(round(d * 1000))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def filename(title: str, ext: str) -> str:
    """A safe download name from a playlist title."""
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in title).strip("-")
    while "--" in stem:
        stem = stem.replace("--", "-")
    return f"{stem[:80] or 'playlist'}.{ext}"


def read_m3u(path) -> list[Path]:
    """The entries of an M3U/M3U8 file as paths (relative entries resolved against its folder;
    ``file://`` URIs decoded; comment and ``#EXT`` lines skipped). Raises ``ValueError`` naming the
    file when it holds no entry."""
    from urllib.parse import unquote, urlparse

    path = Path(path)
    base = path.parent
    entries = []
    for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("file://"):
            entries.append(Path(unquote(urlparse(line).path)))
        else:
            p = Path(line).expanduser()
            entries.append(p if p.is_absolute() else base / p)
    if not entries:
        raise ValueError(f"{path}: no entries (an M3U/M3U8 playlist lists one path per line)")
    return entries

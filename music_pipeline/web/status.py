"""Where a running explorer can be found: ``<data>/explorer.json`` = {url, pid, host, started_at}.

Written by ``music-pipeline serve`` when it starts listening and removed when it stops (the one
file the read-only explorer writes). ``running_explorer`` is what the ``similarity_index`` asset
asks to link to it: the file alone is not trusted (a killed server leaves it behind), the URL must
also answer ``/api/info`` within a second. Standard library only: the asset imports this.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request

from music_pipeline.artifacts import read_json, remove, write_json
from music_pipeline.layout import DataLayout


def status_path(data_dir):
    return DataLayout(data_dir).explorer_status


def write_status(data_dir, url: str) -> None:
    write_json(
        status_path(data_dir), {"url": url, "pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time()}
    )


def clear_status(data_dir) -> None:
    try:
        p = status_path(data_dir)
        if p.is_file() and read_json(p).get("pid") == os.getpid():  # never another server's file
            remove(p)
    except Exception:  # noqa: BLE001, S110 - best effort on shutdown: readers check that the server answers
        pass


def running_explorer(data_dir, timeout: float = 1.0) -> str | None:
    """The URL of an explorer serving this data directory that answers now, else None."""
    try:
        url = str(read_json(status_path(data_dir))["url"]).rstrip("/")
    except Exception:  # noqa: BLE001 - no or unreadable status file: no explorer
        return None
    if not url.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(f"{url}/api/info", timeout=timeout) as resp:
            return url if resp.status == 200 and "tracks" in json.load(resp) else None
    except Exception:  # noqa: BLE001 - whatever fails, the explorer is not answering
        return None

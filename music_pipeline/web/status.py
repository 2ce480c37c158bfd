"""Where a running explorer can be found: ``<data>/explorer.json`` = {url, pid, host, started_at}.

Written by ``music-pipeline serve`` when it starts listening and removed when it stops (the one
file the read-only explorer writes). ``running_explorer`` is what the ``similarity_index`` asset
asks to link to it: the file alone is not trusted (a killed server leaves it behind, anyone who can
write the data directory can write it). Only a server of this machine is asked: the recorded host
is this one, its process is alive, and the URL names a loopback or local address; it must answer
``/api/info`` within a second, without redirects. Standard library only: the asset imports this.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
import urllib.parse
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


def _local_address(host: str) -> bool:
    """``host`` is a loopback name or an address of one of this machine's interfaces."""
    if host in ("localhost", socket.gethostname()):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if address.is_loopback or address.is_unspecified:
        return True
    try:
        own = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        return False
    return str(address) in own


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def running_explorer(data_dir, timeout: float = 1.0) -> str | None:
    """The URL of an explorer of this machine serving this data directory that answers now, else None."""
    try:
        status = read_json(status_path(data_dir))
        url = str(status["url"]).rstrip("/")
    except Exception:  # noqa: BLE001 - no or unreadable status file: no explorer
        return None
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not _local_address(parsed.hostname):
        return None
    if status.get("host") != socket.gethostname() or not _alive(status.get("pid")):
        return None
    try:
        with urllib.request.build_opener(_NoRedirects).open(f"{url}/api/info", timeout=timeout) as resp:
            return url if resp.status == 200 and "tracks" in json.load(resp) else None
    except Exception:  # noqa: BLE001 - whatever fails, the explorer is not answering
        return None

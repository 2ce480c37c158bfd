"""The version store: model versions on disk and the pointer to the live one.

``<data>/models/genre/CURRENT.json`` names the live version ``v<timestamp>/``; a version holds
``deployed/`` (see ``persistence.py``), ``folds.json``, ``cv_report.json`` and ``card.json``.
CURRENT.json is replaced atomically after the version is completely written, so a reader sees the
old complete version or the new one, never a mixture.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from music_pipeline.artifacts import (
    ArtifactPath,
    artifact_path,
    ensure_dir,
    list_dir,
    read_json,
    remove_tree,
    write_json,
)
from music_pipeline.genre.persistence import ModelFileError

CURRENT = "CURRENT.json"
MODEL_NAME = "genre_classifier"


class VersionError(RuntimeError):
    pass


def publish_version(root: ArtifactPath, write: Callable[[ArtifactPath], None], keep: int = 3) -> ArtifactPath:
    """Write a new model version with ``write(version_dir)``, then switch ``CURRENT.json`` to it.
    Old versions beyond ``keep`` are removed."""
    root = ensure_dir(root)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    # names sort in publication order even after pruning: a stamp already used gets the next -N
    taken = [_version_order(p)[1] for p in list_dir(root) if p.name.split("-")[0] == f"v{stamp}"]
    vdir = root / (f"v{stamp}-{max(taken) + 1}" if taken else f"v{stamp}")
    try:
        write(vdir)
    except BaseException:
        remove_tree(vdir)
        raise
    write_json(root / CURRENT, {"version": vdir.name})
    # by the time stamp in the name: object stores keep no directory times
    versions = sorted((p for p in list_dir(root) if p.is_dir() and p.name.startswith("v")), key=_version_order)
    for old in versions[:-keep]:
        if old.name != vdir.name:
            remove_tree(old)
    return vdir


def _version_order(p: ArtifactPath) -> tuple[str, int]:
    stamp, _, n = p.name.partition("-")
    return stamp, int(n) if n.isdigit() else 0


def current_version(root: ArtifactPath) -> ArtifactPath | None:
    root = artifact_path(root)
    p = root / CURRENT
    if not p.is_file():
        return None
    name = str(read_json(p)["version"])
    if "/" in name or name.startswith("."):
        raise ModelFileError(f"{p}: invalid version name {name!r}")
    return root / name

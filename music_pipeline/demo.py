"""The demo library: real free music from Debian's game-music packages, or a synthetic fallback.

Twelve small packages in four styles, three packages per style (``DEMO_PACKAGES``), so the
genre model's estimate on a source it never saw is honest (a whole package is held out) and the
playlists have real structure to find. Their music files are fetched with ``apt-get download``
(no root needed once the package lists exist), unpacked into ``<dest>/<package>/`` — files
shorter than ``MIN_SECONDS`` (jingles, sound effects) left out, at most ``MAX_TRACKS_PER_PACKAGE``
per package — with ``labels.csv`` (path, label = the package's style, group = the package) and
``MANIFEST.csv`` (source package, licence, copyright file per track). A second call downloads
nothing. None of the packages is reserved for the project's outside checks.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from music_pipeline.artifacts import write_text


@dataclass(frozen=True)
class DemoPackage:
    style: str  # the label of its tracks (a style, never the package name)
    music: tuple[str, ...]  # folders inside the package that hold its music


# package -> its style and music folders: three packages a style, so that a package held out still
# leaves two of its style to learn from (with two, the demo's estimate was at chance: 0.23 against
# 0.25); small packages (4–64 MB each, 315 MB in all)
DEMO_PACKAGES: dict[str, DemoPackage] = {
    "gunroar-data": DemoPackage("electronic", ("usr/share/games/gunroar/sounds/musics/",)),
    "parsec47-data": DemoPackage("electronic", ("usr/share/games/parsec47/sounds/",)),
    "tumiki-fighters-data": DemoPackage("electronic", ("usr/share/games/tumiki-fighters/sounds/",)),
    "lordsawar-data": DemoPackage("orchestral", ("usr/share/games/lordsawar/music/",)),
    "ardentryst": DemoPackage("orchestral", ("usr/share/games/ardentryst/Music/",)),
    "freedink-data": DemoPackage("orchestral", ("usr/share/games/dink/dink/Sound/",)),
    "enigma-data": DemoPackage("ambient", ("usr/share/games/enigma/music/",)),
    "hyperrogue-music": DemoPackage("ambient", ("usr/share/hyperrogue/music/",)),
    "singularity-music": DemoPackage("ambient", ("usr/share/games/singularity/music/",)),
    "xmoto-data": DemoPackage("band", ("usr/share/games/xmoto/Textures/Musics/",)),
    "amoebax-data": DemoPackage("band", ("usr/share/games/amoebax/music/",)),
    "extremetuxracer-data": DemoPackage("band", ("usr/share/games/etr/music/",)),
}
MUSIC_SUFFIXES = (".ogg", ".mp3", ".flac", ".wav")
MIN_SECONDS = 20.0  # shorter files are jingles or sound effects, not music
MAX_TRACKS_PER_PACKAGE = 10  # evenly spread over the package's files in name order: keeps the demo short
DONE_MARKER = ".complete"


_LICENCE_NAME = re.compile(r"[\w.+-]+(?: (?:and|or|with) [\w.+-]+)*")  # DEP-5 short names ("GPL-2+ or MIT")


def _licences(copyright_text: str) -> str:
    found = []
    for m in re.finditer(r"^License:\s*(\S.*)$", copyright_text, flags=re.MULTILINE):
        lic = m.group(1).strip()
        if _LICENCE_NAME.fullmatch(lic) and lic not in found:  # not the first line of a licence's text
            found.append(lic)
    return "; ".join(found) or "see copyright file"


def _duration(path: Path) -> float:
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except (RuntimeError, OSError):  # soundfile's LibsndfileError is a RuntimeError: not audio it reads
        return 0.0


def spread(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly spread over them (first and last included), order kept."""
    if len(items) <= n:
        return list(items)
    if n == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def _unpack_music(deb: Path, package: str, dest: Path) -> list[tuple[str, str]]:
    """Extract the music and the copyright file of one .deb; returns (relpath, licence) of the
    kept tracks (at least ``MIN_SECONDS`` long, at most ``MAX_TRACKS_PER_PACKAGE``)."""
    prefixes = DEMO_PACKAGES[package].music
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    out_dir = dest / package
    out_dir.mkdir(parents=True, exist_ok=True)
    copyright_text = ""
    files: list[str] = []
    with tempfile.TemporaryFile() as tmp:
        tmp.write(data)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            for member in tar:
                name = PurePosixPath(member.name.lstrip("./")).as_posix()
                if not member.isfile():
                    continue
                if name == f"usr/share/doc/{package}/copyright":
                    copyright_text = tar.extractfile(member).read().decode("utf-8", "replace")
                    continue
                for prefix in prefixes:
                    if name.startswith(prefix) and name.lower().endswith(MUSIC_SUFFIXES):
                        rel = name[len(prefix) :]
                        target = out_dir / rel  # rel comes from a trusted Debian package, still kept under out_dir
                        if out_dir.resolve() not in target.resolve().parents:
                            continue
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with tar.extractfile(member) as src, open(target, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        files.append(rel)
    music = sorted(rel for rel in files if _duration(out_dir / rel) >= MIN_SECONDS)
    kept = spread(music, MAX_TRACKS_PER_PACKAGE)
    for rel in set(files) - set(kept):
        (out_dir / rel).unlink()
    write_text(out_dir / "COPYRIGHT", copyright_text or f"(no copyright file found in {deb.name})\n")
    lic = _licences(copyright_text)
    return [(f"{package}/{rel}", lic) for rel in kept]


def write_sidecars(dest: Path, rows: list[tuple[str, str, str]]) -> None:
    """``MANIFEST.csv`` and ``labels.csv`` of the demo library from (relpath, package, licence)."""
    with open(dest / "MANIFEST.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "source_package", "licence", "copyright_file"])
        for relpath, package, lic in sorted(rows):
            w.writerow([relpath, package, lic, f"{package}/COPYRIGHT"])
    # label = the package's style, group = the package: the genre model's estimate holds whole
    # packages out, so it is measured on sources it never saw
    with open(dest / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "group"])
        for relpath, package, _ in sorted(rows):
            w.writerow([relpath, DEMO_PACKAGES[package].style, package])


def fetch_debian_music(dest: Path, log=print) -> Path:
    """Download and unpack the demo packages into ``dest``. Raises RuntimeError when apt cannot."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise RuntimeError("apt-get/dpkg-deb are not available on this machine")
    dest.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        log(f"downloading {', '.join(DEMO_PACKAGES)} with apt-get download …")
        proc = subprocess.run(
            ["apt-get", "download", *DEMO_PACKAGES], cwd=tmp, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0 and "Unable to locate" in proc.stderr and os.geteuid() == 0:
            log("package lists are missing: running apt-get update once (as root) …")
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, check=False)
            proc = subprocess.run(
                ["apt-get", "download", *DEMO_PACKAGES], cwd=tmp, capture_output=True, text=True, check=False
            )
        debs = {p.name.split("_")[0]: p for p in Path(tmp).glob("*.deb")}
        missing = [p for p in DEMO_PACKAGES if p not in debs]
        if missing:
            hint = (
                " (run 'apt-get update' once as root so the package lists exist)"
                if "Unable to locate" in proc.stderr
                else ""
            )
            raise RuntimeError(f"apt-get download could not deliver {missing}{hint}: {proc.stderr.strip()[-300:]}")
        for package, deb in debs.items():
            for relpath, lic in _unpack_music(deb, package, dest):
                rows.append((relpath, package, lic))
    if not rows:
        raise RuntimeError("the demo packages contained no music files")
    write_sidecars(dest, rows)
    return dest


def prepare_demo_library(dest: Path, synthetic: bool = False, log=print) -> Path:
    """The demo library folder, fetched once (cached by a marker file)."""
    dest = Path(dest)
    real, synth = dest / "debian", dest / "synthetic"
    if not synthetic:
        if (real / DONE_MARKER).exists():
            log(f"demo library (cached): {real}")
            return real
        try:
            if real.exists():
                shutil.rmtree(real)  # an interrupted earlier fetch
            fetch_debian_music(real, log)
            (real / DONE_MARKER).write_text("ok\n")
            n = sum(1 for _ in real.rglob("*") if _.suffix.lower() in MUSIC_SUFFIXES)
            log(f"demo library: {n} real tracks from Debian's game-music packages in {real}")
            return real
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            log(f"could not fetch the real demo music ({exc}); falling back to a SYNTHETIC library")
    if not (synth / DONE_MARKER).exists():
        from music_pipeline.synth import write_styled_library

        write_styled_library(synth)
        (synth / DONE_MARKER).write_text("ok\n")
    log(f"demo library: SYNTHETIC ({synth}) — styles synthesized in code, not real music")
    return synth

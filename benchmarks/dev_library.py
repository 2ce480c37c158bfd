"""Assemble the development library of real game music used to validate the genre model and the
similarity index: Debian packages that are NOT reserved for the outside checks (see
/work/shared/reserved-for-outside-checks.md in the project notes), label = a style assigned per
package, group = package.

    python benchmarks/dev_library.py DEST

Needs `apt-get download` (no root once the package lists exist). Files shorter than 20 s (jingles)
are left out. Writes DEST/<package>/<file> and DEST/labels.csv (path,label,group). The styles were
assigned per package before any model ran on them; "band" is the least certain one. The demo's
packages (music_pipeline/demo.py) are among them, with the same styles.
"""

from __future__ import annotations

import argparse
import csv
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from music_pipeline.demo import DEMO_PACKAGES, MIN_SECONDS

# style -> package -> glob(s) inside the unpacked package
STYLES = {
    "electronic": {
        **{
            p: "usr/share/games/*/**/*.ogg"
            for p in (
                "a7xpg-data",
                "gunroar-data",
                "mu-cade-data",
                "noiz2sa-data",
                "parsec47-data",
                "rrootage-data",
                "titanion-data",
                "torus-trooper-data",
                "tumiki-fighters-data",
            )
        },
        "zaz-data": "usr/share/games/zaz/mus*.ogg",
    },
    "orchestral": {
        "flare-game": "usr/share/games/flare/mods/fantasycore/music/*.ogg",
        "lordsawar-data": "usr/share/games/lordsawar/music/*.ogg",
        "freecol": "usr/share/games/freecol/default/resources/music/default/*.ogg",
        "megaglest-data": [
            "usr/share/games/megaglest/data/core/menu/music/*.ogg",
            "usr/share/games/megaglest/techs/megapack/factions/*/music/*.ogg",
        ],
        "freedink-data": "usr/share/games/dink/dink/Sound/*.ogg",
        "ardentryst": "usr/share/games/ardentryst/Music/*.ogg",
    },
    "ambient": {
        "singularity-music": "usr/share/games/singularity/music/**/*.ogg",
        "hyperrogue-music": "usr/share/hyperrogue/music/*.ogg",
        "enigma-data": "usr/share/games/enigma/music/**/*.ogg",
        "fillets-ng-data": "usr/share/games/fillets-ng/music/*.ogg",
    },
    "band": {
        "xmoto-data": "usr/share/games/xmoto/Textures/Musics/*.ogg",
        "extremetuxracer-data": "usr/share/games/etr/music/*.ogg",
        "trackballs-data": "usr/share/games/trackballs/music/*.ogg",
        "warmux-data": "usr/share/games/warmux/music/ingame/*.ogg",
        "amoebax-data": "usr/share/games/amoebax/music/*.ogg",
    },
}
STYLE_OF = {package: style for style, packages in STYLES.items() for package in packages}
assert all(STYLE_OF.get(p) == spec.style for p, spec in DEMO_PACKAGES.items()), "the demo's styles must match these"


def _unpack(package: str, work: Path) -> Path:
    subprocess.run(["apt-get", "download", package], cwd=work, check=True, capture_output=True)
    deb = next(work.glob(f"{package}_*.deb"))
    root = work / package
    root.mkdir()
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=tar, check=True)
    deb.unlink()
    return root


def main() -> None:
    import soundfile as sf

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dest")
    args = ap.parse_args()
    dest = Path(args.dest)
    rows = []
    with tempfile.TemporaryDirectory(prefix="devlib-") as tmp:
        for style, packages in STYLES.items():
            for package, patterns in packages.items():
                patterns = patterns if isinstance(patterns, list) else [patterns]
                root = _unpack(package, Path(tmp))
                files = sorted({f for p in patterns for f in glob.glob(str(root / p), recursive=True)})
                kept = 0
                for f in files:
                    if sf.info(f).duration < MIN_SECONDS:
                        continue
                    target = dest / package / os.path.basename(f)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, target)
                    rows.append((f"{package}/{target.name}", style, package))
                    kept += 1
                print(f"{style:11s} {package:24s} {kept} tracks")
    with open(dest / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "group"])
        w.writerows(rows)
    print(f"{len(rows)} tracks in {dest}")


if __name__ == "__main__":
    main()

"""The demo library's packaging: music kept, jingles and effects left out, labels by style with the
package as the group (a fake .deb of synthesized audio; no download)."""

from __future__ import annotations

import csv
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from music_pipeline import demo
from music_pipeline.audio.scan import read_labels_csv


def test_styles_are_labels_with_two_packages_each():
    styles = {}
    for package, spec in demo.DEMO_PACKAGES.items():
        assert spec.style != package
        styles.setdefault(spec.style, []).append(package)
    assert len(demo.DEMO_PACKAGES) >= 8 and len(styles) >= 4
    assert all(len(packages) >= 2 for packages in styles.values())


def test_spread_keeps_ends_and_order():
    assert demo.spread(list("abcdefghij"), 4) == ["a", "d", "g", "j"]
    assert demo.spread(list("abc"), 5) == ["a", "b", "c"]
    assert demo.spread(list("abc"), 1) == ["a"]


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")
def test_unpack_keeps_music_and_writes_style_labels(tmp_path, monkeypatch):
    package = "gunroar-data"
    folder = demo.DEMO_PACKAGES[package].music[0]
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n"
    )
    music = root / folder
    music.mkdir(parents=True)
    sr = 8000
    for i in range(5):  # 3 s "songs" and 1 s "jingles"; another folder holds an effect
        sf.write(music / f"song{i}.ogg", np.sin(np.arange(3 * sr) * 0.05 * (i + 1)).astype(np.float32) * 0.3, sr)
    sf.write(music / "jingle.ogg", np.zeros(sr, np.float32), sr)
    (root / "usr/share/games/gunroar/other").mkdir(parents=True)
    sf.write(root / "usr/share/games/gunroar/other/boom.wav", np.zeros(3 * sr, np.float32), sr)
    doc = root / f"usr/share/doc/{package}"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Files: *\nLicense: BSD-2-clause\n Redistribution and use...\n")
    deb = tmp_path / f"{package}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True, capture_output=True)

    monkeypatch.setattr(demo, "MIN_SECONDS", 2.0)
    monkeypatch.setattr(demo, "MAX_TRACKS_PER_PACKAGE", 3)
    dest = tmp_path / "lib"
    rows = demo._unpack_music(deb, package, dest)
    assert [r for r, _ in rows] == [f"{package}/song0.ogg", f"{package}/song2.ogg", f"{package}/song4.ogg"]
    assert {lic for _, lic in rows} == {"BSD-2-clause"}
    assert sorted(p.name for p in (dest / package).iterdir()) == ["COPYRIGHT", "song0.ogg", "song2.ogg", "song4.ogg"]

    demo.write_sidecars(dest, [(r, package, lic) for r, lic in rows])
    labels = read_labels_csv(dest)
    assert labels[f"{package}/song2.ogg"] == ("electronic", package)
    with open(dest / "MANIFEST.csv", newline="") as fh:
        manifest = list(csv.DictReader(fh))
    assert [m["source_package"] for m in manifest] == [package] * 3

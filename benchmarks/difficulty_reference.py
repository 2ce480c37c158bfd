"""The outside reference for the PDI: scores from Debian packages + generated pieces, rendered.

Used by ``bench_difficulty.py``. Everything lands under one work directory:

    <work>/debs/                     the .deb files (apt-get download, no root needed)
    <work>/scores/<collection>/*.mid normalised scores: drums dropped, one instrument, ≤ 120 s
    <work>/audio/<variant>/<collection>/*.wav   renders (fluidsynth + FluidR3 GM, 22,050 Hz)
    <work>/reference.parquet         collection, piece, program, symbolic measures

Collections (each one source, so leave-collection-out = unseen source):

    freedoom       Freedoom 1+2 level music (MIDI lumps of freedoom1.wad / freedoom2.wad), BSD
    openttd        OpenMSX, the OpenTTD music set (openttd-openmsx), GPL-2
    planetblupi    Planet Blupi's music (planetblupi-music-midi), GPL-3
    abc_tunes      folk and other tunes from the examples of abcmidi and abcm2ps, via abc2midi
    pianobooster   PianoBooster's beginner course and booster music (CC), piano pedagogy
    generated      pieces generated with controlled density, polyphony, range and irregularity

Not used: the music21 corpus and every package of /work/shared/reserved-for-outside-checks.md.
Needs: apt-get (download), the ``fluidsynth`` and ``abcmidi`` Debian packages and the
``fluid-soundfont-gm`` sound font (``apt-get install fluidsynth abcmidi fluid-soundfont-gm``).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

PACKAGES = ["freedoom", "openttd-openmsx", "planetblupi-music-midi", "abcmidi", "abcm2ps", "pianobooster"]
RESERVED = {
    "ceferino-data",
    "colobot-common-sounds",
    "cuyo-data",
    "blobwars-data",
    "drascula-music",
    "fb-music-high",
    "freedroidrpg-data",
    "fretsonfire-songs-muldjord",
    "fretsonfire-songs-sectoid",
    "hedgewars-data",
    "marsshooter-data",
    "naev-data",
    "nexuiz-music",
    "pekka-kana-2-data",
    "pingus-data",
    "ri-li-data",
    "starfighter-data",
    "supertux-data",
    "tecnoballz-data",
    "tomatoes-data",
    "ufoai-music",
    "unknown-horizons",
    "warzone2100-music",
    "wesnoth-1.16-music",
    "widelands-data",
}
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
MAX_SECONDS = 120.0
MIN_NOTES, MIN_SECONDS = 24, 10.0
# one instrument per piece (all its parts), rotating over these General MIDI programs
PROGRAMS = {
    0: "Acoustic Grand Piano",
    48: "String Ensemble 1",
    24: "Acoustic Guitar (nylon)",
    73: "Flute",
    6: "Harpsichord",
    19: "Church Organ",
}
PROGRAM_CYCLE = [0, 48, 0, 24, 0, 73, 0, 6, 0, 19]
SR = 22_050


def _run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def fetch_packages(work: Path) -> dict[str, Path]:
    assert not RESERVED & set(PACKAGES)
    debs, roots = work / "debs", {}
    debs.mkdir(parents=True, exist_ok=True)
    for pkg in PACKAGES:
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        if not found:
            _run(["apt-get", "download", pkg], cwd=debs)
            found = sorted(debs.glob(f"{pkg}_*.deb"))
        root = work / "unpacked" / pkg
        if not root.exists():
            root.mkdir(parents=True)
            tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(found[-1])], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "-C", str(root)], stdin=tar.stdout, check=True)
            tar.wait()
        roots[pkg] = root
    return roots


def _wad_music(wad: Path) -> dict[str, bytes]:
    data = wad.read_bytes()
    _, n, off = struct.unpack("<4sii", data[:12])
    out = {}
    for i in range(n):
        pos, size, name = struct.unpack("<ii8s", data[off + 16 * i : off + 16 * i + 16])
        name = name.rstrip(b"\0").decode("ascii", "replace")
        if name.startswith("D_") and data[pos : pos + 4] == b"MThd":
            out[name] = data[pos : pos + size]
    return out


def raw_midis(roots: dict[str, Path], scratch: Path) -> dict[str, list[tuple[str, Path]]]:
    """collection -> [(piece name, MIDI file)] straight from the packages."""
    scratch.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[tuple[str, Path]]] = {}
    fd = []
    for wad in sorted(roots["freedoom"].rglob("freedoom*.wad")):
        for name, blob in _wad_music(wad).items():
            p = scratch / "freedoom" / f"{wad.stem}_{name}.mid"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(blob)
            fd.append((p.stem, p))
    out["freedoom"] = fd
    out["openttd"] = [(p.stem, p) for p in sorted(roots["openttd-openmsx"].rglob("*.mid"))]
    out["planetblupi"] = [(p.stem, p) for p in sorted(roots["planetblupi-music-midi"].rglob("*.mid"))]
    pb = []
    for p in sorted(roots["pianobooster"].rglob("*.mid*")):
        dest = scratch / "pianobooster" / (p.parent.name + "_" + p.name.replace(".gz", ""))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes())
        pb.append((dest.stem, dest))
    out["pianobooster"] = pb
    abc = []
    skip = {
        "drums",
        "temperament",
        "detune",
        "glyphs",
        "free",
        "bravura",
        "deco",
        "sample",
        "sample2",
        "sample3",
        "sample5",
        "newfeatures",
    }
    for f in sorted([*roots["abcmidi"].rglob("*.abc"), *roots["abcm2ps"].rglob("*.abc")]):
        if f.stem in skip:
            continue  # notation or tuning demonstrations, not pieces
        d = scratch / "abc" / f.stem
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, d / f.name)
        subprocess.run(["abc2midi", f.name], cwd=d, capture_output=True, text=True, check=False)
        abc += [(f"{f.stem}_{p.stem}", p) for p in sorted(d.glob("*.mid"))]
    out["abc_tunes"] = abc
    return out


def normalise_score(src: Path, dest: Path, program: int) -> bool:
    """Drums out, every part on ``program``, notes past MAX_SECONDS out; False if too small."""
    import pretty_midi

    try:
        pm = pretty_midi.PrettyMIDI(str(src))
    except Exception:  # noqa: BLE001 - pretty_midi raises many kinds on a malformed score: that score is skipped
        return False
    out = pretty_midi.PrettyMIDI(resolution=pm.resolution, initial_tempo=120.0)
    notes = [
        n
        for inst in pm.instruments
        if not inst.is_drum
        for n in inst.notes
        if n.start < MAX_SECONDS and n.end > n.start
    ]
    if len(notes) < MIN_NOTES:
        return False
    first = min(n.start for n in notes)
    inst = pretty_midi.Instrument(program=program)
    # parts merged onto one instrument can overlap on a key: a synthesizer pairs note-offs with
    # the wrong note-on and a voice hangs forever. Keep one note per key at a time (the earlier
    # one ends where the next starts; exact duplicates go).
    last_on: dict[int, pretty_midi.Note] = {}
    for n in sorted(notes, key=lambda n: (n.start, n.pitch, -n.end)):  # seconds: tempo changes resolved
        start, end = n.start - first, min(n.end, MAX_SECONDS) - first
        prev = last_on.get(n.pitch)
        if prev is not None and start < prev.end:
            if start - prev.start < 0.01:
                prev.end = max(prev.end, end)
                continue
            prev.end = start
        note = pretty_midi.Note(velocity=max(40, n.velocity), pitch=n.pitch, start=start, end=end)
        inst.notes.append(note)
        last_on[n.pitch] = note
    inst.notes = [n for n in inst.notes if n.end - n.start > 0.005]
    end = max(n.end for n in inst.notes)
    if end < MIN_SECONDS:
        return False
    inst.control_changes.append(pretty_midi.ControlChange(123, 0, end + 0.5))  # all notes off
    out.instruments.append(inst)
    dest.parent.mkdir(parents=True, exist_ok=True)
    out.write(str(dest))
    return True


def generated_pieces(dest: Path, n: int = 40, seed: int = 7) -> list[Path]:
    """Pieces spanning density, polyphony, range and irregularity (knobs drawn at random)."""
    import pretty_midi

    from music_pipeline.notes.generate import PieceSpec, generate_piece

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        voices = int(rng.integers(1, 5))
        spec = PieceSpec(
            seconds=float(rng.uniform(30, 60)),
            onsets_per_s=float(np.exp(rng.uniform(np.log(0.8), np.log(9.0)))),
            voices=voices,
            chord_share=float(rng.uniform(0.2, 0.9)) if voices > 1 else 0.0,
            range_semitones=int(rng.integers(5, 37)),
            irregularity=float(rng.uniform(0, 1)),
            centre=int(rng.integers(55, 75)),
            seed=1000 + i,
        )
        ev = generate_piece(spec)
        pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
        inst = pretty_midi.Instrument(program=0)
        for on, off, p in zip(ev.onset, ev.offset, ev.pitch, strict=True):
            inst.notes.append(
                pretty_midi.Note(velocity=int(rng.integers(70, 110)), pitch=int(p), start=float(on), end=float(off))
            )
        pm.instruments.append(inst)
        p = dest / f"gen_{i:03d}.mid"
        p.parent.mkdir(parents=True, exist_ok=True)
        pm.write(str(p))
        paths.append(p)
    return paths


def build_scores(work: Path, log=print) -> pd.DataFrame:
    """Normalised scores of every collection and their symbolic measures."""
    from music_pipeline.notes.events import read_midi
    from music_pipeline.notes.score import symbolic_measures

    table = work / "reference.parquet"
    if table.exists():
        return pd.read_parquet(table)
    roots = fetch_packages(work)
    raw = raw_midis(roots, work / "raw")
    raw["generated"] = [(p.stem, p) for p in generated_pieces(work / "raw" / "generated")]
    rows, seen = [], set()
    i = 0
    for collection, items in raw.items():
        for name, src in items:
            digest = hashlib.sha1(src.read_bytes()).hexdigest()
            if digest in seen:
                continue  # the same file in two places (freedoom1/2 share tunes)
            seen.add(digest)
            program = PROGRAM_CYCLE[i % len(PROGRAM_CYCLE)]
            dest = work / "scores" / collection / f"{name}.mid"
            if not normalise_score(src, dest, program):
                continue
            i += 1
            m = symbolic_measures(read_midi(dest))
            rows.append({"collection": collection, "piece": name, "program": program, "score": str(dest), **m})
        log(f"  {collection}: {sum(r['collection'] == collection for r in rows)} pieces")
    df = pd.DataFrame(rows)
    df.to_parquet(table)
    return df


def _level_db(y: np.ndarray) -> float:
    from music_pipeline.notes.transcribe import loudness_gain_db

    return -20.0 - loudness_gain_db(y)


VARIANTS = {
    # name: (gain in dB relative to the reference loudness, timbre filter)
    "base": (0.0, None),
    "quiet": (-12.0, None),
    "loud": (12.0, None),
    "dark": (0.0, "dark"),
    "bright": (0.0, "bright"),
}


def _timbre(y: np.ndarray, kind: str | None) -> np.ndarray:
    import scipy.signal

    if kind == "dark":  # 2nd-order low-pass at 1.5 kHz
        sos = scipy.signal.butter(2, 1500, "lowpass", fs=SR, output="sos")
        return scipy.signal.sosfilt(sos, y)
    if kind == "bright":  # +12 dB/decade tilt above 1 kHz (first-order high-shelf blend)
        sos = scipy.signal.butter(1, 1000, "highpass", fs=SR, output="sos")
        return y + 3.0 * scipy.signal.sosfilt(sos, y)
    return y


def render(score: Path, dest_for: dict[str, Path]) -> None:
    """fluidsynth at 22,050 Hz, mono; then each variant: one loudness (the pieces' reference
    level −20 dBFS at the 95th-percentile block RMS) ± its gain, after its timbre filter."""
    import soundfile as sf

    if all(p.exists() for p in dest_for.values()):
        return
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "r.wav"
        _run(
            ["fluidsynth", "-ni", "-g", "0.5", "-r", str(SR), "-F", str(wav), "-T", "wav", str(SOUNDFONT), str(score)],
            timeout=600,
        )
        y, _sr = sf.read(wav, dtype="float32", always_2d=True, frames=int((MAX_SECONDS + 5) * SR))
    y = y.mean(axis=1).astype(np.float64)
    for variant, dest in dest_for.items():
        gain, kind = VARIANTS[variant]
        v = _timbre(y, kind)
        v = v * 10 ** ((-20.0 - _level_db(v.astype(np.float32)) + gain) / 20)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # 16-bit PCM like a real file (the quiet one keeps its quantisation noise); float where
        # +12 dB would clip
        subtype = "FLOAT" if np.abs(v).max() >= 1.0 else "PCM_16"
        sf.write(dest, v.astype(np.float32), SR, subtype=subtype)


def audio_path(work: Path, variant: str, collection: str, piece: str) -> Path:
    return work / "audio" / variant / collection / f"{piece}.wav"

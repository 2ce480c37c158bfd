"""Material for ``bench_versions.py``: real compositions rendered twice, as a library and as versions.

    <work>/library/<id>.wav    each chosen piece once on piano (program 0), plus distractor pieces
                               (only on piano) — ids are random hex: names carry no trace of the source
    <work>/versions/<id>.wav   a second performance of each chosen piece: another General MIDI program,
                               tempo x1.1-1.3 faster, and transposed by 1-5 semitones for about half
    <work>/truth.json          {version id: {"original": library id, "collection", "piece", "program",
                               "tempo", "transpose"}}; {"distractors": [...]} for the piano-only ones

The scores are the normalised ones of ``difficulty_reference.py`` (``/work/bench_diff/scores``:
Debian packages and generated pieces; nothing of the reserved list).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.difficulty_reference import SOUNDFONT, SR

VERSION_PROGRAMS = [
    48,
    24,
    73,
    19,
    6,
    40,
    56,
    11,
]  # strings, guitar, flute, organ, harpsichord, violin, trumpet, vibraphone
PAIRS_PER_COLLECTION = 24
DISTRACTORS_PER_COLLECTION = 8


def _performance(src: Path, dest: Path, program: int, tempo: float = 1.0, transpose: int = 0) -> None:
    """``src`` on ``program``, ``tempo`` times faster, ``transpose`` semitones up, rendered to ``dest``."""
    import pretty_midi
    import soundfile as sf

    pm = pretty_midi.PrettyMIDI(str(src))
    out = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=program)
    for n in (n for i in pm.instruments for n in i.notes):
        inst.notes.append(
            pretty_midi.Note(
                velocity=n.velocity,
                pitch=int(np.clip(n.pitch + transpose, 21, 108)),
                start=n.start / tempo,
                end=n.end / tempo,
            )
        )
    end = max(n.end for n in inst.notes)
    inst.control_changes.append(pretty_midi.ControlChange(123, 0, end + 0.5))
    out.instruments.append(inst)
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "s.mid", Path(tmp) / "r.wav"
        out.write(str(mid))
        subprocess.run(
            ["fluidsynth", "-ni", "-g", "0.5", "-r", str(SR), "-F", str(wav), "-T", "wav", str(SOUNDFONT), str(mid)],
            check=True,
            capture_output=True,
            timeout=600,
        )
        y, _ = sf.read(wav, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    y = y / max(1e-6, float(np.abs(y).max())) * 0.5
    dest.parent.mkdir(parents=True, exist_ok=True)
    sf.write(dest, y, SR, subtype="PCM_16")


def build(scores: Path, work: Path, collections: list[str], seed: int = 0, log=print) -> dict:
    """Render the material once (kept across runs); the truth table."""
    truth_path = work / "truth.json"
    if truth_path.exists():
        return json.loads(truth_path.read_text())
    rng = np.random.default_rng(seed)
    truth: dict = {"versions": {}, "distractors": []}
    for c in collections:
        pieces = sorted((scores / c).glob("*.mid"))
        rng.shuffle(pieces)
        pairs = pieces[:PAIRS_PER_COLLECTION]
        extra = pieces[PAIRS_PER_COLLECTION : PAIRS_PER_COLLECTION + DISTRACTORS_PER_COLLECTION]
        for p in pairs:
            lib_id, ver_id = rng.bytes(6).hex(), rng.bytes(6).hex()
            program = int(rng.choice(VERSION_PROGRAMS))
            tempo = float(rng.uniform(1.1, 1.3))
            transpose = int(rng.choice([-5, -4, -3, -2, -1, 1, 2, 3, 4, 5])) if rng.random() < 0.5 else 0
            _performance(p, work / "library" / f"{lib_id}.wav", 0)
            _performance(p, work / "versions" / f"{ver_id}.wav", program, tempo, transpose)
            truth["versions"][ver_id] = {
                "original": lib_id,
                "collection": c,
                "piece": p.stem,
                "program": program,
                "tempo": round(tempo, 3),
                "transpose": transpose,
            }
        for p in extra:
            lib_id = rng.bytes(6).hex()
            _performance(p, work / "library" / f"{lib_id}.wav", 0)
            truth["distractors"].append({"id": lib_id, "collection": c, "piece": p.stem})
        log(f"  {c}: {len(pairs)} pairs, {len(extra)} distractors")
    truth_path.write_text(json.dumps(truth, indent=1))
    return truth


if __name__ == "__main__":
    import sys

    build(Path("/work/bench_diff/scores"), Path(sys.argv[1]), sys.argv[2:])

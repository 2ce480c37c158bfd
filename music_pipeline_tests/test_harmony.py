"""Key estimation, Camelot codes, mixing rules, `key` and `order` on synthesized audio."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import soundfile as sf

from music_pipeline.harmony.camelot import (
    KEYS_ALL,
    camelot,
    camelot_step,
    key_name,
    mixes_well,
    parse_key,
    tempo_compatible,
    weighted_score,
)
from music_pipeline.harmony.key import estimate_key
from music_pipeline.harmony.mix import MixTrack, order_for_mixing, transition
from music_pipeline.notes.events import NoteEvents
from music_pipeline.notes.generate import render

SR = 22_050


def cadence(tonic: int, minor: bool, reps: int = 2, start: float = 0.1) -> NoteEvents:
    """i–iv–V–i (or I–IV–V–I) with a bass note, one chord a second."""
    third = 3 if minor else 4
    chords = [[0, third, 7], [5, 5 + third, 12], [7, 11, 14], [0, third, 7]]
    on, off, pitch = [], [], []
    t = start
    for _ in range(reps):
        for c in chords:
            for x in [*c, c[0] - 12]:
                on.append(t), off.append(t + 0.9), pitch.append(60 + tonic + x)
            t += 1.0
    return NoteEvents(np.array(on), np.array(off), np.array(pitch), np.ones(len(on)), [[0.0, t + 0.3]])


EXPECTED = {
    (0, "major"): ("C major", "8B"),
    (9, "minor"): ("A minor", "8A"),
    (7, "major"): ("G major", "9B"),
    (4, "minor"): ("E minor", "9A"),
    (11, "major"): ("B major", "1B"),
    (8, "minor"): ("G# minor", "1A"),
    (6, "major"): ("F# major", "2B"),
    (3, "minor"): ("Eb minor", "2A"),
    (1, "major"): ("Db major", "3B"),
    (10, "minor"): ("Bb minor", "3A"),
    (8, "major"): ("Ab major", "4B"),
    (5, "minor"): ("F minor", "4A"),
    (3, "major"): ("Eb major", "5B"),
    (0, "minor"): ("C minor", "5A"),
    (10, "major"): ("Bb major", "6B"),
    (7, "minor"): ("G minor", "6A"),
    (5, "major"): ("F major", "7B"),
    (2, "minor"): ("D minor", "7A"),
    (2, "major"): ("D major", "10B"),
    (11, "minor"): ("B minor", "10A"),
    (9, "major"): ("A major", "11B"),
    (6, "minor"): ("F# minor", "11A"),
    (4, "major"): ("E major", "12B"),
    (1, "minor"): ("C# minor", "12A"),
}


def test_camelot_table_all_24_keys_and_round_trip():
    assert set(EXPECTED) == set(KEYS_ALL)
    for key, (name, code) in EXPECTED.items():
        assert key_name(key) == name and camelot(key) == code
        assert parse_key(name) == key and parse_key(code) == key
    assert parse_key("A#min") == (10, "minor") and parse_key("Gb") == (6, "major") and parse_key("g#m") == (8, "minor")
    with pytest.raises(ValueError, match="not a key"):
        parse_key("H major")


def test_weighted_score_and_mixing_rules():
    c, a_min, g, f, c_min = (0, "major"), (9, "minor"), (7, "major"), (5, "major"), (0, "minor")
    assert weighted_score(c, c) == 1.0
    assert weighted_score(g, c) == 0.5  # estimate a fifth above
    assert weighted_score(a_min, c) == 0.3 and weighted_score(c, a_min) == 0.3
    assert weighted_score(c_min, c) == 0.2
    assert weighted_score((1, "major"), c) == 0.0
    assert camelot_step(c, g) == "+1" and camelot_step(c, f) == "-1" and camelot_step(c, a_min) == "relative"
    assert camelot_step(c, (2, "major")) == "clash" and camelot_step(c, (4, "minor")) == "clash"  # 8B → 9A
    assert tempo_compatible(120, 126) and not tempo_compatible(120, 128)
    assert tempo_compatible(120, 61) and tempo_compatible(70, 140) and not tempo_compatible(120, 0)
    assert mixes_well(c, 120, g, 124) and not mixes_well(c, 120, (1, "major"), 120)


@pytest.mark.parametrize("tonic,mode", [(0, "major"), (9, "minor"), (6, "minor"), (10, "major"), (3, "minor")])
def test_synthesized_cadence_gives_its_key(tonic, mode):
    from music_pipeline.features.spectra import compute_chroma

    y = render(cadence(tonic, mode == "minor"), brightness=0.5)
    est = estimate_key(compute_chroma(y, SR).mean(axis=1))
    assert est.key == (tonic, mode)
    assert est.camelot == camelot((tonic, mode))
    assert est.confidence > 0.5


def test_flat_chroma_has_low_confidence():
    assert estimate_key(np.ones(12)).confidence < 0.1


def test_order_puts_compatible_tracks_next_to_each_other():
    # given order: C, F#(clash), G, F#m-ish far tempo; a smooth order exists: F – C – G – D
    tracks = [
        MixTrack("c", (0, "major"), 120, 0.1),
        MixTrack("d", (2, "major"), 121, 0.1),
        MixTrack("f", (5, "major"), 119, 0.1),
        MixTrack("g", (7, "major"), 60.5, 0.1),  # half time of ~121
    ]
    order = order_for_mixing(tracks)
    names = [tracks[i].name for i in order]
    assert names in (["f", "c", "g", "d"], ["d", "g", "c", "f"])
    steps = [transition(tracks[a], tracks[b]) for a, b in itertools.pairwise(order)]
    assert all(s["mixes_well"] for s in steps)
    assert any(s["half_double"] for s in steps)


def test_key_and_order_commands(tmp_path, capsys):
    from music_pipeline.cli import main

    files = []
    for name, tonic, minor in (("a_minor", 9, True), ("c_major", 0, False), ("fs_minor", 6, True)):
        p = tmp_path / f"{name}.wav"
        sf.write(p, render(cadence(tonic, minor, reps=2)), SR)
        files.append(p)
    assert main(["key", *map(str, files), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [set(x) for x in lines] == [{"file", "key", "camelot", "confidence"}] * 3
    assert [(x["key"], x["camelot"]) for x in lines] == [("A minor", "8A"), ("C major", "8B"), ("F# minor", "11A")]

    m3u = tmp_path / "list.m3u8"
    m3u.write_text("#EXTM3U\n" + "\n".join(f.name for f in [files[0], files[2], files[1]]) + "\n")
    out = tmp_path / "ordered.m3u8"
    assert main(["order", str(m3u), "--json", "--out", str(out), "--data", str(tmp_path / "data")]) == 0
    answer = json.loads(capsys.readouterr().out)
    keys = [t["camelot"] for t in answer["tracks"]]
    assert sorted(keys) == ["11A", "8A", "8B"]
    assert abs(keys.index("8A") - keys.index("8B")) == 1  # the relative keys side by side
    assert answer["cost"] <= answer["cost_before"]
    assert len(answer["transitions"]) == 2 and {"key_relation", "tempo_change_pct", "energy_change_db"} <= set(
        answer["transitions"][0]
    )
    assert out.read_text().count(".wav") == 3


def test_harmonic_radio_steps_mix_well_on_a_synthetic_index():
    from music_pipeline.harmony.camelot import mix_mask
    from music_pipeline.search.radio import radio_walk

    rng = np.random.default_rng(0)
    n = 400
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = [KEYS_ALL[i] for i in rng.integers(0, 24, n)]
    tempi = rng.uniform(60, 180, n)
    keys[5], tempi[5] = None, 120.0  # a track without a key never follows anything

    def step_allowed(prev):
        return mix_mask(
            keys, tempi, keys[prev] if prev is not None else (0, "major"), tempi[prev] if prev is not None else 120.0
        )

    pos, _ = radio_walk(vectors, vectors[0], 15, exclude=[0], step_allowed=step_allowed)
    assert len(pos) >= 5 and 5 not in pos
    chain = [((0, "major"), 120.0)] + [(keys[p], tempi[p]) for p in pos]
    assert all(mixes_well(a, ta, b, tb) for (a, ta), (b, tb) in itertools.pairwise(chain))
    plain, _ = radio_walk(vectors, vectors[0], 15, exclude=[0])
    chain = [((0, "major"), 120.0)] + [(keys[p], tempi[p]) for p in plain]
    assert not all(mixes_well(a, ta, b, tb) for (a, ta), (b, tb) in itertools.pairwise(chain))  # the rule bites

"""Versions of a composition: harmonic sequences of synthesized chord progressions (another timbre,
faster, transposed), the sequence store the features pass fills, and `music-pipeline versions`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from music_pipeline.analysis import TrackJob, analyse_many
from music_pipeline.artifacts import write_parquet
from music_pipeline.audio.scan import scan_library
from music_pipeline.features.harmonic import SequenceStore, sequence_of_signal
from music_pipeline.identity.versions import (
    QueryError,
    find_versions,
    load_library,
    profile,
    rank_versions,
    summary,
)
from music_pipeline.layout import DataLayout
from music_pipeline.synth import SR

from .audio_corpus import write

# chords as semitones above C4 (pitch classes of triads), one per beat
CHORDS = {
    "I": (0, 4, 7),
    "ii": (2, 5, 9),
    "iii": (4, 7, 11),
    "IV": (5, 9, 12),
    "V": (7, 11, 14),
    "vi": (9, 12, 16),
    "bVII": (10, 14, 17),
    "V/V": (2, 6, 9),
}


def progression(seed: int, length: int = 16) -> list[str]:
    rng = np.random.default_rng(seed)
    return [str(c) for c in rng.choice(list(CHORDS), size=length)]


def render(chords: list[str], bpm: float, transpose: int = 0, timbre: str = "piano", repeats: int = 3) -> np.ndarray:
    """The chord progression played ``repeats`` times, one chord per beat, by a decaying tone
    with many harmonics ("piano") or a steady one with odd harmonics ("organ")."""
    beat = 60.0 / bpm
    n = int(beat * SR)
    t = np.arange(n) / SR
    if timbre == "piano":
        env, partials = np.exp(-t / 0.4), [(1, 1.0), (2, 0.5), (3, 0.3), (4, 0.2)]
    else:
        env, partials = (
            np.minimum(1.0, t / 0.03) * np.minimum(1.0, (n - np.arange(n)) / (0.03 * SR)),
            [
                (1, 1.0),
                (3, 0.4),
                (5, 0.2),
            ],
        )
    out = []
    for c in chords * repeats:
        y = np.zeros(n)
        for semis in CHORDS[c]:
            f = 261.63 * 2 ** ((semis + transpose) / 12)
            y += sum(a * np.sin(2 * np.pi * f * h * t) for h, a in partials)
        out.append(env * y)
    y = np.concatenate(out)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


ORIGINAL = progression(0)
DISTRACTORS = [progression(s) for s in range(1, 6)]


def test_a_transposed_faster_version_in_another_timbre_ranks_its_original_first():
    library = [sequence_of_signal(render(ORIGINAL, 100), SR)] + [
        sequence_of_signal(render(d, 100), SR) for d in DISTRACTORS
    ]
    profiles, summaries = np.stack([profile(s) for s in library]), np.stack([summary(s) for s in library])
    version = sequence_of_signal(render(ORIGINAL, 125, transpose=3, timbre="organ"), SR)
    ranked = rank_versions(version, library, profiles, summaries, n=len(library))
    assert ranked[0].index == 0
    assert ranked[0].score > ranked[1].score
    # the query itself is never offered when excluded
    assert 0 not in [r.index for r in rank_versions(library[0], library, profiles, summaries, exclude={0})]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("versions")
    lib, data = root / "lib", root / "data"
    write(lib / "a/original.wav", render(ORIGINAL, 100, repeats=2))
    write(lib / "a/copy.flac", render(ORIGINAL, 100, repeats=2))  # the same audio, other bytes
    for i, d in enumerate(DISTRACTORS[:3]):
        write(lib / f"b/other{i}.wav", render(d, 100, repeats=2))
    jobs = [
        TrackJob(t.key, t.path, t.relpath, t.content_hash, str(data), ("features",)) for t in scan_library(lib).tracks
    ]
    first = analyse_many(jobs, workers=1)
    write_parquet(DataLayout(data).manifest_path, scan_library(lib).to_frame())
    return root, lib, data, jobs, first


def test_the_features_pass_stores_the_sequence_and_adds_it_to_an_older_library(built):
    _, _, data, jobs, first = built
    store = SequenceStore(data)
    assert [r["features"].status for r in first] == ["extracted"] * len(jobs)
    assert store.hashes() == {j.content_hash for j in jobs}
    before = store.load(jobs[0].content_hash)
    assert before.shape[0] == 12 and before.shape[1] >= 16
    store.forget(jobs[0].content_hash)  # a library built before the sequences existed
    again = analyse_many(jobs, workers=1)
    assert [r["features"].status for r in again] == ["cached"] * len(jobs)  # features kept
    assert np.array_equal(store.load(jobs[0].content_hash), before)  # the same sequence, added


def test_versions_command_answers_one_json_line_per_query(built, tmp_path, capsys):
    from music_pipeline.cli import main

    _, _, data, _, _ = built
    version = write(tmp_path / "x.wav", render(ORIGINAL, 120, transpose=-2, timbre="organ", repeats=2))
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"not audio at all" * 100)
    code = main(["versions", "--data", str(data), "--json", "-n", "3", str(version), "a/original.wav", str(broken)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1  # one query could not be read: named, the others answered
    assert lines[0]["query"] == str(version)
    assert lines[0]["results"][0]["path"] in {"a/original.wav", "a/copy.flac"}
    assert set(lines[0]["results"][0]) == {"track", "path", "score"} and len(lines[0]["results"]) == 3
    assert [r["score"] for r in lines[0]["results"]] == sorted((r["score"] for r in lines[0]["results"]), reverse=True)
    assert lines[1]["query"] == "a/original.wav"
    assert "a/original.wav" not in [r["path"] for r in lines[1]["results"]]  # never itself
    assert lines[1]["results"][0]["path"] == "a/copy.flac"
    assert lines[2]["file"] == str(broken) and "error" in lines[2]


def test_the_packed_library_reads_back_as_built(built):
    from music_pipeline.identity.versions import build_library

    _, _, data, jobs, _ = built
    built_now, read_back = build_library(data), load_library(data)  # the second from the stored file
    assert list(read_back.keys) == list(built_now.keys) == sorted(j.key for j in jobs)
    assert np.array_equal(read_back.content_of, built_now.content_of)
    for a, b in zip(read_back.sequences, built_now.sequences, strict=True):
        assert np.array_equal(a, b)
    assert find_versions("a/original.wav", read_back) == find_versions("a/original.wav", built_now)


def test_a_query_that_is_no_track_nor_file_is_named(built):
    _, _, data, _, _ = built
    with pytest.raises(QueryError, match="nowhere.wav"):
        find_versions("nowhere.wav", load_library(data))


def test_another_copy_of_the_same_recording_is_not_a_version():
    import pandas as pd

    from music_pipeline.identity.versions import SequenceLibrary

    original = sequence_of_signal(render(ORIGINAL, 100), SR)
    other = sequence_of_signal(render(DISTRACTORS[0], 100), SR)
    seqs = [original, original.copy(), other]  # content 1: the same recording stored again
    lib = SequenceLibrary(
        hashes=np.array(["h0", "h1", "h2"]),
        sequences=seqs,
        profiles=np.stack([profile(s) for s in seqs]),
        summaries=np.stack([summary(s) for s in seqs]),
        keys=np.array(["k0", "k1", "k2"]),
        relpaths=np.array(["a.wav", "a copy.mp3", "b.wav"]),
        content_of=np.array([0, 1, 2]),
    )
    assert find_versions("k0", lib)["results"][0]["track"] == "k1"  # unknown: the copy wins
    groups = pd.DataFrame(
        {"group": [0, 0], "kind": ["same recording"] * 2, "track": ["k0", "k1"], "path": ["a.wav", "a copy.mp3"]}
    )
    assert [r["track"] for r in find_versions("k0", lib.with_duplicates(groups))["results"]] == ["k2"]

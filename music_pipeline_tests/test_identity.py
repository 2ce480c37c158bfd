"""Identification of clips: landmark fingerprints of synthesized tracks, the fingerprint pass of the
shared analysis, the library index and `music-pipeline identify`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from music_pipeline.analysis import TrackJob, analyse_many
from music_pipeline.artifacts import remove_tree, write_parquet
from music_pipeline.audio.decode import AudioError
from music_pipeline.audio.scan import scan_library
from music_pipeline.identity.library import build_index, identify_file, load_index
from music_pipeline.identity.store import FingerprintStore
from music_pipeline.layout import DataLayout
from music_pipeline.synth import SR, styled_track

from .audio_corpus import write

LIBRARY = {  # relpath: (style, seed)
    "a/pulse.wav": ("pulse", 1),
    "a/arpeggio.flac": ("arpeggio", 2),
    "b/noise_rock.ogg": ("noise_rock", 3),
    "b/drone.wav": ("drone", 4),
}
SECONDS = 40.0
START_S = 17.3


def _jobs(lib, data):
    return [
        TrackJob(t.key, t.path, t.relpath, t.content_hash, str(data), ("fingerprints",))
        for t in scan_library(lib).tracks
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("identity")
    lib, data = root / "lib", root / "data"
    signals = {}
    for relpath, (style, seed) in LIBRARY.items():
        signals[relpath] = styled_track(style, SECONDS, seed=seed)
        write(lib / relpath, signals[relpath])
    jobs = _jobs(lib, data)
    first = analyse_many(jobs, workers=1)
    write_parquet(DataLayout(data).manifest_path, scan_library(lib).to_frame())
    build_index(data)
    return root, lib, data, jobs, first, signals


def test_the_pass_stores_by_content_hash_and_is_incremental(built):
    _, _, data, jobs, first, _ = built
    assert [r["fingerprints"].status for r in first] == ["computed"] * len(LIBRARY)
    assert FingerprintStore(data).hashes() == {j.content_hash for j in jobs}
    again = analyse_many(jobs, workers=1)
    assert [r["fingerprints"].status for r in again] == ["cached"] * len(LIBRARY)


def _degrade(y: np.ndarray, how: str) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng(7)
    if how == "quieter":
        return y * np.float32(10 ** (-6 / 20)), "wav"
    if how == "noise":
        rms = np.sqrt(np.mean(y**2))
        return y + (rng.standard_normal(len(y)) * rms * 0.1).astype(np.float32), "wav"  # 20 dB SNR
    return y, how  # re-encoded by the format itself


@pytest.mark.parametrize("how", ["ogg", "mp3", "quieter", "noise"])
@pytest.mark.parametrize("relpath", ["a/arpeggio.flac", "b/noise_rock.ogg"])
def test_a_degraded_clip_from_anywhere_is_identified_with_its_offset(built, tmp_path, how, relpath):
    _, _, data, _, _, signals = built
    clip = signals[relpath][int(START_S * SR) : int((START_S + 10.0) * SR)]
    y, ext = _degrade(clip, how)
    path = write(tmp_path / f"clip.{ext}", y)
    answer = identify_file(path, load_index(data))
    assert answer["file"] == str(path)
    match = answer["match"]
    assert match is not None and match["path"] == relpath
    assert abs(match["offset_s"] - START_S) <= 0.2
    assert 0.0 < match["confidence"] <= 1.0


# Other music of each style: seeds whose transposition differs from the library's track. (A seed
# with the same transposition plays the same four notes, same synth, same grid: stretches of it are
# sample-for-sample the library track's recording, and are rightly matched.)
@pytest.mark.parametrize("style, seed", [("pulse", 12), ("arpeggio", 11), ("noise_rock", 14), ("drone", 6)])
def test_music_not_in_the_library_gets_no_match(built, tmp_path, style, seed):
    _, _, data, _, _, _ = built
    path = write(tmp_path / "other.ogg", styled_track(style, 10.0, seed=seed))
    assert identify_file(path, load_index(data))["match"] is None


def test_a_clip_shorter_than_five_seconds_is_refused_with_the_reason(built, tmp_path):
    _, _, data, _, _, signals = built
    path = write(tmp_path / "short.wav", signals["a/pulse.wav"][: 3 * SR])
    with pytest.raises(AudioError, match="too short"):
        identify_file(path, load_index(data))


def test_identify_command_answers_one_json_line_per_clip(built, tmp_path, capsys):
    from music_pipeline.cli import main

    _, _, data, _, _, signals = built
    inside = write(tmp_path / "in.ogg", signals["b/drone.wav"][5 * SR : 15 * SR])
    outside = write(tmp_path / "out.wav", styled_track("pulse", 10.0, seed=99))
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"not audio at all" * 100)
    code = main(["identify", "--data", str(data), "--json", str(inside), str(outside), str(broken)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1  # one clip could not be read: named, the others answered
    assert lines[0]["file"] == str(inside) and lines[0]["match"]["path"] == "b/drone.wav"
    assert abs(lines[0]["match"]["offset_s"] - 5.0) <= 0.2
    assert lines[1] == {"file": str(outside), "match": None}
    assert lines[2]["file"] == str(broken) and "error" in lines[2]


def test_duplicates_groups_planted_copies_and_never_different_recordings(tmp_path, capsys):
    import shutil

    from music_pipeline.cli import main
    from music_pipeline.identity.duplicates import IDENTICAL, SAME_RECORDING

    lib, data = tmp_path / "lib", tmp_path / "data"
    pulse, arpeggio, rock = (
        styled_track(s, 30.0, seed=d) for s, d in (("pulse", 1), ("arpeggio", 2), ("noise_rock", 3))
    )
    write(lib / "pulse.wav", pulse)
    write(lib / "arpeggio.flac", arpeggio)
    write(lib / "rock.wav", rock)
    write(lib / "other/arpeggio_11.wav", styled_track("arpeggio", 30.0, seed=11))  # other music, same style
    write(lib / "other/drone.wav", styled_track("drone", 30.0, seed=4))
    write(lib / "copies/arpeggio.ogg", arpeggio[int(1.3 * SR) :] * np.float32(0.5))  # Vorbis, trimmed, quieter
    shutil.copy(lib / "pulse.wav", lib / "copies/pulse.wav")  # identical bytes
    rng = np.random.default_rng(0)
    noisy = rock + (rng.standard_normal(len(rock)) * np.sqrt(np.mean(rock**2)) * 0.1).astype(np.float32)
    write(lib / "copies/rock.mp3", np.concatenate([np.zeros(2 * SR, np.float32), noisy]))  # padded, noisy, MP3
    analyse_many(_jobs(lib, data), workers=1)
    write_parquet(DataLayout(data).manifest_path, scan_library(lib).to_frame())

    assert main(["duplicates", "--data", str(data), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    found = sorted((g["kind"], sorted(t["path"] for t in g["tracks"])) for g in groups)
    assert found == sorted(
        [
            (SAME_RECORDING, ["arpeggio.flac", "copies/arpeggio.ogg"]),
            (IDENTICAL, ["copies/pulse.wav", "pulse.wav"]),
            (SAME_RECORDING, ["copies/rock.mp3", "rock.wav"]),
        ]
    )


# -- the index's memory-mapped format ------------------------------------------------------------
def test_directory_bisection_finds_what_searchsorted_finds():
    from music_pipeline.identity.index import HASH_BITS, bisect, directory_bits, make_directory

    rng = np.random.default_rng(3)
    hashes = np.sort(rng.integers(0, 1 << HASH_BITS, 50_000).astype(np.uint32))
    hashes[1000:1300] = hashes[1000]  # a run of one common hash
    queries = np.concatenate([rng.choice(hashes, 500), rng.integers(0, 1 << HASH_BITS, 500).astype(np.uint32)])
    bits = directory_bits(len(hashes))
    d = make_directory(hashes, bits)
    b = (queries >> np.uint32(HASH_BITS - bits)).astype(np.int64)
    for right in (False, True):
        got = bisect(hashes, queries, d[b], d[b + 1], right)
        assert np.array_equal(got, np.searchsorted(hashes, queries, side="right" if right else "left"))


def test_the_mapped_index_answers_as_the_index_in_memory_and_the_old_format_is_rebuilt(built, tmp_path):
    from music_pipeline.identity.fingerprint import fingerprint_signal
    from music_pipeline.identity.library import CURRENT

    _, _, data, _, _, signals = built
    layout = DataLayout(data)
    in_memory, _ = build_index(data)
    mapped = load_index(data)
    assert isinstance(mapped.index.hashes, np.memmap) and not isinstance(in_memory.index.hashes, np.memmap)
    clips = [fingerprint_signal(y[int(s * SR) : int((s + 10) * SR)], SR) for y in signals.values() for s in (3.0, 21.0)]
    for fp in clips:
        for a, b in zip(in_memory.index.votes(fp), mapped.index.votes(fp), strict=True):
            assert np.array_equal(a, b)
        assert in_memory.index.identify(fp) == mapped.index.identify(fp) is not None
    # the first format: one .npz, no CURRENT.json — rebuilt (same answers) and removed
    np.savez(layout.legacy_fingerprint_index_path, **in_memory.index.to_arrays(), version=np.array("v1"))
    remove_tree(layout.fingerprint_index_dir)
    migrated = load_index(data)
    assert (layout.fingerprint_index_dir / CURRENT).is_file() and not layout.legacy_fingerprint_index_path.exists()
    assert [migrated.index.identify(fp) for fp in clips] == [in_memory.index.identify(fp) for fp in clips]
    assert len(list(layout.fingerprint_index_dir.iterdir())) == 2  # CURRENT.json and one folder


# -- duplicates through the build, the summary and the similarity queries -----------------------
@pytest.fixture(scope="module")
def dup_library(styled_library, tmp_path_factory):
    """The styled library plus a re-encoded (Vorbis), 1-dB quieter whole copy of one track and a
    byte-identical copy of another, analysed; the fingerprint index, duplicate groups and
    similarity index written by their assets."""
    import shutil

    import dagster as dg

    from music_pipeline.defs.assets.discovery import similarity_index
    from music_pipeline.defs.assets.identity import duplicate_groups, fingerprint_index
    from music_pipeline.defs.resources import MusicPipelineResource
    from music_pipeline.features.extract import FeatureStore
    from music_pipeline.features.tables import build_tables

    styled, shared = styled_library
    root = tmp_path_factory.mktemp("dups")
    lib, data = root / "lib", root / "data"
    shutil.copytree(styled, lib)
    shutil.copytree(DataLayout(shared).features_dir, DataLayout(data).features_dir)  # cached by content
    tracks = sorted(t.relpath for t in scan_library(lib).tracks)
    # (the styled arpeggios of seeds with one transposition are sample-identical stretches: rightly
    # grouped, so the planted copies are of other styles)
    original = next(t for t in tracks if t.startswith("pulse/"))
    twin = next(t for t in tracks if t.startswith("drone/"))
    from music_pipeline.audio.decode import decode

    y = decode(lib / original).y
    write(lib / "copies/renamed_a.ogg", y * np.float32(10 ** (-1 / 20)))  # Vorbis, 1 dB quieter
    (lib / "copies").mkdir(exist_ok=True)
    shutil.copy(lib / twin, lib / f"copies/renamed_b{(lib / twin).suffix}")
    layout = DataLayout(data)
    scan = scan_library(lib, layout.hash_cache_path)
    jobs = [
        TrackJob(t.key, t.path, t.relpath, t.content_hash, str(data), ("features", "fingerprints")) for t in scan.tracks
    ]
    assert all(r[p].ok for r in analyse_many(jobs, workers=2) for p in ("features", "fingerprints"))
    write_parquet(layout.manifest_path, scan.to_frame())
    tables = build_tables(scan, FeatureStore(data))
    write_parquet(layout.embeddings_path, tables.embeddings)
    pipeline = MusicPipelineResource(data_dir=str(data), library_dir=str(lib), workers=1)
    result = dg.materialize([fingerprint_index, duplicate_groups, similarity_index], resources={"pipeline": pipeline})
    assert result.success
    md = result.asset_materializations_for_node("duplicate_groups")[0].metadata
    return lib, data, original, twin, md


def test_the_build_writes_duplicate_groups_and_the_cli_reads_them(dup_library, capsys, monkeypatch):
    from music_pipeline.cli import main
    from music_pipeline.definitions import defs
    from music_pipeline.identity import duplicates

    _, data, original, twin, md = dup_library
    ingest = defs.resolve_job_def("ingest_tracks").asset_layer.executable_asset_keys
    assert {"duplicate_groups", "fingerprint_index"} <= {k.to_user_string() for k in ingest}
    planted = sorted(
        [
            (duplicates.SAME_RECORDING, sorted([original, "copies/renamed_a.ogg"])),
            (duplicates.IDENTICAL, sorted([twin, f"copies/renamed_b{Path(twin).suffix}"])),
        ]
    )

    def found(groups):
        """The planted groups as found; no other group may hold a planted track."""
        out = sorted((g["kind"], sorted(t["path"] for t in g["tracks"])) for g in groups)
        mine = [g for g in out if {original, twin} & set(g[1])]
        assert all(p.startswith("arpeggio/") for g in out if g not in mine for p in g[1])
        return mine

    def computed_again(*_a, **_k):
        raise AssertionError("computed again although the build's table is fresh")

    monkeypatch.setattr(duplicates, "duplicate_groups", computed_again)
    assert main(["duplicates", "--data", str(data), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert found(groups) == planted
    assert all(set(t) == {"track", "path"} for g in groups for t in g["tracks"])
    assert md["groups"].value == len(groups) and md["extra_copies"].value == duplicates.extra_copies(groups)
    assert md["identical_bytes"].value == sum(g["kind"] == duplicates.IDENTICAL for g in groups) >= 1
    monkeypatch.undo()
    # a table older than the scan is not trusted: the groups are computed again (same answer)
    path = DataLayout(data).duplicates_path
    stamp = DataLayout(data).manifest_path.stat().st_mtime - 5
    os.utime(path, (stamp, stamp))
    assert duplicates.read_duplicates(data) is None
    assert main(["duplicates", "--data", str(data), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["groups"]
    assert again == groups
    os.utime(path)  # fresh again for the tests below


def test_the_build_summary_counts_duplicates(dup_library):
    from music_pipeline.summary import as_json, collect, summary_lines

    _, data, _, _, md = dup_library
    n, extra = md["groups"].value, md["extra_copies"].value
    s = collect(data)
    assert n >= 2 and (s.duplicates["groups"], s.duplicates["extra_copies"]) == (n, extra)
    assert any(
        line.strip().startswith(f"duplicates     {n} groups ({extra} extra copies)") for line in summary_lines(s)
    )
    assert json.loads(as_json(s))["duplicates"]["groups"] == n


def test_similar_and_radio_never_offer_a_copy_of_the_query_nor_two_copies(dup_library, capsys):
    import re

    from music_pipeline.cli import main
    from music_pipeline.search.discovery import Discovery

    _, data, original, _, _ = dup_library
    disc = Discovery.open(data)
    tracks = disc.index.tracks
    pos = {r: i for i, r in enumerate(tracks["relpath"])}
    a, copy = pos[original], pos["copies/renamed_a.ogg"]
    # the raw index offers the copy among the 5 nearest: without the groups similar would too
    raw, _ = disc.index.index.search(disc.index.vector(a), 5, exclude=np.array([a]))
    assert copy in raw[0]
    _, hits = disc.similar(original, 5)
    assert len(hits) == 5 and "copies/renamed_a.ogg" not in {h.relpath for h in hits}
    # from a third track near both, only one of the two copies is offered
    third = next(
        i for i in range(len(tracks)) if i not in (a, copy) and tracks["label"].iloc[i] == tracks["label"].iloc[a]
    )
    raw, _ = disc.index.index.search(disc.index.vector(third), len(tracks) - 1, exclude=np.array([third]))
    assert {a, copy} <= set(raw[0].tolist())
    for diverse in (None, 0.5):
        _, hits = disc.similar(tracks["key"].iloc[third], len(tracks) - 2, diverse)
        assert len({original, "copies/renamed_a.ogg"} & {h.relpath for h in hits}) == 1
    _, walk = disc.radio(original, length=len(tracks))
    same = disc.copies()
    recordings = len(np.unique(same[same >= 0])) + int((same < 0).sum())
    # every other recording once: the seed's copy never, the other groups one copy each
    assert "copies/renamed_a.ogg" not in {h.relpath for h in walk} and len(walk) == recordings - 1
    _, walk = disc.radio(tracks["key"].iloc[third], length=len(tracks))
    assert len({original, "copies/renamed_a.ogg"} & {h.relpath for h in walk}) == 1
    _, _, way = disc.path(original, tracks["key"].iloc[third], length=len(tracks))
    assert "copies/renamed_a.ogg" not in {h.relpath for h in way}
    # keys in --json: each result's key and Camelot code
    assert main(["similar", original, "--data", str(data), "--json", "-n", "5"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 5
    for r in results:
        assert re.fullmatch(r"[A-G][#b]? (major|minor)", r["key"]) and re.fullmatch(r"(1[0-2]|[1-9])[AB]", r["camelot"])


def test_the_explorer_lists_a_tracks_copies_and_counts_the_groups(dup_library):
    from music_pipeline.web.explorer import Explorer

    _, data, original, _, md = dup_library
    ex = Explorer(data)
    key = ex.tracks["key"].iloc[ex.disc._by_relpath[original]]
    page = ex.track(key)
    assert [(d["relpath"], d["kind"]) for d in page["duplicates"]] == [("copies/renamed_a.ogg", "same recording")]
    assert "copies/renamed_a.ogg" not in {h["relpath"] for h in page["similar"]["results"]}
    assert page["track"]["camelot"] == page["music_key"]["camelot"]  # the same fact, from the same chroma
    alone = ex.tracks["key"].iloc[
        ex.disc._by_relpath[next(r for r in ex.tracks["relpath"] if r.startswith("noise_rock/"))]
    ]
    assert ex.track(alone)["duplicates"] == []
    counts = ex.info()["duplicates"]
    assert (counts["groups"], counts["extra_copies"]) == (md["groups"].value, md["extra_copies"].value)


def test_recommendations_skip_copies_of_what_was_played_and_offer_one_copy_of_each():
    from types import SimpleNamespace

    from music_pipeline.listening.service import _top

    # tracks 0..5; groups: {1, 4} and {2, 3}; the listener played 4
    same = np.array([-1, 0, 1, 1, 0, -1])
    scored = SimpleNamespace(
        score=np.array([0.1, 0.9, 0.8, 0.7, 0.6, 0.5]), played=np.array([False, False, False, False, True, False])
    )
    assert _top(scored, 10, same).tolist() == [2, 5, 0]  # not 1 (a copy of 4), 3 once 2 is in
    assert _top(scored, 10, np.full(6, -1)).tolist() == [1, 2, 3, 5, 0]


@pytest.mark.parametrize("width", [1, 2, 3, 4, 11, 15])
def test_running_max_is_scipys_maximum_filter(width):
    from scipy.ndimage import maximum_filter1d

    from music_pipeline.identity.fingerprint import running_max

    rng = np.random.default_rng(width)
    x = rng.integers(0, 6, size=(23, 37)).astype(np.float32)  # small integers: many ties
    for axis in (0, 1):
        expected = maximum_filter1d(x, width, axis=axis, mode="constant", cval=-np.inf)
        assert np.array_equal(running_max(x, width, axis), expected)

"""Identification of clips: landmark fingerprints of synthesized tracks, the fingerprint pass of the
shared analysis, the library index and `music-pipeline identify`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from music_pipeline.analysis import TrackJob, analyse_many
from music_pipeline.artifacts import write_parquet
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

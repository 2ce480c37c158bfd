"""`music-pipeline` commands of the spine, run in-process and as a real subprocess."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from music_pipeline.cli import main
from music_pipeline.features.embedding import FEATURE_NAMES
from music_pipeline.synth import clicks, noise, tone

from .audio_corpus import write


def test_embed_json(tmp_path, capsys):
    good = write(tmp_path / "a.flac", tone(440, 4))
    bad = tmp_path / "b.wav"
    bad.write_text("no")
    code = main(["embed", str(good), str(bad), "--json"])
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1  # one file failed
    assert out[0]["file"] == str(good) and list(out[0]["features"]) == FEATURE_NAMES
    assert out[1]["file"] == str(bad) and "not a readable audio file" in out[1]["error"]


def test_build_command_summarises_failures(tmp_path, capsys, monkeypatch):
    """A file that is not audio is listed with its reason; the build itself succeeded (exit 0, as
    the README says for `build`); --strict turns the skipped file into exit status 4."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    lib = tmp_path / "lib"
    write(lib / "ok.wav", tone(330, 4) + noise(4, amp=0.01))
    (lib / "bad.ogg").write_bytes(b"OggS" + b"\0" * 100)
    args = ["build", "--library", str(lib), "--data", str(tmp_path / "data"), "--workers", "1", "--no-models"]
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0
    assert "2 tracks in the library, 1 in the embedding table, 1 skipped" in out
    assert "skipped bad.ogg: not a readable audio file" in out
    assert main([*args, "--strict"]) == 4
    assert "--strict: 1 file(s) could not be analysed" in capsys.readouterr().err


def test_build_checks_its_arguments_before_writing_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MUSIC_LIBRARY", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    empty = tmp_path / "EMPTY"
    assert main(["build", "--data", str(empty)]) == 2
    err = capsys.readouterr().err
    assert (
        f"library folder {empty / 'library'} does not exist" in err
        and "--library DIR" in err
        and "music-pipeline demo" in err
    )
    assert main(["build", "--library", str(tmp_path / "nope"), "--data", str(empty)]) == 2
    assert f"library folder {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["build", "--library", str(tmp_path / "afile"), "--data", str(empty)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--library", str(tmp_path), "--data", str(empty), "--workers", "0"])
    assert exit_info.value.code == 2 and "must be a whole number ≥ 1, got '0'" in capsys.readouterr().err
    assert not empty.exists()  # no lock, no Dagster home, no log


def test_query_arguments_are_checked_at_the_edge(tmp_path, capsys):
    for argv, message in (
        (["similar", "x", "-n", "0"], "argument -n: must be a whole number ≥ 1, got '0'"),
        (["similar", "x", "--diverse", "7"], "argument --diverse: must be between 0 and 1, got '7'"),
        (["radio", "x", "--energy", "5"], "argument --energy: must be between 0 and 1, got '5'"),
        (["radio", "x", "--bpm", "-3"], "argument --bpm: must be a number > 0, got '-3'"),
        (["radio", "x", "--length", "abc"], "argument --length: must be a whole number, got 'abc'"),
        (["ui", "--port", "70000"], "argument --port: must be a port number 1–65535, got '70000'"),
        (["difficulty", "x.wav", "--top", "0"], "argument --top: must be a whole number ≥ 1, got '0'"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--data", str(tmp_path)])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err, argv


def _segments_short_by_one(monkeypatch):
    """A bug that stores one segment too few per track: the segments_complete check (ERROR)
    reads the stored files and must fail the build."""
    from music_pipeline.features import extract

    real = extract.extract_segments
    monkeypatch.setattr(extract, "extract_segments", lambda spectra, n: real(spectra, n)[: n - 1])


def test_build_fails_and_lists_a_failed_error_check(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    lib = _library(tmp_path / "lib", 2)
    _segments_short_by_one(monkeypatch)
    code = main(["build", "--library", str(lib), "--data", str(tmp_path / "data"), "--workers", "1", "--no-models"])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAILED CHECK mel_segments/segments_complete (ERROR)" in captured.err and "expected=6" in captured.err
    assert "the build failed (0 failed step(s), 1 failed ERROR check(s)" in captured.err


def test_a_failure_that_is_not_the_files_fault_fails_the_build_and_is_retried(tmp_path, capsys, monkeypatch):
    from music_pipeline.features import extract

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    lib = _library(tmp_path / "lib", 3)
    real = extract.features_from_signal

    def out_of_memory(y, *args):
        if len(y) > 5 * 22050:  # the 6 s tracks, not the 4 s warm-up signal
            raise MemoryError()
        return real(y, *args)

    monkeypatch.setattr(extract, "features_from_signal", out_of_memory)
    args = ["build", "--library", str(lib), "--data", str(tmp_path / "data"), "--workers", "1", "--no-models"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert (
        "FAILED track_features" in err and "not the file's fault" in err and "t00.wav" in err and "out of memory" in err
    )
    monkeypatch.setattr(extract, "features_from_signal", real)  # the memory is back
    assert main(args) == 0
    assert "3 tracks in the library, 3 in the embedding table, 0 skipped" in capsys.readouterr().out


def test_retry_failed_analyses_recorded_failures_again(tmp_path, capsys, monkeypatch):
    """An .m4a without ffmpeg is recorded as broken and stays skipped; after "installing ffmpeg"
    (a stand-in that decodes it) a plain build still skips it, `build --retry-failed` embeds it."""
    import music_pipeline.audio.decode as dec

    from .test_bad_inputs import _fake_ffmpeg

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    lib = _library(tmp_path / "lib", 2)
    (lib / "phone.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(300))
    monkeypatch.setattr(dec.shutil, "which", lambda name: None)
    args = ["build", "--library", str(lib), "--data", str(tmp_path / "data"), "--workers", "1", "--no-models"]
    assert main(args) == 0
    assert "skipped phone.m4a: .m4a files need ffmpeg" in capsys.readouterr().out
    fake = _fake_ffmpeg(tmp_path / "ffmpeg", tmp_path / "argv.json")
    monkeypatch.setattr(dec.shutil, "which", lambda name: str(fake) if name == "ffmpeg" else None)
    assert main(args) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert main([*args, "--retry-failed"]) == 0
    out = capsys.readouterr().out
    assert (
        "3 tracks in the library, 3 in the embedding table, 0 skipped" in out
        and "1 recorded failures were analysed again" in out
    )


def test_build_records_its_library_for_the_ui_and_the_sensor(tmp_path, capsys, monkeypatch):
    from music_pipeline.settings import SOURCE_RECORD, Settings, read_library_record

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MUSIC_LIBRARY", raising=False)
    lib, data = _library(tmp_path / "lib", 2), tmp_path / "data"
    assert main(["build", "--library", str(lib), "--data", str(data), "--workers", "1", "--no-models"]) == 0
    out = capsys.readouterr().out
    record = read_library_record(data)
    assert record["path"] == str(lib) and record["chosen_by"] == "--library" and record["recorded_by"] == "build"
    settings = Settings.resolve(data)
    assert settings.library_dir == lib and settings.library_source == SOURCE_RECORD
    assert "music-pipeline similar" in out and f"--data {data}" in out  # next steps name real tracks
    # a second build needs no --library, and keeps the record as it was
    assert main(["build", "--data", str(data), "--no-models"]) == 0
    assert read_library_record(data) == record
    monkeypatch.setenv("MUSIC_LIBRARY", str(tmp_path / "elsewhere"))
    assert Settings.resolve(data).library_dir == tmp_path / "elsewhere"  # the environment still wins


def _library(root, n):
    for i in range(n):
        write(root / f"t{i:02d}.wav", tone(200 + 37 * i, 6) + 0.3 * clicks(80 + 7 * i, 6) + noise(6, amp=0.02, seed=i))
    return root


def _tables(data):
    emb = pd.read_parquet(data / "tables" / "embeddings.parquet").sort_values("key").reset_index(drop=True)
    return emb.drop(columns=["relpath"])


@pytest.mark.slow
def test_sigkill_mid_build_then_rebuild_matches_clean_build(tmp_path):
    """Issue 7: kill -9 in the middle of a backfill; the rerun completes, reuses finished tracks,
    and gives the same table as an uninterrupted build; no partial file is ever visible."""
    lib = _library(tmp_path / "lib", 8)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home_a")}
    cmd = [
        sys.executable,
        "-m",
        "music_pipeline.cli",
        "build",
        "--library",
        str(lib),
        "--data",
        str(tmp_path / "a"),
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    features = tmp_path / "a" / "features"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(features.rglob("*.npz"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in features.rglob("*.npz")}
    assert 3 <= len(done_before) < 8, "the kill should land mid-build"
    # every file that is visible is complete
    import numpy as np

    for p in features.rglob("*.npz"):
        with np.load(p, allow_pickle=False) as z:
            assert z["embedding"].shape == (641,)

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "8 in the embedding table" in rerun.stdout
    after = {p.name: p.stat().st_mtime_ns for p in features.rglob("*.npz")}
    assert {k: after[k] for k in done_before} == done_before  # finished tracks reused

    clean_env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home_b")}
    clean = list(cmd)
    clean[cmd.index("--data") + 1] = str(tmp_path / "b")
    subprocess.run(clean, env=clean_env, check=True, capture_output=True, timeout=600)
    pd.testing.assert_frame_equal(_tables(tmp_path / "a"), _tables(tmp_path / "b"))

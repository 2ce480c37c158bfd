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
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    lib = tmp_path / "lib"
    write(lib / "ok.wav", tone(330, 4) + noise(4, amp=0.01))
    (lib / "bad.ogg").write_bytes(b"OggS" + b"\0" * 100)
    code = main(["build", "--library", str(lib), "--data", str(tmp_path / "data"), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "2 tracks in the library, 1 in the embedding table, 1 skipped" in out
    assert "skipped bad.ogg: not a readable audio file" in out


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
    cmd = [sys.executable, "-m", "music_pipeline.cli", "build", "--library", str(lib), "--data", str(tmp_path / "a"), "--workers", "1"]
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

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "8 in the embedding table" in rerun.stdout
    after = {p.name: p.stat().st_mtime_ns for p in features.rglob("*.npz")}
    assert {k: after[k] for k in done_before} == done_before  # finished tracks reused

    clean_env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home_b")}
    clean = list(cmd)
    clean[cmd.index("--data") + 1] = str(tmp_path / "b")
    subprocess.run(clean, env=clean_env, check=True, capture_output=True, timeout=600)
    pd.testing.assert_frame_equal(_tables(tmp_path / "a"), _tables(tmp_path / "b"))

"""How many workers a batch of tracks gets: only as many as its audio repays."""

import pytest

from music_pipeline import workers
from music_pipeline.synth import tone
from music_pipeline.workers import estimated_audio_seconds, pool_size

from .audio_corpus import write


def _paths(paths):
    return [str(p) for p in paths]


def test_header_durations_are_exact_and_compressed_ones_come_from_the_size(tmp_path):
    wav = write(tmp_path / "a.wav", tone(440, 3.0))
    assert estimated_audio_seconds(str(wav)) == pytest.approx(3.0, abs=1e-3)
    ogg = tmp_path / "b.ogg"
    ogg.write_bytes(b"\0" * 40_000)
    assert estimated_audio_seconds(str(ogg)) == pytest.approx(40_000 / workers._LOSSY_BYTES_PER_SECOND)
    assert estimated_audio_seconds(str(tmp_path / "missing.wav")) == 0.0


def test_a_few_short_files_get_one_worker_and_a_long_batch_gets_all(tmp_path, monkeypatch):
    paths = [write(tmp_path / f"t{i}.wav", tone(220 + 10 * i, 3.0)) for i in range(4)]
    assert pool_size(_paths(paths), workers=8) == 1  # 12 s of audio does not repay a second start-up
    monkeypatch.setattr(workers, "estimated_audio_seconds", lambda path: 600.0)
    assert pool_size(_paths(paths), workers=8) == 4  # never more workers than tracks
    assert pool_size(_paths(paths), workers=2) == 2
    monkeypatch.setattr(workers, "estimated_audio_seconds", lambda path: workers.AUDIO_SECONDS_PER_WORKER / 2)
    assert pool_size(_paths(paths), workers=8) == 2


def test_numba_cache_lives_in_a_folder_the_program_owns(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env["HOME"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", "import music_pipeline, numba; print(numba.config.CACHE_DIR)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(tmp_path / ".cache" / "music-pipeline" / "numba")
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")  # the user's own choice wins
    out = subprocess.run(
        [sys.executable, "-c", "import music_pipeline, numba; print(numba.config.CACHE_DIR)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(tmp_path / "mine")

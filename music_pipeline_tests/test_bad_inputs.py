"""Issue 7: a corpus of broken and awkward files; every one gets a result or a named reason."""

import numpy as np
import pandas as pd
import pytest

from music_pipeline.audio.decode import AudioError, decode
from music_pipeline.audio.library import scan_library
from music_pipeline.features.extract import ExtractJob, FeatureStore, extract_many
from music_pipeline.features.tables import build_tables

from .audio_corpus import write_bad_corpus


@pytest.fixture(scope="module")
def bad_library(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    expect = write_bad_corpus(root / "lib")
    data = root / "data"
    scan = scan_library(root / "lib")
    jobs = [ExtractJob(t.key, t.path, t.relpath, t.content_hash, str(data), scan_error=t.scan_error) for t in scan.tracks]
    outcomes = extract_many(jobs, workers=2)
    return scan, outcomes, build_tables(scan, FeatureStore(data)), expect


def test_every_file_accounted_for(bad_library):
    scan, outcomes, tables, expect = bad_library
    assert sorted(t.relpath for t in scan.tracks) == sorted(expect)
    present = set(tables.embeddings["relpath"]) | set(tables.skipped["relpath"])
    assert present == set(expect)
    assert not set(tables.embeddings["relpath"]) & set(tables.skipped["relpath"])


def test_good_files_present_and_finite(bad_library):
    _, _, tables, expect = bad_library
    good = {p for p, kw in expect.items() if kw is None}
    assert good <= set(tables.embeddings["relpath"])
    values = tables.embeddings.drop(columns=["key", "relpath", "label", "group", "content_hash"]).to_numpy(float)
    assert np.isfinite(values).all()
    assert np.isfinite(tables.descriptors.select_dtypes("number").to_numpy()).all()


def test_bad_files_named_with_reason(bad_library):
    _, outcomes, tables, expect = bad_library
    skipped = dict(zip(tables.skipped["relpath"], tables.skipped["reason"]))
    for relpath, keyword in expect.items():
        if keyword is None or relpath.startswith("truncated"):
            continue
        assert relpath in skipped, relpath
        assert keyword.lower() in skipped[relpath].lower(), (relpath, skipped[relpath])
    for o in outcomes:
        if not o.ok:
            assert o.relpath.split("/")[-1] in o.reason  # the message names the file
            assert "Traceback" not in o.reason


def test_truncated_files_fail_cleanly_or_give_a_valid_result(bad_library):
    _, _, tables, _ = bad_library
    for ext in ("ogg", "flac", "mp3"):
        rel = f"truncated.{ext}"
        in_table = rel in set(tables.embeddings["relpath"])
        reason = tables.skipped.set_index("relpath")["reason"].get(rel)
        assert in_table or reason, rel
        if reason:
            assert any(w in reason for w in ("too short", "truncated", "not a readable")), reason


def test_duplicate_content_reported(bad_library):
    _, _, tables, _ = bad_library
    reason = tables.skipped.set_index("relpath").loc["copy_b.wav", "reason"]
    assert "duplicate" in reason and "copy_a.wav" in reason


def test_symlink_loop_reported_not_followed(bad_library):
    scan, _, _, _ = bad_library
    assert any("loop" in reason or "already scanned" in reason for _, reason in scan.problems)


def test_shell_metacharacters_are_just_names(bad_library, tmp_path):
    scan, _, tables, _ = bad_library
    assert "$(touch pwned); `rm -rf x` & 'q'.flac" in set(tables.embeddings["relpath"])
    assert not (tmp_path / "pwned").exists()


def test_known_broken_file_is_not_decoded_again(bad_library, monkeypatch):
    scan, _, _, _ = bad_library
    import music_pipeline.features.extract as extract

    monkeypatch.setattr(extract, "decode", lambda *a, **k: pytest.fail("re-decoded a known-broken file"))
    t = next(t for t in scan.tracks if t.relpath == "silence.wav")
    data_dir = scan.root.parent / "data"
    (o,) = extract.extract_many([extract.ExtractJob(t.key, t.path, t.relpath, t.content_hash, str(data_dir))])
    assert o.status == "failed" and "silent" in o.reason


def test_decode_errors_name_file_and_reason(tmp_path):
    p = tmp_path / "nothing here.wav"
    with pytest.raises(AudioError) as err:
        decode(p)
    assert str(p) in str(err.value) and "does not exist" in str(err.value)


def test_missing_ffmpeg_is_explained(tmp_path, monkeypatch):
    import music_pipeline.audio.decode as dec

    p = tmp_path / "song.m4a"
    p.write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    monkeypatch.setattr(dec.shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="ffmpeg"):
        decode(p)


def test_skipped_table_schema(bad_library):
    _, _, tables, _ = bad_library
    assert list(tables.skipped.columns) == ["key", "relpath", "content_hash", "reason"]
    assert isinstance(tables.skipped, pd.DataFrame)


def test_a_crashing_worker_fails_only_its_own_track(tmp_path, monkeypatch):
    """A decoder that segfaults kills its worker process and breaks the pool; the other tracks of
    the batch are re-run in isolation and only the culprit is reported (and remembered)."""
    from music_pipeline.features.extract import CRASH_ON_ENV
    from music_pipeline.synth import noise, tone

    from .audio_corpus import write

    for i in range(4):
        write(tmp_path / "lib" / f"good_{i}.wav", tone(200 + 50 * i, 4) + noise(4, amp=0.01, seed=i))
    write(tmp_path / "lib" / "crash_me.wav", tone(440, 4))
    monkeypatch.setenv(CRASH_ON_ENV, "crash_me")  # inherited by the spawned workers only
    scan = scan_library(tmp_path / "lib")
    jobs = [ExtractJob(t.key, t.path, t.relpath, t.content_hash, str(tmp_path / "data")) for t in scan.tracks]
    outcomes = {o.relpath: o for o in extract_many(jobs, workers=2)}
    assert outcomes["crash_me.wav"].status == "failed" and "crashed" in outcomes["crash_me.wav"].reason
    assert all(outcomes[f"good_{i}.wav"].ok for i in range(4))
    store = FeatureStore(tmp_path / "data")
    crash = next(t for t in scan.tracks if t.relpath == "crash_me.wav")
    assert "crashed" in store.failure(crash.content_hash)  # not retried until the file changes


def test_a_script_whose_workers_cannot_start_blames_no_file(tmp_path):
    """Spawned workers re-run an unguarded script and die before any work: that is reported as
    the program's problem, and no track gets a failure record it could never shake off."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from music_pipeline.synth import tone

    from .audio_corpus import write

    for i in range(3):
        write(tmp_path / "lib" / f"t{i}.wav", tone(300 + 40 * i, 3))
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from music_pipeline.audio.library import scan_library\n"
        "from music_pipeline.features.extract import ExtractJob, extract_many\n"
        f"scan = scan_library({str(tmp_path / 'lib')!r})\n"
        f"jobs = [ExtractJob(t.key, t.path, t.relpath, t.content_hash, {str(tmp_path / 'data')!r}) for t in scan.tracks]\n"
        "extract_many(jobs, workers=2)\n"  # no `if __name__ == "__main__":` guard
    )
    repo = str(Path(__file__).resolve().parents[1])  # this checkout's package, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode != 0
    assert "WorkersCannotStart" in proc.stderr and '__name__ == "__main__"' in proc.stderr
    assert not list((tmp_path / "data").rglob("failed/*.json"))

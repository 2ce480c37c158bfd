"""Issue 7: a corpus of broken and awkward files; every one gets a result or a named reason."""

from pathlib import Path

import numpy as np
import pytest

from music_pipeline.audio.decode import AudioError, decode
from music_pipeline.audio.scan import scan_library
from music_pipeline.features.extract import ExtractJob, FeatureStore, extract_many
from music_pipeline.features.tables import build_tables

from .audio_corpus import write_bad_corpus


@pytest.fixture(scope="module")
def bad_library(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    expect = write_bad_corpus(root / "lib")
    data = root / "data"
    scan = scan_library(root / "lib")
    jobs = [
        ExtractJob(t.key, t.path, t.relpath, t.content_hash, str(data), scan_error=t.scan_error) for t in scan.tracks
    ]
    outcomes = extract_many(jobs, workers=2)
    return scan, outcomes, build_tables(scan, FeatureStore(data)), expect


def test_every_file_accounted_for(bad_library):
    scan, _outcomes, tables, expect = bad_library
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
    skipped = dict(zip(tables.skipped["relpath"], tables.skipped["reason"], strict=True))
    for relpath, keyword in expect.items():
        if keyword is None:
            continue
        assert relpath in skipped, relpath
        assert keyword.lower() in skipped[relpath].lower(), (relpath, skipped[relpath])
    for o in outcomes:
        if not o.ok:
            assert o.relpath.split("/")[-1] in o.reason  # the message names the file
            assert "Traceback" not in o.reason


def test_truncated_files_get_their_exact_outcome(bad_library):
    """Each cut file has one known outcome: the Ogg/FLAC ones are refused as truncated or
    unreadable (keywords in the corpus), the mp3/wav cut half way are analysed on the audio that
    is there: about 4 of the 8 s, not the 8 the header promises and not garbage."""
    _, outcomes, tables, expect = bad_library
    by_rel = {o.relpath: o for o in outcomes}
    for rel in ("truncated.ogg", "truncated.flac", "truncated.mp3", "half.ogg", "half.flac"):
        assert by_rel[rel].status == "failed" and rel not in set(tables.embeddings["relpath"]), rel
        assert expect[rel] in by_rel[rel].reason, (rel, by_rel[rel].reason)
    durations = dict(zip(tables.embeddings["relpath"], tables.embeddings["duration_s"], strict=True))
    assert 3.5 <= durations["half.mp3"] <= 4.1 and durations["half.wav"] == pytest.approx(4.0, abs=0.01)


def test_duplicate_content_reported(bad_library):
    _, _, tables, _ = bad_library
    reason = tables.skipped.set_index("relpath").loc["copy_b.wav", "reason"]
    assert "duplicate" in reason and "copy_a.wav" in reason


def test_symlink_loop_reported_not_followed(bad_library):
    scan, _, _, _ = bad_library
    assert scan.problems == [("loop/again", "directory already scanned (symlink loop or alias)")]
    assert not any(t.relpath.startswith("loop/again/") for t in scan.tracks)


SHELL_NAME = "$(touch pwned1); `touch pwned2` & touch pwned3 'q'"


def _fake_ffmpeg(path, argv_log):
    """An `ffmpeg` stand-in that records its argument vector and emits 4 s of a tone (f32le)."""
    import sys

    path.write_text(
        f"#!{sys.executable}\n"
        "import json, sys, numpy as np\n"
        f"open({str(argv_log)!r}, 'w').write(json.dumps(sys.argv))\n"
        "t = np.arange(22050 * 4) / 22050\n"
        "sys.stdout.buffer.write((0.3 * np.sin(2 * np.pi * 330 * t)).astype('<f4').tobytes())\n"
    )
    path.chmod(0o755)
    return path


def test_shell_metacharacters_are_just_names(tmp_path, monkeypatch):
    """A file name that is a shell injection is decoded as a name on both decoding paths
    (libsndfile in process, ffmpeg as a subprocess), from a working directory where the injection
    would leave its files — and a shell given the same name does leave them there."""
    import subprocess

    import music_pipeline.audio.decode as dec
    from music_pipeline.synth import tone

    from .audio_corpus import write

    control = tmp_path / "control"
    control.mkdir()
    subprocess.run(f"echo {SHELL_NAME}", shell=True, cwd=control, capture_output=True, check=False)
    assert (control / "pwned1").exists() and (control / "pwned3").exists()  # the payload is live

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    flac = write(tmp_path / "lib" / f"{SHELL_NAME}.flac", tone(330, 4))
    m4a = tmp_path / "lib" / f"{SHELL_NAME}.m4a"
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    argv_log = tmp_path / "argv.json"
    fake = _fake_ffmpeg(tmp_path / "ffmpeg", argv_log)
    monkeypatch.setattr(dec.shutil, "which", lambda name: str(fake) if name == "ffmpeg" else None)
    scan = scan_library(tmp_path / "lib")
    jobs = [ExtractJob(t.key, t.path, t.relpath, t.content_hash, str(tmp_path / "data")) for t in scan.tracks]
    outcomes = {o.relpath: o for o in extract_many(jobs, workers=1)}
    assert outcomes[flac.name].status == outcomes[m4a.name].status == "extracted"
    import json

    assert str(m4a) in json.loads(argv_log.read_text())  # one argument, verbatim
    assert not [p for p in tmp_path.rglob("pwned*") if control not in p.parents]


def test_known_broken_file_is_not_decoded_again(bad_library, monkeypatch):
    scan, _, _, _ = bad_library
    from music_pipeline.features import extract

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


def test_skipped_table_rows_name_the_scanned_track(bad_library):
    """One row per skipped file: the scan's own key and content hash for its path, and a reason."""
    scan, _, tables, _ = bad_library
    skipped = tables.skipped
    assert list(skipped.columns) == ["key", "relpath", "content_hash", "reason"] and len(skipped) > 0
    assert skipped["relpath"].is_unique
    by_rel = {t.relpath: t for t in scan.tracks}
    for row in skipped.itertuples():
        track = by_rel[row.relpath]
        assert row.key == track.key and (row.content_hash or None) == track.content_hash, row
        assert isinstance(row.reason, str) and row.reason.strip(), row


def test_a_crashing_worker_fails_only_its_own_track(tmp_path, monkeypatch):
    """A decoder that segfaults kills its worker process and breaks the pool; the other tracks of
    the batch are re-run in isolation and only the culprit is reported (and remembered)."""
    from music_pipeline.features import extract
    from music_pipeline.synth import noise, tone

    from .audio_corpus import write
    from .crash_hook import crashing_run_job

    for i in range(4):
        write(tmp_path / "lib" / f"good_{i}.wav", tone(200 + 50 * i, 4) + noise(4, amp=0.01, seed=i))
    write(tmp_path / "lib" / "crash_me.wav", tone(440, 4))
    monkeypatch.setattr(extract, "run_job", crashing_run_job)  # spawned workers import it by name
    scan = scan_library(tmp_path / "lib")
    jobs = [ExtractJob(t.key, t.path, t.relpath, t.content_hash, str(tmp_path / "data")) for t in scan.tracks]
    outcomes = {o.relpath: o for o in extract_many(jobs, workers=2)}
    assert outcomes["crash_me.wav"].status == "failed" and "crashed" in outcomes["crash_me.wav"].reason
    assert all(outcomes[f"good_{i}.wav"].status == "extracted" for i in range(4))
    store = FeatureStore(tmp_path / "data")
    crash = next(t for t in scan.tracks if t.relpath == "crash_me.wav")
    assert "crashed" in store.permanent_failure(crash.content_hash)  # not retried until the file changes
    assert store.failure_record(crash.content_hash)["permanent"] is True
    # without the fault the same file is fine: --retry-failed finds that out
    monkeypatch.undo()
    (again,) = extract_many([j for j in jobs if j.relpath == "crash_me.wav"], workers=1, retry_failed=True)
    assert again.status == "extracted" and store.failure_record(crash.content_hash) is None


def test_only_content_failures_are_permanent(tmp_path, monkeypatch):
    """A bug in the analysis (here: an exception on one file) is not the file's fault: the track
    reports status 'error', its record says permanent: false, and the next run analyses it; a
    file that is not audio is remembered as broken and not decoded again unless retry_failed."""
    from music_pipeline.features import extract
    from music_pipeline.synth import tone

    from .audio_corpus import write

    write(tmp_path / "lib" / "fine.wav", tone(330, 4))
    write(tmp_path / "lib" / "bug.wav", tone(440, 4))
    (tmp_path / "lib" / "text.wav").write_text("not audio at all")
    scan = scan_library(tmp_path / "lib")
    jobs = [ExtractJob(t.key, t.path, t.relpath, t.content_hash, str(tmp_path / "data")) for t in scan.tracks]
    hashes = {t.relpath: t.content_hash for t in scan.tracks}
    real = extract.features_from_signal

    def buggy(y, sr=22050, *args):
        if abs(np.argmax(np.abs(np.fft.rfft(y[:sr]))) - 440) < 3:  # only the 440 Hz file
            raise ZeroDivisionError("a bug in the analysis")
        return real(y, sr, *args)

    monkeypatch.setattr(extract, "features_from_signal", buggy)
    first = {o.relpath: o for o in extract_many(jobs, workers=1)}
    assert first["fine.wav"].status == "extracted"
    assert (
        first["bug.wav"].status == "error"
        and "ZeroDivisionError" in first["bug.wav"].reason
        and not first["bug.wav"].permanent
    )
    assert first["text.wav"].status == "failed" and first["text.wav"].permanent
    store = FeatureStore(tmp_path / "data")
    assert store.failure_record(hashes["bug.wav"])["permanent"] is False
    assert store.failure_record(hashes["text.wav"])["permanent"] is True
    assert store.analysed_hashes() == {hashes["fine.wav"], hashes["text.wav"]}  # the bug victim is not "done"
    assert "tried again" in store.failure(hashes["bug.wav"])

    monkeypatch.setattr(extract, "features_from_signal", real)  # the bug is fixed
    decoded = []
    real_decode = extract.decode
    monkeypatch.setattr(extract, "decode", lambda p, *a, **k: decoded.append(Path(p).name) or real_decode(p, *a, **k))
    second = {o.relpath: o for o in extract_many(jobs, workers=1)}
    assert second["bug.wav"].status == "extracted" and store.failure_record(hashes["bug.wav"]) is None
    assert decoded == ["bug.wav"]  # the broken text file was not decoded again
    third = {o.relpath: o for o in extract_many(jobs, workers=1, retry_failed=True)}
    assert decoded == ["bug.wav", "text.wav"] and third["text.wav"].status == "failed"


def test_a_full_disk_is_not_the_files_fault(tmp_path, monkeypatch):
    import errno

    from music_pipeline.features import extract
    from music_pipeline.synth import tone

    from .audio_corpus import write

    write(tmp_path / "lib" / "a.wav", tone(330, 4))
    (t,) = scan_library(tmp_path / "lib").tracks

    def no_space(self, content_hash, feats):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(extract.FeatureStore, "save", no_space)
    (o,) = extract_many([ExtractJob(t.key, t.path, t.relpath, t.content_hash, str(tmp_path / "data"))], workers=1)
    assert o.status == "error" and "No space left" in o.reason and "a.wav" in o.reason
    assert not FeatureStore(tmp_path / "data").is_analysed(t.content_hash)


def test_mp3_decoder_notes_stay_off_the_terminal(tmp_path, capfd):
    """libmpg123 prints "Note: Illegal Audio-MPEG-Header" lines to fd 2 for a text file named
    .mp3; only the one clean error line may reach the user."""
    from music_pipeline.cli import main

    fake = tmp_path / "notes.mp3"
    fake.write_text("these are my notes, not audio\n" * 20)
    assert main(["embed", str(fake)]) == 1
    err = capfd.readouterr().err
    assert err.strip().splitlines() == [
        f"error: {fake}: not a readable audio file (unrecognised or corrupt audio data)"
    ]


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
        "from music_pipeline.audio.scan import scan_library\n"
        "from music_pipeline.features.extract import ExtractJob, extract_many\n"
        f"scan = scan_library({str(tmp_path / 'lib')!r})\n"
        f"jobs = [ExtractJob(t.key, t.path, t.relpath, t.content_hash, {str(tmp_path / 'data')!r}) for t in scan.tracks]\n"
        "extract_many(jobs, workers=2)\n"  # no `if __name__ == "__main__":` guard
    )
    repo = str(Path(__file__).resolve().parents[1])  # this checkout's package, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env, check=False
    )
    assert proc.returncode != 0
    assert "WorkersCannotStart" in proc.stderr and '__name__ == "__main__"' in proc.stderr
    assert not list((tmp_path / "data").rglob("failed/*.json"))


def _real_ffmpeg_file(tmp_path, suffix: str, seconds: float = 6.0):
    """A file only ffmpeg reads (m4a/AAC, WavPack), encoded by the real ffmpeg from a 440 Hz tone."""
    import subprocess

    from music_pipeline.synth import tone

    from .audio_corpus import write
    from .system import require_debian

    ffmpeg = require_debian(["ffmpeg"], "ffmpeg")
    wav = write(tmp_path / "source.wav", tone(440, seconds))
    out = tmp_path / f"clip{suffix}"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(wav), str(out)], check=True)
    return out


@pytest.mark.parametrize("suffix", [".m4a", ".wv"])
def test_real_ffmpeg_decodes_what_soundfile_cannot(tmp_path, suffix):
    """The real ffmpeg path (no stand-in): the decoded tone has the file's length and its pitch."""
    import soundfile as sf

    path = _real_ffmpeg_file(tmp_path, suffix)
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(path))  # not something libsndfile reads: the ffmpeg path is the one tested
    audio = decode(path)
    assert audio.sr == 22_050 and audio.duration_s == pytest.approx(6.0, abs=0.1)
    spectrum = np.abs(np.fft.rfft(audio.y[22_050:44_100]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 s of signal: bins are 1 Hz apart


def test_real_ffmpeg_honours_max_duration(tmp_path):
    audio = decode(_real_ffmpeg_file(tmp_path, ".m4a"), max_duration_s=4.0)
    assert audio.duration_s == pytest.approx(4.0, abs=0.05)


def test_ffmpeg_past_its_timeout_is_stopped_and_retried_later(tmp_path):
    """A decoder that runs past the timeout is killed, and the failure is not the file's fault."""
    import music_pipeline.audio.decode as dec

    path = _real_ffmpeg_file(tmp_path, ".m4a", seconds=30.0)
    with pytest.raises(AudioError) as err:
        dec._decode_ffmpeg(path, 22_050, None, timeout_s=0.0)
    assert "took longer than" in str(err.value) and err.value.permanent is False


def test_ffmpeg_failure_on_garbage_is_permanent_and_names_the_reason(tmp_path):
    from .system import require_debian

    require_debian(["ffmpeg"], "ffmpeg")
    path = tmp_path / "garbage.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(range(256)) * 64)
    with pytest.raises(AudioError) as err:
        decode(path)
    assert "ffmpeg could not decode it" in str(err.value) and err.value.permanent is True

"""One read of each file per build: every per-track pass a run wants runs on one decode."""

from __future__ import annotations

import shutil

import pytest

from music_pipeline.analysis import PASSES, TrackJob, analyse_many
from music_pipeline.audio import decode as decode_module
from music_pipeline.audio.scan import scan_library
from music_pipeline.synth import styled_track

from .audio_corpus import write


@pytest.fixture
def counted_decodes(monkeypatch):
    """Paths decoded, in order (the in-process path: workers=1)."""
    real, seen = decode_module.decode, []
    monkeypatch.setattr(decode_module, "decode", lambda path, *a, **k: seen.append(str(path)) or real(path, *a, **k))
    return seen


def _jobs(lib, data, passes=PASSES):
    return [TrackJob(t.key, t.path, t.relpath, t.content_hash, str(data), passes) for t in scan_library(lib).tracks]


def test_each_file_is_read_once_for_every_pass_and_not_again(tmp_path, counted_decodes):
    from music_pipeline.features.extract import FeatureStore
    from music_pipeline.learned.store import LearnedStore
    from music_pipeline.notes.store import NotesStore

    lib, data = tmp_path / "lib", tmp_path / "data"
    write(lib / "a.wav", styled_track("arpeggio", 8.0, seed=1))
    write(lib / "b.flac", styled_track("pulse", 8.0, seed=2))
    jobs = _jobs(lib, data)
    results = analyse_many(jobs, workers=1)
    assert sorted(counted_decodes) == sorted(j.path for j in jobs)  # one decode per file for three passes
    assert [sorted(r) for r in results] == [sorted(PASSES)] * 2
    assert all(r[p].ok and r[p].status != "cached" for r in results for p in PASSES)
    hashes = {j.content_hash for j in jobs}
    assert hashes <= FeatureStore(data).feature_hashes()
    assert hashes <= NotesStore(data).hashes() and hashes <= LearnedStore(data).hashes()

    counted_decodes.clear()
    again = analyse_many(jobs, workers=1)
    assert counted_decodes == [] and all(r[p].status == "cached" for r in again for p in PASSES)

    # a new version of one pass (its store empty): only that pass runs, on one decode per file
    shutil.rmtree(LearnedStore(data).folder)
    third = analyse_many(jobs, workers=1)
    assert sorted(counted_decodes) == sorted(j.path for j in jobs)
    assert all(r["learned"].status == "computed" for r in third)
    assert all(r[p].status == "cached" for r in third for p in ("features", "notes"))


def test_a_file_analysed_in_a_build_and_alone_gives_the_same_learned_features(tmp_path):
    """The learned pass resamples the shared analysis-rate decode; `compute_learned` on the file
    alone does the same, so `classify` sees what the build stored."""
    import numpy as np

    from music_pipeline.learned.store import LearnedStore, compute_learned

    lib, data = tmp_path / "lib", tmp_path / "data"
    write(lib / "a.ogg", styled_track("drone", 8.0, seed=3))
    (job,) = _jobs(lib, data, ("learned",))
    analyse_many([job], workers=1)
    stored = LearnedStore(data).load(job.content_hash)
    alone = compute_learned(job.path)
    np.testing.assert_array_equal(stored.embedding(), alone.embedding())


def test_a_question_about_an_outside_file_reads_it_once(tmp_path, counted_decodes):
    """`classify FILE` (and `similar FILE`) take the 641 dims and the learned embedding from one
    decode, equal to what the build stores."""
    import numpy as np

    from music_pipeline.features.extract import extract_features
    from music_pipeline.genre.data import HANDCRAFTED, LEARNED
    from music_pipeline.genre.serving import GenreService

    path = tmp_path / "outside.ogg"
    write(path, styled_track("arpeggio", 8.0, seed=4))
    service = GenreService(model=None, version_dir=None, tag_profiles={}, card={})
    blocks, note = service.inputs_of_file(path)
    assert counted_decodes == [str(path)] and note is None
    np.testing.assert_array_equal(blocks[HANDCRAFTED][0], extract_features(path).embedding)
    assert blocks[LEARNED].shape == (1, 400) and np.isfinite(blocks[LEARNED]).all()


def test_a_file_that_cannot_be_decoded_fails_every_pass_from_one_attempt(tmp_path, counted_decodes):
    lib, data = tmp_path / "lib", tmp_path / "data"
    lib.mkdir()
    (lib / "text.wav").write_text("not audio at all")
    (result,) = analyse_many(_jobs(lib, data), workers=1)
    assert len(counted_decodes) == 1
    assert {p: result[p].status for p in PASSES} == dict.fromkeys(PASSES, "failed")
    assert len({result[p].reason for p in PASSES}) == 1  # the same reason in every pass


def test_a_file_that_crashes_its_worker_is_blamed_in_each_pass_that_lacks_it(tmp_path, monkeypatch):
    """The worker dies on one file: the others finish, the file is retried alone, then recorded
    as broken in every pass that has no result for it (none is half-written)."""
    from music_pipeline import analysis
    from music_pipeline.content_store import CRASH_REASON

    from .crash_hook import crashing_analyse_track

    lib, data = tmp_path / "lib", tmp_path / "data"
    for i in range(3):
        write(lib / f"good_{i}.wav", styled_track("pulse", 6.0, seed=10 + i))
    write(lib / "crash_me.wav", styled_track("drone", 6.0, seed=20))
    monkeypatch.setattr(analysis, "analyse_track", crashing_analyse_track)  # the workers import it by name
    jobs = _jobs(lib, data)
    results = {j.relpath: r for j, r in zip(jobs, analyse_many(jobs, workers=2), strict=True)}
    crash = results["crash_me.wav"]
    assert {p: crash[p].status for p in PASSES} == dict.fromkeys(PASSES, "failed")
    assert all(CRASH_REASON in crash[p].reason for p in PASSES)
    assert all(results[f"good_{i}.wav"][p].ok for i in range(3) for p in PASSES)

"""One failure policy for every per-track pass (features, notes, learned embedding, fingerprints): the content at
fault is remembered; anything else (a vanished file, a full disk, a bug, a crash) is not, and the
next run analyses the track; a damaged stored result is computed again."""

from __future__ import annotations

import errno
import shutil
import time
from pathlib import Path

import pytest

from music_pipeline.audio.scan import scan_library
from music_pipeline.content_store import CRASH_REASON, Failure, attempt, failure_of
from music_pipeline.synth import tone

from .audio_corpus import write


def test_the_policy_sorts_failures_by_whose_fault_they_are():
    from music_pipeline.audio.decode import AudioError

    assert failure_of(AudioError("x.wav", "silent")) == Failure("silent", True)
    assert failure_of(AudioError("x.wav", "file does not exist", permanent=False)) == Failure(
        "file does not exist", False
    )
    assert failure_of(MemoryError()) == Failure("out of memory", False)
    assert failure_of(OSError(errno.EIO, "Input/output error")).permanent is False
    bug = failure_of(ZeroDivisionError("oops"))
    assert bug.permanent is False and "ZeroDivisionError" in bug.reason
    full = attempt(lambda: 1, lambda r: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    assert isinstance(full, Failure) and not full.permanent and "No space left" in full.reason
    assert attempt(lambda: 2, lambda r: None) == 2
    assert "alone" in CRASH_REASON


class _Pass:
    """One per-track pass driven the same way: run jobs, ask the store what it holds."""

    def __init__(self, name: str, data: Path):
        self.name, self.data = name, data

    def run(self, tracks, retry_failed: bool = False) -> dict:
        data = str(self.data)
        if self.name == "features":
            from music_pipeline.features.extract import ExtractJob, extract_many

            jobs = [ExtractJob(t.key, t.path, t.relpath, t.content_hash, data) for t in tracks]
            outcomes = extract_many(jobs, workers=1, retry_failed=retry_failed)
        elif self.name == "notes":
            from music_pipeline.notes.store import NotesJob, transcribe_many

            jobs = [NotesJob(t.key, t.path, t.relpath, t.content_hash, data) for t in tracks]
            outcomes = transcribe_many(jobs, workers=1, retry_failed=retry_failed)
        elif self.name == "fingerprints":
            from music_pipeline.identity.store import FingerprintJob, run_fingerprint_job

            jobs = [FingerprintJob(t.key, t.path, t.relpath, t.content_hash, data) for t in tracks]
            outcomes = [run_fingerprint_job(j, retry_failed) for j in jobs]
        else:
            from music_pipeline.learned.store import LearnedJob, LearnedStore, embed_many

            jobs = [LearnedJob(t.key, t.path, t.relpath, t.content_hash) for t in tracks]
            outcomes = embed_many(jobs, LearnedStore(data), workers=1)
        return {o.relpath: o for o in outcomes}

    @property
    def store(self):
        if self.name == "features":
            from music_pipeline.features.extract import FeatureStore

            return FeatureStore(self.data)
        if self.name == "notes":
            from music_pipeline.notes.store import NotesStore

            return NotesStore(self.data)
        if self.name == "fingerprints":
            from music_pipeline.identity.store import FingerprintStore

            return FingerprintStore(self.data)
        from music_pipeline.learned.store import LearnedStore

        return LearnedStore(self.data)

    def remembered(self, content_hash: str) -> bool:
        """A permanent failure record exists for this content."""
        store = self.store
        return content_hash in store.failed_hashes()

    def stored(self, content_hash: str) -> bool:
        store = self.store
        return (store.feature_hashes() if self.name == "features" else store.hashes()).__contains__(content_hash)


PASSES = ["features", "notes", "learned", "fingerprints"]


@pytest.fixture
def library(tmp_path):
    lib = tmp_path / "lib"
    write(lib / "a.wav", tone(330, 5))
    write(lib / "b.wav", tone(523, 5))
    (lib / "text.wav").write_text("not audio at all")
    return lib


@pytest.mark.parametrize("name", PASSES)
def test_a_vanished_library_loses_nothing_and_broken_content_is_remembered(name, library, tmp_path):
    """The folder disappears after the scan (an unmounted disk): every track fails for a reason
    that is not its own, nothing is remembered; with the folder back the next run analyses every
    track. A file that is not audio is remembered as broken either way."""
    p = _Pass(name, tmp_path / "data")
    tracks = scan_library(library).tracks
    by_name = {t.relpath: t for t in tracks}
    moved = tmp_path / "elsewhere"
    shutil.move(library, moved)
    first = p.run(tracks)
    assert all(first[n].status == "error" and not first[n].ok for n in ("a.wav", "b.wav")), first
    assert not any(p.remembered(t.content_hash) or p.stored(t.content_hash) for t in tracks)
    shutil.move(moved, library)
    second = p.run(tracks)
    assert all(second[n].ok and p.stored(by_name[n].content_hash) for n in ("a.wav", "b.wav")), second
    assert second["text.wav"].status == "failed" and p.remembered(by_name["text.wav"].content_hash)


@pytest.mark.parametrize("name", PASSES)
def test_a_result_that_cannot_be_stored_is_not_the_files_fault(name, library, tmp_path, monkeypatch):
    p = _Pass(name, tmp_path / "data")
    store_class = type(p.store)

    def full_disk(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_class, "save", full_disk)
    tracks = [t for t in scan_library(library).tracks if t.relpath == "a.wav"]
    (outcome,) = p.run(tracks).values()
    assert outcome.status == "error" and "No space left" in outcome.reason
    assert not p.remembered(tracks[0].content_hash)
    monkeypatch.undo()
    (outcome,) = p.run(tracks).values()
    assert outcome.ok and p.stored(tracks[0].content_hash)


@pytest.mark.parametrize("name", PASSES)
def test_a_damaged_stored_result_is_computed_again(name, library, tmp_path):
    """A stored result cut short (a crash mid-copy, a bad sector): reading it for the library table
    removes it, and the next run computes it again instead of calling it cached for ever."""
    import pandas as pd

    p = _Pass(name, tmp_path / "data")
    tracks = [t for t in scan_library(library).tracks if t.relpath == "a.wav"]
    p.run(tracks)
    h = tracks[0].content_hash
    path = p.store.path(h)
    path.write_bytes(path.read_bytes()[:100])
    if name == "features":
        from music_pipeline.audio.scan import LibraryScan
        from music_pipeline.features.tables import build_tables

        tables = build_tables(LibraryScan(library, tracks, []), p.store)
        assert "unreadable" in tables.skipped["reason"].item()
    elif name == "notes":
        from music_pipeline.notes.store import note_table

        _, missing = note_table(
            pd.DataFrame([{"key": t.key, "relpath": t.relpath, "content_hash": h} for t in tracks]), p.store
        )
        assert list(missing["content_hash"]) == [h]
    elif name == "fingerprints":
        from music_pipeline.artifacts import write_parquet
        from music_pipeline.identity.library import build_index
        from music_pipeline.layout import DataLayout

        write_parquet(DataLayout(p.data).manifest_path, scan_library(library).to_frame())
        _, missing = build_index(p.data)
        assert "a.wav" in missing
    else:
        from music_pipeline.learned.table import build_learned_table

        frame = pd.DataFrame([{"key": t.key, "relpath": t.relpath, "content_hash": h} for t in tracks])
        _, skipped = build_learned_table(frame, p.store)
        assert "unreadable" in skipped[0][1]
    assert not p.stored(h) and not p.remembered(h)
    (outcome,) = p.run(tracks).values()
    assert outcome.ok and p.stored(h)
    p.store.load(h)  # whole again


@pytest.mark.slow
def test_a_library_folder_that_goes_away_mid_build_loses_nothing(tmp_path, monkeypatch):
    """A build whose library folder disappears after the scan, while the per-track passes run (an
    unmounted disk): it ends failed, naming the folder, with nothing recorded as broken; with the
    folder back the next build puts every track in every table."""
    from music_pipeline import analysis
    from music_pipeline.artifacts import read_parquet
    from music_pipeline.build.runner import run_build
    from music_pipeline.layout import DataLayout
    from music_pipeline.settings import Settings

    lib, data, away = tmp_path / "lib", tmp_path / "data", tmp_path / "away"
    for i, style in enumerate(("arpeggio", "pulse", "drone")):
        write(lib / style / f"{style}.wav", tone(220 * (i + 1), 5))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    real = analysis.analyse_many

    def unmounted(jobs, *a, **k):
        if lib.exists():
            shutil.move(lib, away)
        return real(jobs, *a, **k)

    monkeypatch.setattr(analysis, "analyse_many", unmounted)
    monkeypatch.setattr("music_pipeline.defs.assets.features.analyse_many", unmounted)
    settings = Settings(data_dir=data, library_dir=lib, workers=1)
    first = run_build(settings, log=lambda *_: None, models=False)
    assert not first.ok and any(f"library folder {lib} does not exist" in f for f in first.failed_assets)
    monkeypatch.undo()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    shutil.move(away, lib)
    t0 = time.monotonic()
    second = run_build(settings, log=lambda *_: None, models=False)
    assert second.ok, second.failed_assets
    # the CPU time of each pass, counted once per step (not once per track partition and asset)
    assert set(second.pass_seconds) == set(PASSES) and all(s > 0 for s in second.pass_seconds.values())
    assert sum(second.pass_seconds.values()) <= time.monotonic() - t0
    layout = DataLayout(data)
    tracks = {t.key for t in scan_library(lib).tracks}
    for table in (layout.embeddings_path, layout.learned_table_path, layout.note_descriptors_table_path):
        assert set(read_parquet(table, columns=["key"])["key"]) == tracks, table
    assert set(read_parquet(layout.difficulty_table_path, columns=["key"])["key"]) == tracks
    assert len(read_parquet(layout.skipped_path)) == 0
    for name in PASSES:
        assert _Pass(name, data).store.failed_hashes() == set(), name

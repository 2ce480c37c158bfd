import re

import pandas as pd
import pytest

from music_pipeline.artifacts import UnsafePathError, safe_join
from music_pipeline.audio.scan import scan_library, track_key
from music_pipeline.synth import tone

from .audio_corpus import write


def test_track_keys_are_stable_safe_and_distinct():
    paths = ["a b.mp3", "a_b.mp3", "a b.wav", "../../etc/passwd.wav", "dir/ünï cødé ♪.ogg", "x" * 300 + ".wav"]
    keys = [track_key(p) for p in paths]
    assert len(set(keys)) == len(keys)
    assert keys == [track_key(p) for p in paths]  # stable
    for k in keys:
        assert re.fullmatch(r"[A-Za-z0-9_]+-[0-9a-f]{8}", k), k
        assert len(k) <= 70


def test_safe_join_refuses_traversal(tmp_path):
    assert safe_join(tmp_path, "a", "b.npz") == tmp_path / "a" / "b.npz"
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, "..", "escape.npz")
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, "/etc/passwd")


def test_labels_from_csv_then_folder_then_none(tmp_path):
    y = tone(440, 4)
    write(tmp_path / "rock" / "album1" / "a.wav", y)
    write(tmp_path / "jazz" / "b.flac", y)
    write(tmp_path / "c.wav", y)
    write(tmp_path / "rock" / "d.wav", y)
    (tmp_path / "labels.csv").write_text("path,label,group\nrock/d.wav,punk,The Band\n")
    tracks = {t.relpath: t for t in scan_library(tmp_path).tracks}
    assert (tracks["rock/album1/a.wav"].label, tracks["rock/album1/a.wav"].group) == ("rock", "rock/album1")
    assert (tracks["jazz/b.flac"].label, tracks["jazz/b.flac"].group) == ("jazz", None)
    assert (tracks["rock/d.wav"].label, tracks["rock/d.wav"].group) == ("punk", "The Band")
    assert tracks["c.wav"].label is None


def test_scan_ignores_non_audio_and_hidden(tmp_path):
    write(tmp_path / "a.wav", tone(440, 4))
    (tmp_path / "cover.jpg").write_bytes(b"jpeg")
    (tmp_path / ".hidden.wav").write_bytes(b"x")
    assert [t.relpath for t in scan_library(tmp_path).tracks] == ["a.wav"]


def test_hash_cache_avoids_rereading_unchanged_files(tmp_path, monkeypatch):
    lib, cache = tmp_path / "lib", tmp_path / "cache.parquet"
    write(lib / "a.wav", tone(440, 4))
    first = scan_library(lib, cache).tracks[0].content_hash
    from music_pipeline.audio import scan

    def boom(path, *a, **k):
        raise AssertionError(f"re-hashed unchanged {path}")

    monkeypatch.setattr(scan, "content_hash", boom)
    assert scan_library(lib, cache).tracks[0].content_hash == first
    monkeypatch.undo()
    write(lib / "a.wav", tone(220, 4))  # changed content -> new hash
    assert scan_library(lib, cache).tracks[0].content_hash != first


def test_unreadable_file_is_reported_not_dropped(tmp_path, monkeypatch):
    write(tmp_path / "a.wav", tone(440, 4))
    from music_pipeline.audio import scan

    def denied(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(scan, "content_hash", denied)
    (t,) = scan_library(tmp_path).tracks
    assert t.content_hash is None and "Permission denied" in t.scan_error


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "opus", "mp3", "aiff"])
def test_every_soundfile_format_decodes_to_analysis_rate(tmp_path, ext):
    import numpy as np

    from music_pipeline.audio.decode import decode

    path = write(tmp_path / f"a.{ext}", tone(440, 4))
    audio = decode(path)
    assert audio.sr == 22050 and audio.y.dtype == np.float32
    assert abs(audio.duration_s - 4.0) < 0.15  # codecs add a little priming/padding
    spectrum = np.abs(np.fft.rfft(audio.y[: 22050 * 2]))
    assert abs(np.argmax(spectrum) / 2 - 440) < 3  # still a 440 Hz tone after decode + resample


def test_table_refresh_reads_only_new_content_and_keeps_scan_fields_current(styled_library, tmp_path, monkeypatch):
    from music_pipeline.artifacts import write_parquet
    from music_pipeline.features.extract import FeatureStore
    from music_pipeline.features.tables import LibraryTables, build_tables, read_previous_tables, table_metadata

    lib, data = styled_library
    scan = scan_library(lib)
    store = FeatureStore(data)
    full = build_tables(scan, store)
    assert full.files_read == len(full.embeddings) == len(scan.tracks)
    # the previous refresh knew all but 3 tracks, with labels that have changed since
    old_e, old_d = full.embeddings.iloc[:-3].copy(), full.descriptors.iloc[:-3].copy()
    old_e["label"] = "stale"
    previous = LibraryTables(old_e, old_d, full.skipped, list(old_e["key"]))
    loads = []
    real_load = store.load
    monkeypatch.setattr(store, "load", lambda h: loads.append(h) or real_load(h))
    refreshed = build_tables(scan, store, previous)
    assert sorted(loads) == sorted(full.embeddings["content_hash"].iloc[-3:])
    assert refreshed.files_read == 3
    pd.testing.assert_frame_equal(refreshed.embeddings, full.embeddings)  # labels from the scan
    pd.testing.assert_frame_equal(refreshed.descriptors, full.descriptors)

    # stored tables are reused only for the extraction version they were made with
    e_path, d_path = tmp_path / "embeddings.parquet", tmp_path / "descriptors.parquet"
    write_parquet(e_path, full.embeddings, table_metadata(store))
    write_parquet(d_path, full.descriptors, table_metadata(store))
    again = read_previous_tables(e_path, d_path, store)
    assert again is not None and len(again.embeddings) == len(full.embeddings)
    assert read_previous_tables(e_path, d_path, FeatureStore(data, n_segments=5)) is None
    write_parquet(d_path, full.descriptors)  # no version recorded: not trusted
    assert read_previous_tables(e_path, d_path, store) is None
    assert read_previous_tables(tmp_path / "missing.parquet", d_path, store) is None

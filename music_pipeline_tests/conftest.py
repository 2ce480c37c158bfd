"""Shared fixtures. All audio is synthesized here or by music_pipeline.synth: no downloads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Pinned pretrained weights (the transcription model, musicnn) are fetched from PyPI by the
# project's own code once per machine and kept here, so every test, subprocess and CI run reuses them.
os.environ.setdefault("MUSIC_PIPELINE_WEIGHTS", str(Path.home() / ".cache" / "music-pipeline" / "weights"))


@pytest.fixture(scope="session")
def styled_library(tmp_path_factory) -> tuple[Path, Path]:
    """A small labelled library (4 styles × 6 tracks × 12 s, wav/flac/ogg) analysed with the core
    (no Dagster): returns (library_dir, data_dir) with the embedding and descriptor tables written."""
    from music_pipeline.artifacts import write_parquet
    from music_pipeline.audio.scan import scan_library
    from music_pipeline.features.extract import ExtractJob, FeatureStore, extract_many
    from music_pipeline.features.tables import build_tables
    from music_pipeline.layout import DataLayout
    from music_pipeline.synth import write_styled_library

    root = tmp_path_factory.mktemp("styled")
    library, data = root / "library", root / "data"
    write_styled_library(library, per_style=6, seconds=12.0)
    layout = DataLayout(data)
    scan = scan_library(library, layout.hash_cache_path)
    jobs = [ExtractJob(t.key, t.path, t.relpath, t.content_hash, str(data)) for t in scan.tracks]
    outcomes = extract_many(jobs, workers=2)
    assert all(o.ok for o in outcomes), [o.reason for o in outcomes if not o.ok]
    tables = build_tables(scan, FeatureStore(data))
    write_parquet(layout.embeddings_path, tables.embeddings)
    write_parquet(layout.descriptors_table_path, tables.descriptors)
    write_parquet(layout.skipped_path, tables.skipped)
    return library, data


@pytest.fixture(scope="session")
def styled_learned(styled_library, tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the styled library's data directory with the learned embedding of every track
    computed by the core (musicnn on the synthesized audio) and its table written."""
    import shutil

    from music_pipeline.artifacts import read_parquet, write_parquet
    from music_pipeline.audio.scan import scan_library
    from music_pipeline.layout import DataLayout
    from music_pipeline.learned.store import LearnedJob, LearnedStore, embed_many
    from music_pipeline.learned.table import build_learned_table

    library, shared = styled_library
    data = tmp_path_factory.mktemp("styled_learned") / "data"
    shutil.copytree(shared, data)
    layout = DataLayout(data)
    scan = scan_library(library, layout.hash_cache_path)
    store = LearnedStore(data)
    outcomes = embed_many([LearnedJob(t.key, t.path, t.relpath, t.content_hash) for t in scan.tracks], store)
    assert all(o.ok for o in outcomes), [o.reason for o in outcomes if not o.ok]
    table, skipped = build_learned_table(read_parquet(layout.embeddings_path), store)
    assert not skipped
    write_parquet(DataLayout(data).learned_table_path, table)
    return library, data


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 endpoint on loopback for the shared-storage tests (see system.S3Server)."""
    from .system import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log").start()
    saved = {k: os.environ.get(k) for k in server.env}
    server.configure_here()
    try:
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        import fsspec.config

        fsspec.config.conf.get("s3", {}).pop("endpoint_url", None)

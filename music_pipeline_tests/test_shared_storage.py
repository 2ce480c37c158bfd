"""Issue 6: artifacts on shared storage through a path abstraction (UPath / fsspec).

Local names stay ``pathlib.Path``; an ``s3://`` data directory is written and read over HTTP on a
real S3 endpoint (moto's server on 127.0.0.1, see system.S3Server) by the same code paths the
pipeline uses: tables, feature files, model directories (Keras, xgboost, faiss) and versions.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from upath import UPath

from music_pipeline.artifacts import (
    UnsafePathError,
    artifact_path,
    atomic_path,
    is_remote,
    read_json,
    read_npy,
    read_npz,
    read_parquet,
    remove_tree,
    safe_join,
    write_json,
    write_npy,
    write_npz,
    write_parquet,
)
from music_pipeline.layout import DataLayout
from music_pipeline.settings import LibraryNotGiven, Settings


@pytest.fixture
def bucket(s3_server, request) -> UPath:
    name = "mp-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[-40:].strip("-")
    return artifact_path(s3_server.make_bucket(name) + "/data")


def test_local_names_stay_paths_and_urls_become_upaths(tmp_path):
    assert type(artifact_path(str(tmp_path))) is type(tmp_path)
    assert artifact_path(f"file://{tmp_path}") == tmp_path  # file:// is local: rename stays atomic
    s3 = artifact_path("s3://bucket/prefix")
    assert isinstance(s3, UPath) and s3.protocol == "s3" and is_remote(s3) and not is_remote(tmp_path)
    assert str(DataLayout("s3://bucket/prefix").embeddings_path) == "s3://bucket/prefix/tables/embeddings.parquet"
    settings = Settings.resolve("s3://bucket/prefix", None, 1)
    assert settings.data_dir == s3 and settings.library_dir is None
    with pytest.raises(LibraryNotGiven, match="MUSIC_LIBRARY"):
        settings.require_library()
    # the Dagster instance never goes to the object store
    assert isinstance(settings.dagster_home, Path)


@pytest.mark.parametrize("name", ["../x.npz", "a/../../x", "/etc/passwd", "a//b"])
def test_safe_join_refuses_traversal_in_urls(name):
    with pytest.raises(UnsafePathError):
        safe_join("s3://bucket/data/features", name)
    assert str(safe_join("s3://bucket/data/features", "v2", "abc.npz")) == "s3://bucket/data/features/v2/abc.npz"


def test_tables_arrays_and_json_round_trip_on_s3(bucket, s3_server):
    df = pd.DataFrame({"key": ["a", "b", "c"], "x": [1.0, 2.0, 3.0]})
    write_parquet(bucket / "tables" / "t.parquet", df)
    pd.testing.assert_frame_equal(read_parquet(bucket / "tables" / "t.parquet"), df)
    only_b = read_parquet(bucket / "tables" / "t.parquet", columns=["x"], filters=[("key", "=", "b")])
    assert only_b["x"].tolist() == [2.0]
    arrays = {"e": np.arange(641, dtype=np.float64), "names": np.array(["a", "b"])}
    write_npz(bucket / "f.npz", arrays)
    back = read_npz(bucket / "f.npz")
    np.testing.assert_array_equal(back["e"], arrays["e"])
    np.testing.assert_array_equal(back["names"], arrays["names"])
    write_npy(bucket / "v.npy", np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(read_npy(bucket / "v.npy", mmap=True), np.eye(3, dtype=np.float32))
    write_json(bucket / "m.json", {"n": np.int64(3)})
    assert read_json(bucket / "m.json") == {"n": 3}
    # what another host sees: the objects themselves, under the prefix
    listed = {p.split("/data/", 1)[1] for p in s3_server.filesystem().find(bucket.path)}
    assert listed == {"tables/t.parquet", "f.npz", "v.npy", "m.json"}


def test_failed_write_leaves_the_old_object_and_no_debris(bucket, s3_server):
    dest = bucket / "tables" / "t.parquet"
    write_parquet(dest, pd.DataFrame({"v": [1]}))
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half a parquet file")
        raise RuntimeError("killed mid-write")
    assert read_parquet(dest)["v"].tolist() == [1]
    assert [p.rsplit("/", 1)[1] for p in s3_server.filesystem().find(bucket.path)] == ["t.parquet"]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_feature_store_listing_agrees_with_per_file_checks(where, tmp_path, request):
    from music_pipeline.difficulty.audio_descriptors import DESCRIPTOR_NAMES
    from music_pipeline.features.extract import FeatureStore, TrackFeatures

    data = tmp_path / "data" if where == "local" else request.getfixturevalue("bucket")
    store = FeatureStore(data)
    feats = TrackFeatures(
        np.zeros(641), dict.fromkeys(DESCRIPTOR_NAMES, 0.0), np.zeros((3, 128, 128), np.float16), 1.0, 22050, 1
    )
    hashes = [f"{i:064x}" for i in range(4)]
    assert store.analysed_hashes() == set()  # nothing written yet: no folder either
    store.save(hashes[0], feats)
    store.save(hashes[1], feats)
    store.save_failure(hashes[2], "bad.wav", "not audio")
    assert store.analysed_hashes() == {h for h in hashes if store.is_analysed(h)} == set(hashes[:3])
    store.save(hashes[2], feats)  # analysed after all: the failure record goes
    assert store.failure(hashes[2]) is None and store.analysed_hashes() == set(hashes[:3])


def test_model_directories_and_versions_on_s3(bucket, styled_library):
    """Keras, xgboost, faiss and the genre version switch all publish to and load from S3."""
    from music_pipeline.difficulty.cnn import build_model, load_keras, save_keras
    from music_pipeline.features.embedding import FEATURE_NAMES
    from music_pipeline.genre.candidates import Candidate, GenreModel, XgbSettings
    from music_pipeline.genre.data import labelled_data
    from music_pipeline.genre.persistence import load_model, save_model
    from music_pipeline.genre.versions import current_version, publish_version
    from music_pipeline.search.index import IndexParams, TrackIndex

    _, data_dir = styled_library
    table = read_parquet(DataLayout(data_dir).embeddings_path)
    data = labelled_data(table)
    model = GenreModel.fit(
        Candidate("xgb", "full", pca=8),
        data.X,
        data.labels,
        xgb_settings=XgbSettings(n_estimators=20, learning_rate=0.3),
    )
    root = bucket / "models" / "genre"
    for _ in range(3):
        vdir = publish_version(root, lambda d: save_model(model, d / "deployed"), keep=2)
    assert current_version(root).name == vdir.name
    assert len([p for p in root.iterdir() if p.name.startswith("v")]) == 2  # pruned on S3 too
    again = load_model(current_version(root) / "deployed")
    np.testing.assert_allclose(again.predict_proba(data.X[:5]), model.predict_proba(data.X[:5]), rtol=1e-6)

    cnn = build_model("compact")
    x = np.random.default_rng(0).standard_normal((2, 128, 128, 1)).astype("float32")
    dest = save_keras(cnn, bucket / "models" / "difficulty" / "difficulty_cnn.keras")
    assert isinstance(dest, UPath) and dest.is_file()
    np.testing.assert_allclose(load_keras(dest).predict(x, verbose=0), cnn.predict(x, verbose=0), rtol=1e-5, atol=1e-6)

    index = TrackIndex.build(table, IndexParams(approximate_above=4, nlist=4), transform="standardised")
    assert index.index.approximate  # the faiss file goes through a local copy both ways
    index.save(bucket / "models" / "similarity")
    loaded = TrackIndex.load(bucket / "models" / "similarity")
    q = table[FEATURE_NAMES].to_numpy()[:3]
    np.testing.assert_array_equal(
        loaded.index.search(index.transform.project(q), 5)[0], index.index.search(index.transform.project(q), 5)[0]
    )
    remove_tree(bucket / "models")
    assert not (bucket / "models" / "similarity" / "index.json").exists()


def test_cli_with_a_remote_data_dir_needs_a_library_and_says_so(s3_server):
    env = {**os.environ, **s3_server.env}
    env.pop("MUSIC_LIBRARY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "music_pipeline.cli", "build", "--data", "s3://nowhere/data"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "s3://nowhere/data is remote" in proc.stderr and "--library" in proc.stderr


def test_listings_see_files_another_host_wrote(bucket, s3_server):
    """A long-lived worker must not answer from a cached listing made before another host wrote."""
    from music_pipeline.artifacts import list_dir, write_bytes

    write_bytes(bucket / "features" / "a.npz", b"a")
    assert [p.name for p in list_dir(bucket / "features")] == ["a.npz"]
    s3_server.filesystem().pipe(f"{bucket.path}/features/b.npz", b"b")  # another host's client
    assert sorted(p.name for p in list_dir(artifact_path(str(bucket)) / "features")) == ["a.npz", "b.npz"]
    assert (bucket / "features" / "b.npz").is_file()


def test_table_refresh_rewrites_when_another_run_adds_features_meanwhile(styled_library, tmp_path, monkeypatch):
    import shutil

    import music_pipeline.features.tables as tables_module
    from music_pipeline.audio.scan import scan_library
    from music_pipeline.features.extract import FeatureStore
    from music_pipeline.features.tables import refresh_tables

    lib, src = styled_library
    data = tmp_path / "data"
    shutil.copytree(src / "features", data / "features")
    scan = scan_library(lib)
    store = FeatureStore(data)
    late = store.path(scan.tracks[0].content_hash)
    hidden = tmp_path / "late.npz"
    late.rename(hidden)  # another run is still extracting this track
    real_write = tables_module.write_parquet
    writes = []

    def write_then_other_run_finishes(dest, df, metadata=None):
        writes.append(dest)
        if hidden.exists():
            hidden.rename(late)
        return real_write(dest, df, metadata)

    monkeypatch.setattr(tables_module, "write_parquet", write_then_other_run_finishes)
    tables, rounds = refresh_tables(scan, store, DataLayout(data))
    assert rounds == 2 and len(writes) == 6
    assert len(tables.embeddings) == len(scan.tracks)
    assert scan.tracks[0].key in set(read_parquet(DataLayout(data).embeddings_path)["key"])

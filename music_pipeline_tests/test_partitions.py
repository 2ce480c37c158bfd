"""Partitioning of the per-track assets: per track (default) or hash buckets for catalogues."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from music_pipeline.audio.scan import LibraryScan, TrackRef, track_key
from music_pipeline.audio.sync import bucket_names, bucket_of, plan_buckets
from music_pipeline.build.runner import run_build
from music_pipeline.defs.partitions import Partitioning, tracks_partitions
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.sensors import LIBRARY_ASSETS, RANGE_END, RANGE_START
from music_pipeline.settings import ENV_BUCKETS, ENV_PARTITIONS, Settings, SettingsError, resolve_partitioning
from music_pipeline.synth import noise, tone

from .audio_corpus import write
from .test_dagster import make_library

TRACK_ASSET_NAMES = {
    "track_embedding",
    "track_difficulty",
    "mel_segments",
    "track_notes",
    "track_learned_embedding",
    "track_fingerprints",
}


def _scan(relpaths, hashes=None) -> LibraryScan:
    tracks = [
        TrackRef(track_key(r), r, f"/lib/{r}", None, None, 1, 1, (hashes or {}).get(r, f"h{i}"))
        for i, r in enumerate(relpaths)
    ]
    return LibraryScan(Path("/lib"), tracks, [])


def test_the_partitions_setting(monkeypatch):
    monkeypatch.delenv(ENV_PARTITIONS, raising=False)
    monkeypatch.delenv(ENV_BUCKETS, raising=False)
    assert resolve_partitioning() == ("tracks", 0)
    monkeypatch.setenv(ENV_PARTITIONS, "Buckets")
    assert resolve_partitioning() == ("buckets", 4096)
    monkeypatch.setenv(ENV_BUCKETS, "64")
    assert resolve_partitioning() == ("buckets", 64)
    assert resolve_partitioning("buckets", 8) == ("buckets", 8)  # an argument (resource field) wins
    assert resolve_partitioning("tracks") == ("tracks", 0)
    monkeypatch.setenv(ENV_BUCKETS, "many")
    with pytest.raises(SettingsError, match=ENV_BUCKETS):
        resolve_partitioning()
    monkeypatch.setenv(ENV_BUCKETS, "0")
    with pytest.raises(SettingsError, match="between 1 and"):
        resolve_partitioning()
    monkeypatch.setenv(ENV_PARTITIONS, "albums")
    with pytest.raises(SettingsError, match=f"{ENV_PARTITIONS}='albums'"):
        resolve_partitioning()


def test_a_track_keeps_its_bucket_and_buckets_fill_evenly():
    keys = [track_key(f"artist{i % 97}/album{i % 13}/track{i}.flac") for i in range(20000)]
    # the same bucket in another process with another hash seed (Python's hash() would move it)
    code = "import sys; from music_pipeline.audio.sync import bucket_of; print(' '.join(bucket_of(k, 4096) for k in sys.argv[1:]))"
    other = subprocess.run(
        [sys.executable, "-c", code, *keys[:50]],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    ).stdout.split()
    assert other == [bucket_of(k, 4096) for k in keys[:50]]
    counts = Counter(bucket_of(k, 64) for k in keys)
    assert set(counts) == set(bucket_names(64))
    mean = len(keys) / 64  # 312.5; binomial sd ~17.5
    assert max(abs(c - mean) for c in counts.values()) < 0.25 * mean
    # adding tracks never moves the existing ones
    assert [bucket_of(k, 64) for k in keys[:100]] == [bucket_of(k, 64) for k in (keys + ["new-00000000"])[:100]]


def test_bucket_plan_runs_the_buckets_of_new_and_changed_tracks_only():
    n = 64
    relpaths = [f"a/t{i}.wav" for i in range(400)]
    scan = _scan(relpaths)
    keys = [t.key for t in scan.tracks]
    known = set(keys)

    nothing = plan_buckets(scan, known, lambda t: False, n)
    assert not nothing.changed and nothing.ranges == [] and nothing.buckets == []

    # a new file: exactly its bucket
    grown = _scan(relpaths + ["b/new.wav"])
    plan = plan_buckets(grown, known, lambda t: False, n)
    b = bucket_of(track_key("b/new.wav"), n)
    assert plan.to_add == plan.to_run == [track_key("b/new.wav")] and plan.buckets == [b] and plan.ranges == [(b, b)]

    # a changed file (content not analysed): its bucket
    plan = plan_buckets(scan, known, lambda t: t.key == keys[7], n)
    assert plan.to_add == [] and plan.to_run == [keys[7]] and plan.ranges == [(bucket_of(keys[7], n),) * 2]

    # a removed file: no bucket run, the key is reported for the tables run
    plan = plan_buckets(_scan(relpaths[1:]), known, lambda t: False, n)
    assert plan.to_remove == [keys[0]] and plan.ranges == [] and plan.changed

    # nothing built yet: everything runs, ranges bounded in span and in tracks to analyse
    plan = plan_buckets(scan, None, lambda t: False, n, batch_size=50, buckets_per_run=8)
    assert len(plan.to_run) == 400 and set(plan.buckets) == {bucket_of(k, n) for k in keys}
    per_bucket = Counter(bucket_of(k, n) for k in keys)
    covered = []
    for start, end in plan.ranges:
        inside = [name for name in bucket_names(n) if start <= name <= end]
        assert len(inside) <= 8 and (sum(per_bucket[x] for x in inside) <= 50 or start == end)
        covered += inside
    assert set(plan.buckets) <= set(covered) and len(covered) == len(set(covered))

    # buckets to run without new work (never materialized) are covered too
    plan = plan_buckets(scan, known, lambda t: False, n, also=["b0003"])
    assert plan.to_run == [] and plan.ranges == [("b0003", "b0003")] and not plan.changed


def test_definitions_choose_the_partitions_of_every_per_track_asset(monkeypatch):
    from music_pipeline.definitions import build_definitions

    monkeypatch.delenv(ENV_PARTITIONS, raising=False)

    def partitions(defs):
        graph = defs.resolve_asset_graph()
        return {k.to_user_string(): graph.get(k).partitions_def for k in graph.get_all_asset_keys()}

    per_track = partitions(build_definitions(MusicPipelineResource()))
    assert {k for k, p in per_track.items() if p is not None} == TRACK_ASSET_NAMES
    assert all(per_track[k] == tracks_partitions for k in TRACK_ASSET_NAMES)

    defs = build_definitions(MusicPipelineResource(partitions="buckets", buckets=8))
    by_bucket = partitions(defs)
    assert {k for k, p in by_bucket.items() if p is not None} == TRACK_ASSET_NAMES
    for k in TRACK_ASSET_NAMES:
        assert isinstance(by_bucket[k], dg.StaticPartitionsDefinition) and by_bucket[
            k
        ].get_partition_keys() == bucket_names(8)
    assert "hash-bucket" in defs.resolve_sensor_def("library_sensor").description
    graph = defs.resolve_asset_graph()
    policy = graph.get(dg.AssetKey("track_embedding")).backfill_policy
    assert policy.max_partitions_per_run == Partitioning(8).buckets_per_run


def _feature_files(data):
    return {p.name: p.stat().st_mtime_ns for p in (data / "features").rglob("*.npz")}


def _quiet():
    return {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@pytest.mark.slow
def test_bucket_mode_end_to_end_from_a_per_track_library(tmp_path, monkeypatch):
    """A library built per track switches to buckets without analysing anything again; then the
    sensor, the ingest job and `build` follow new and removed files bucket by bucket."""
    from music_pipeline.definitions import build_definitions

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv(ENV_PARTITIONS, raising=False)
    lib = make_library(tmp_path / "lib", 4)
    data = tmp_path / "data"
    settings = Settings(data_dir=data, library_dir=lib, workers=2)
    quiet = lambda *_: None
    assert run_build(settings, log=quiet, models=False).ok  # per track (the default)
    instance = dg.DagsterInstance.get()
    registered = set(instance.get_dynamic_partitions("tracks"))
    assert len(registered) == 4
    before = _feature_files(data)
    assert len(before) == 4

    # the switch: every bucket holding a track is materialized from the caches, nothing analysed again
    monkeypatch.setenv(ENV_PARTITIONS, "buckets")
    monkeypatch.setenv(ENV_BUCKETS, "8")
    buckets = Partitioning(8)
    s1 = run_build(settings, log=quiet, models=False)
    assert s1.ok and s1.extracted_runs >= 1 and s1.embedded == 4 and _feature_files(data) == before
    scan_keys = [t.key for t in MusicPipelineResource(data_dir=str(data), library_dir=str(lib)).scan().tracks]
    holding = {buckets.bucket_of(k) for k in scan_keys}
    for name in TRACK_ASSET_NAMES:
        assert holding <= set(instance.get_materialized_partitions(dg.AssetKey(name)))

    pipeline = MusicPipelineResource(data_dir=str(data), library_dir=str(lib), workers=2)
    defs = build_definitions(pipeline)
    sensor = defs.resolve_sensor_def("library_sensor")

    def tick(cursor=None):
        ctx = dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline}, cursor=cursor)
        return sensor(ctx), ctx.cursor

    result, cursor = tick()
    assert isinstance(result, dg.SkipReason), result

    # a new file: one run over exactly its bucket, requested once
    write(lib / "style" / "new.wav", tone(660, 4) + noise(4, amp=0.02, seed=9))
    new_key = track_key("style/new.wav")
    bucket = buckets.bucket_of(new_key)
    result, cursor = tick(cursor)
    (req,) = result.run_requests
    assert (req.tags[RANGE_START], req.tags[RANGE_END]) == (bucket, bucket) and req.run_key.startswith("buckets:")
    assert not result.dynamic_partitions_requests
    assert isinstance(tick(cursor)[0], dg.SkipReason)  # in flight: not requested twice

    # the ingest job runs the request: only the new track is analysed, its bucket-mates come from the caches
    run = defs.resolve_job_def("ingest_tracks").execute_in_process(
        instance=instance, tags=req.tags, run_config=_quiet()
    )
    assert run.success
    mates = sum(buckets.bucket_of(k) == bucket for k in scan_keys)
    # the first per-track step reads the new file once and runs every pass on it (analysis.py):
    # it reports the new track analysed and each pass's CPU time; the others find it in their stores
    for node, new_status, analysed_here in (
        ("track_features", "extracted", 1),
        ("track_notes", "transcribed", 0),
        ("track_learned_embedding", "computed", 0),
        ("track_fingerprints", "computed", 0),
    ):
        mat = run.asset_materializations_for_node(node)[0]
        md = {k: v.value for k, v in mat.metadata.items()}
        assert mat.partition == bucket
        assert (md["partitioning"], md["buckets"], md["tracks"], md[new_status], md["cached"], md["failed"]) == (
            "buckets",
            1,
            mates + 1,
            analysed_here,
            mates + 1 - analysed_here,
            0,
        ), node
        passes_run = {name for name, seconds in md["pass_cpu_seconds"].items() if seconds > 0}
        # the fingerprints of a 4 s track take ~5 ms: reported to 10 ms, they round to 0 or 0.01
        if analysed_here:
            assert {"features", "notes", "learned"} <= passes_run <= {"features", "notes", "learned", "fingerprints"}
        else:
            assert passes_run == set(), (node, md)
    after = _feature_files(data)
    assert len(after) == 5 and {k: v for k, v in after.items() if k in before} == before
    table = pd.read_parquet(data / "tables" / "embeddings.parquet")
    assert new_key in set(table["key"]) and len(table) == 5
    result, cursor = tick(cursor)
    assert isinstance(result, dg.SkipReason), result

    # a removed file: a tables run (no bucket run), requested once; it leaves the tables
    (lib / "style" / "t1.wav").unlink()
    result, cursor = tick(cursor)
    (req,) = result.run_requests
    assert req.asset_selection == LIBRARY_ASSETS and RANGE_START not in req.tags
    assert isinstance(tick(cursor)[0], dg.SkipReason)
    run = defs.resolve_job_def("ingest_tracks").execute_in_process(
        instance=instance, asset_selection=LIBRARY_ASSETS, tags=req.tags, run_config=_quiet()
    )
    assert run.success
    assert "style/t1.wav" not in set(pd.read_parquet(data / "tables" / "embeddings.parquet")["relpath"])
    assert isinstance(tick(cursor)[0], dg.SkipReason)

    # build: a removal and a new file -> one run over the new file's bucket; the removed track leaves the table
    (lib / "style" / "t2.wav").unlink()
    write(lib / "other" / "late.wav", tone(330, 4) + noise(4, amp=0.02, seed=11))
    late = buckets.bucket_of(track_key("other/late.wav"))
    s2 = run_build(settings, log=quiet, models=False)
    assert s2.ok and s2.extracted_runs == 1 and s2.embedded == 4
    tags = instance.get_run_by_id(s2.run_ids[0]).tags
    assert (tags[RANGE_START], tags[RANGE_END]) == (late, late)
    table = pd.read_parquet(data / "tables" / "embeddings.parquet")
    assert set(table["relpath"]) == {"style/t0.wav", "style/t3.wav", "style/new.wav", "other/late.wav"}
    # bucket mode registers nothing per track (the per-track partitions of the first build stay as they were)
    assert set(instance.get_dynamic_partitions("tracks")) == registered

    # nothing changed: nothing runs
    assert run_build(settings, log=quiet, models=False).run_ids == []

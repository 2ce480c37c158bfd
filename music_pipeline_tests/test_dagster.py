"""The Dagster layer: definitions, partitioned materialization, the sensor, and builds."""

import os

import dagster as dg
import pandas as pd
import pytest

from music_pipeline.build.runner import run_build
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.sensors import RANGE_END, RANGE_START, library_sensor
from music_pipeline.features.extract import FeatureStore
from music_pipeline.settings import Settings
from music_pipeline.synth import clicks, noise, tone

from .audio_corpus import write


def make_library(root, n=3):
    for i in range(n):
        write(
            root / "style" / f"t{i}.wav",
            tone(220 * (i + 1), 4) + 0.2 * clicks(90 + 10 * i, 4) + noise(4, amp=0.01, seed=i),
        )
    return root


def test_definitions_load():
    import dagster as dg

    from music_pipeline.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"library_manifest", "track_embedding", "track_difficulty", "mel_segments", "embeddings"} <= keys
    sensor = defs.resolve_sensor_def("library_sensor")
    assert sensor.job_name == "ingest_tracks" and sensor.default_status == dg.DefaultSensorStatus.RUNNING
    job = defs.resolve_implicit_global_asset_job_def()
    assert {k.to_user_string() for k in job.asset_layer.asset_graph.get_all_asset_keys()} == keys


def test_partitioned_materialization(tmp_path):
    from music_pipeline.defs.assets.features import track_features

    lib = make_library(tmp_path / "lib", 2)
    pipeline = MusicPipelineResource(data_dir=str(tmp_path / "data"), library_dir=str(lib), workers=1)
    keys = [t.key for t in pipeline.scan().tracks]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tracks", keys)
        result = dg.materialize(
            [track_features], partition_key=keys[0], instance=instance, resources={"pipeline": pipeline}
        )
        assert result.success
        mats = result.asset_materializations_for_node("track_features")
        assert {m.asset_key.to_user_string() for m in mats} == {"track_embedding", "track_difficulty", "mel_segments"}
        assert all(m.partition == keys[0] for m in mats)
        assert mats[0].metadata["status"].value == "extracted"
        (check,) = result.get_asset_check_evaluations()
        assert check.check_name == "segments_complete" and check.passed
        assert check.metadata["segments"].value == check.metadata["expected"].value == 3
    scan = {t.key: t for t in pipeline.scan().tracks}
    store = FeatureStore(tmp_path / "data")
    assert store.has(scan[keys[0]].content_hash) and not store.has(scan[keys[1]].content_hash)


def test_segments_check_reads_the_stored_files_and_can_fail(tmp_path):
    from music_pipeline.artifacts import read_npz, write_npz
    from music_pipeline.defs.assets.features import track_features

    lib = make_library(tmp_path / "lib", 2)
    pipeline = MusicPipelineResource(data_dir=str(tmp_path / "data"), library_dir=str(lib), workers=1)
    tracks = pipeline.scan().tracks
    keys = [t.key for t in tracks]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tracks", keys)
        dg.materialize(
            [track_features],
            instance=instance,
            resources={"pipeline": pipeline},
            tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
        )
        # one stored file loses a segment behind the pipeline's back; the next run reuses the cache
        store = pipeline.store
        damaged = read_npz(store.path(tracks[1].content_hash))
        damaged["segments"] = damaged["segments"][:2]
        write_npz(store.path(tracks[1].content_hash), damaged)
        result = dg.materialize(
            [track_features],
            instance=instance,
            resources={"pipeline": pipeline},
            tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
        )
        assert result.success  # a check, not a crash: the run still records the tracks
        (check,) = result.get_asset_check_evaluations()
        assert not check.passed
        assert check.metadata["segments"].value == 5 and check.metadata["expected"].value == 6
        assert tracks[1].relpath in check.metadata["problems"].value


def test_sensor_adds_batches_and_removes_partitions(tmp_path):
    lib = make_library(tmp_path / "lib", 3)
    pipeline = MusicPipelineResource(data_dir=str(tmp_path / "data"), library_dir=str(lib), workers=1)
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline})
        result = library_sensor(ctx)
        (add,) = result.dynamic_partitions_requests
        assert len(add.partition_keys) == 3
        # three new tracks -> one batched run over a partition range, not three runs
        (req,) = result.run_requests
        assert req.tags[RANGE_START] == add.partition_keys[0] and req.tags[RANGE_END] == add.partition_keys[-1]
        instance.add_dynamic_partitions("tracks", list(add.partition_keys))

        # the same state again: nothing is requested twice while the run is pending
        ctx2 = dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline}, cursor=ctx.cursor)
        assert isinstance(library_sensor(ctx2), dg.SkipReason)

        (lib / "style" / "t1.wav").unlink()
        ctx3 = dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline}, cursor=ctx2.cursor)
        result = library_sensor(ctx3)
        (delete,) = result.dynamic_partitions_requests
        assert isinstance(delete, dg.DeleteDynamicPartitionsRequest) and len(delete.partition_keys) == 1
        # a removal alone rebuilds the library tables so the track leaves them
        assert [r.asset_selection for r in result.run_requests] == [
            [dg.AssetKey("library_manifest"), dg.AssetKey("embeddings")]
        ]


def test_partitions_are_registered_in_chunks(tmp_path, monkeypatch):
    """A first listing of a million files must not reach SQLite as one `IN (…)` of a million keys."""
    from music_pipeline.defs import partitions

    assert [len(c) for c in partitions.register_chunks(range(25_001))] == [10_000, 10_000, 5_001]
    monkeypatch.setattr(partitions, "REGISTER_CHUNK", 2)
    lib = make_library(tmp_path / "lib", 3)
    pipeline = MusicPipelineResource(data_dir=str(tmp_path / "data"), library_dir=str(lib), workers=1)
    with dg.instance_for_test() as instance:
        result = library_sensor(dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline}))
        adds = result.dynamic_partitions_requests
        assert [len(a.partition_keys) for a in adds] == [2, 1] and all(
            isinstance(a, dg.AddDynamicPartitionsRequest) for a in adds
        )
        (req,) = result.run_requests  # still one batched run over the whole range
        assert req.tags[RANGE_START] == adds[0].partition_keys[0] and req.tags[RANGE_END] == adds[-1].partition_keys[-1]


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _feature_mtimes(data):
    return {p.name: p.stat().st_mtime_ns for p in (data / "features").rglob("*.npz")}


def test_build_is_incremental(tmp_path, dagster_home):
    lib = make_library(tmp_path / "lib", 3)
    data = tmp_path / "data"
    settings = Settings(data_dir=data, library_dir=lib, workers=2)
    s1 = run_build(settings, log=lambda *_: None, models=False)
    assert s1.ok and s1.embedded == 3 and len(s1.skipped) == 0
    before = _feature_mtimes(data)

    # unchanged library: nothing is extracted, no track run at all
    s2 = run_build(settings, log=lambda *_: None, models=False)
    assert s2.extracted_runs == 0 and _feature_mtimes(data) == before

    # one new file: only it is extracted
    write(lib / "style" / "new.wav", tone(660, 4) + noise(4, amp=0.02, seed=9))
    s3 = run_build(settings, log=lambda *_: None, models=False)
    after = _feature_mtimes(data)
    assert s3.embedded == 4 and len(after) == 4
    assert {k: v for k, v in after.items() if k in before} == before

    # a changed file is re-extracted (new content hash), the others are not
    write(lib / "style" / "t0.wav", tone(990, 5))
    run_build(settings, log=lambda *_: None, models=False)
    changed = _feature_mtimes(data)
    assert len(set(changed) - set(after)) == 1

    # a deleted file leaves the partitions and the table
    (lib / "style" / "t2.wav").unlink()
    s5 = run_build(settings, log=lambda *_: None, models=False)
    table = pd.read_parquet(data / "tables" / "embeddings.parquet")
    assert s5.embedded == 3 and "style/t2.wav" not in set(table["relpath"])
    instance = dg.DagsterInstance.get()
    assert set(instance.get_dynamic_partitions("tracks")) == set(table["key"])


def test_renamed_file_is_not_recomputed(tmp_path, dagster_home):
    lib = make_library(tmp_path / "lib", 2)
    data = tmp_path / "data"
    settings = Settings(data_dir=data, library_dir=lib, workers=1)
    run_build(settings, log=lambda *_: None, models=False)
    before = _feature_mtimes(data)
    os.rename(lib / "style" / "t0.wav", lib / "style" / "renamed.wav")
    s = run_build(settings, log=lambda *_: None, models=False)
    assert _feature_mtimes(data) == before
    table = pd.read_parquet(data / "tables" / "embeddings.parquet")
    assert (
        s.embedded == 2 and "style/renamed.wav" in set(table["relpath"]) and "style/t0.wav" not in set(table["relpath"])
    )


def test_bad_file_fails_only_itself(tmp_path, dagster_home):
    lib = make_library(tmp_path / "lib", 2)
    (lib / "style" / "broken.mp3").write_text("not audio")
    write(lib / "style" / "short.wav", tone(440, 1))
    settings = Settings(data_dir=tmp_path / "data", library_dir=lib, workers=2)
    s = run_build(settings, log=lambda *_: None, models=False)
    assert s.ok and s.embedded == 2
    reasons = dict(zip(s.skipped["relpath"], s.skipped["reason"], strict=True))
    assert set(reasons) == {"style/broken.mp3", "style/short.wav"}
    assert "not a readable audio file" in reasons["style/broken.mp3"]
    assert "too short" in reasons["style/short.wav"]
    # the partition of a broken file exists (it is a track of the library) and is not retried
    s2 = run_build(settings, log=lambda *_: None, models=False)
    assert s2.extracted_runs == 0


def test_second_build_on_same_data_dir_refuses(tmp_path, dagster_home):
    from music_pipeline.build.runner import BuildLocked, data_dir_lock

    lib = make_library(tmp_path / "lib", 1)
    settings = Settings(data_dir=tmp_path / "data", library_dir=lib, workers=1)
    with data_dir_lock(settings), pytest.raises(BuildLocked, match="another build is running"):
        run_build(settings, log=lambda *_: None, models=False)


def test_sensor_explains_a_missing_or_unreadable_library_instead_of_failing(tmp_path, monkeypatch):
    """Issue 12: a library that is missing, moved or unreadable gives a SkipReason naming the
    folder, where it came from and the fix — a tick that is skipped, never one that fails."""
    from music_pipeline.settings import record_library

    monkeypatch.delenv("MUSIC_LIBRARY", raising=False)
    data = tmp_path / "data"
    with dg.instance_for_test() as instance:

        def tick(pipeline):
            return library_sensor(dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline}))

        # nothing built, nothing given: the default folder is missing
        skip = tick(MusicPipelineResource(data_dir=str(data)))
        assert isinstance(skip, dg.SkipReason)
        assert (
            f"library folder {data / 'library'} does not exist" in skip.skip_message
            and "--library DIR" in skip.skip_message
        )

        # the recorded library was moved away
        lib = make_library(tmp_path / "music", 1)
        record_library(data, lib, "--library", "build")
        assert isinstance(tick(MusicPipelineResource(data_dir=str(data))), dg.SensorResult)  # found through the record
        lib.rename(tmp_path / "moved")
        skip = tick(MusicPipelineResource(data_dir=str(data)))
        assert isinstance(skip, dg.SkipReason)
        assert (
            f"library folder {lib} does not exist" in skip.skip_message and "recorded by `build`" in skip.skip_message
        )
        assert "music-pipeline build --library NEW_FOLDER" in skip.skip_message

        # present but unreadable (a lost mount, permissions)
        (tmp_path / "moved").rename(lib)
        import music_pipeline.settings as settings_module

        real_scandir = settings_module.os.scandir

        def denied(path):
            if str(path) == str(lib):
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        with monkeypatch.context() as m:
            m.setattr(settings_module.os, "scandir", denied)
            skip = tick(MusicPipelineResource(data_dir=str(data)))
        assert (
            isinstance(skip, dg.SkipReason)
            and f"library folder {lib} cannot be read (Permission denied)" in skip.skip_message
        )


def test_run_status_sensor_writes_the_reports_index(tmp_path):
    from music_pipeline.defs.sensors import reports_index

    data = tmp_path / "data"
    (data / "reports").mkdir(parents=True)
    (data / "reports" / "genre_models.md").write_text("# Genre models\n\n| model | acc |\n|---|---|\n| knn | 0.5 |\n")
    pipeline = MusicPipelineResource(data_dir=str(data), library_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        result = dg.materialize([_noop], instance=instance)
        run = instance.get_run_by_id(result.run_id)
        ctx = dg.build_run_status_sensor_context(
            sensor_name="reports_index",
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=result.get_run_success_event(),
            resources={"pipeline": pipeline},
        )
        reports_index(ctx)
    index = (data / "reports" / "index.html").read_text()
    assert 'href="genre_models.html"' in index and "<table>" in (data / "reports" / "genre_models.html").read_text()


@dg.asset
def _noop():
    return 1


def test_a_track_is_analysed_only_when_every_per_track_store_answered_it(tmp_path):
    """A store that lacks a track (a new file, or a new version of one per-track asset such as the
    notes) sends it to analysis again; a recorded failure counts as an answer."""
    from music_pipeline.features.harmonic import SequenceStore
    from music_pipeline.identity.store import FingerprintStore
    from music_pipeline.learned.store import LearnedStore
    from music_pipeline.notes.store import NotesStore

    pipeline = MusicPipelineResource(data_dir=str(tmp_path / "data"), library_dir=str(tmp_path / "lib"), workers=1)
    features, notes, learned, fingerprints, sequences = pipeline.track_stores()
    assert isinstance(notes, NotesStore) and isinstance(learned, LearnedStore)
    assert isinstance(fingerprints, FingerprintStore) and isinstance(sequences, SequenceStore)
    for store in (features, notes, learned, fingerprints, sequences):
        store.path("both").parent.mkdir(parents=True, exist_ok=True)
        store.path("both").write_bytes(b"")
    for store in (features, learned, fingerprints, sequences):
        store.path("no_notes").write_bytes(b"")
    for store in (features, notes, learned, fingerprints):
        store.path("no_sequence").write_bytes(b"")  # features stored before the sequences existed
    for store in (features, notes, learned, fingerprints, sequences):
        store.save_failure("broken", "broken.wav", "not audio")
    assert pipeline.analysed_hashes() == {"both", "broken"}
    assert pipeline.analysed_hashes(retry_failed=True) == {"both"}


def test_nightly_rebuild_skips_a_never_built_library_and_runs_once_built(tmp_path):
    from music_pipeline.artifacts import write_parquet
    from music_pipeline.definitions import build_definitions
    from music_pipeline.layout import DataLayout

    (tmp_path / "lib").mkdir()
    pipeline = MusicPipelineResource(data_dir=str(tmp_path / "data"), library_dir=str(tmp_path / "lib"))
    schedule = build_definitions(pipeline).resolve_schedule_def("nightly_rebuild")
    skipped = schedule(dg.build_schedule_context(resources={"pipeline": pipeline}))
    assert (
        isinstance(skipped, dg.SkipReason)
        and "never built" in skipped.skip_message
        and "embeddings.parquet" in skipped.skip_message
    )
    write_parquet(DataLayout(tmp_path / "data").embeddings_path, pd.DataFrame({"key": ["a"]}))
    request = schedule(dg.build_schedule_context(resources={"pipeline": pipeline}))
    assert isinstance(request, dg.RunRequest) and request.tags["music_pipeline/trigger"] == "nightly_rebuild"

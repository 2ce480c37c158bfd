"""The batching SQLite event log stores exactly what Dagster's own SQLite storage stores."""

import dagster as dg

from music_pipeline import settings
from music_pipeline.defs import event_log
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.sensors import RANGE_END, RANGE_START

from .test_dagster import make_library

TRACK_KEYS = [dg.AssetKey(k) for k in ("track_embedding", "track_difficulty", "mel_segments")]


def _range_run(tmp_path, storage: dict):
    from music_pipeline.defs.assets.features import track_features

    lib = make_library(tmp_path / "lib", 5)
    pipeline = MusicPipelineResource(data_dir=str(tmp_path / "data"), library_dir=str(lib), workers=1)
    keys = sorted(t.key for t in pipeline.scan().tracks)
    with dg.instance_for_test(overrides={"event_log_storage": storage}) as instance:
        instance.add_dynamic_partitions("tracks", keys)
        result = dg.materialize(
            [track_features],
            instance=instance,
            resources={"pipeline": pipeline},
            tags={RANGE_START: keys[0], RANGE_END: keys[-1]},
        )
        assert result.success
        counts = {}
        for t in (dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED):
            records = instance.get_records_for_run(result.run_id, of_type=t).records
            counts[t] = sorted(
                (r.event_log_entry.dagster_event.asset_key.to_user_string(), r.event_log_entry.dagster_event.partition)
                for r in records
            )
        materialized = {k.to_user_string(): sorted(instance.get_materialized_partitions(k)) for k in TRACK_KEYS}
        latest = {
            k.to_user_string(): instance.get_latest_materialization_event(k).dagster_event.partition for k in TRACK_KEYS
        }
        checks = [e.check_name for e in result.get_asset_check_evaluations()]
        type_name = type(instance.event_log_storage).__name__
    return keys, counts, materialized, latest, checks, type_name


def test_batched_writes_store_the_same_events_as_dagsters_sqlite_storage(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.ENV_EVENT_BATCH, "1000")
    batches = []
    original = event_log.BatchingSqliteEventLogStorage.store_event_batch

    def spy(self, events):
        batches.append(len(events))
        return original(self, events)

    monkeypatch.setattr(event_log.BatchingSqliteEventLogStorage, "store_event_batch", spy)
    ours = _range_run(
        tmp_path / "ours",
        {
            "module": "music_pipeline.defs.event_log",
            "class": "BatchingSqliteEventLogStorage",
            "config": {"base_dir": str(tmp_path / "ours" / "runs")},
        },
    )
    theirs = _range_run(
        tmp_path / "theirs",
        {
            "module": "dagster._core.storage.event_log",
            "class": "SqliteEventLogStorage",
            "config": {"base_dir": str(tmp_path / "theirs" / "runs")},
        },
    )
    assert ours[-1] == "BatchingSqliteEventLogStorage" and theirs[-1] == "SqliteEventLogStorage"
    assert max(batches, default=0) >= 5, "the per-partition events did not arrive in batches"
    keys = ours[0]
    # same track keys in both libraries (keys come from relative paths), so results compare directly
    assert keys == theirs[0]
    assert ours[1:-1] == theirs[1:-1]
    assert all(parts == keys for parts in ours[2].values())


def test_shipped_instance_config_uses_the_batching_storage(tmp_path, monkeypatch):
    from music_pipeline.build.runner import ensure_dagster_home
    from music_pipeline.settings import Settings

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = ensure_dagster_home(Settings.resolve(tmp_path / "data", tmp_path / "lib"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.event_log_storage, event_log.BatchingSqliteEventLogStorage)
        assert instance.event_log_storage._base_dir == str(home / "history" / "runs")
    # opened from its directory with DAGSTER_HOME pointing elsewhere: the same event log
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.event_log_storage._base_dir == str(home / "history" / "runs")

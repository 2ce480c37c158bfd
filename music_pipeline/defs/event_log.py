"""SQLite event-log storage that writes a batch of asset events in one transaction per shard.

A run over a range of track partitions records one "planned" and one "materialized" event per
track and per-track asset. Dagster's SQLite storage stores each event on its own — a new engine,
a connection and a commit for the run's shard, then the same again for the cross-run index — about
10 ms per event here, which for 1,000 short tracks was most of the ingest step. Dagster already
groups these events into batches (``DAGSTER_EVENT_BATCH_SIZE``) and hands them to
``store_event_batch``, whose SQLite default simply loops over ``store_event``. This subclass does
the same writes, row for row, inside one transaction per shard. It is configured in the shipped
``dagster.yaml``; with any other storage (PostgreSQL in the scale-out profile, which has its own
batch writer) nothing here is used.
"""

import os
from collections.abc import Sequence

from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, BATCH_WRITABLE_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import AssetEventTagsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._serdes import ConfigurableClassData

from music_pipeline import settings


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with a transactional ``store_event_batch``."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        if not base_dir:  # the layout Dagster's default SQLite storage uses
            base_dir = os.path.join(settings.dagster_home_from_env(), "history", "runs")
        super().__init__(base_dir, inst_data=inst_data)
        self._has_tags_table: bool | None = None

    @classmethod
    def config_type(cls):
        from dagster import Field, StringSource

        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(base_dir=config_value.get("base_dir"), inst_data=inst_data)

    def has_table(self, table_name: str) -> bool:
        # asked once per stored asset event by the tag writer; the schema does not change under us
        if table_name != AssetEventTagsTable.name:
            return super().has_table(table_name)
        if self._has_tags_table is None:
            self._has_tags_table = super().has_table(table_name)
        return self._has_tags_table

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        events = [e for e in events if e.is_dagster_event]
        if not events:
            return
        if (
            any(e.dagster_event_type not in BATCH_WRITABLE_EVENTS for e in events)
            or len({e.run_id for e in events}) != 1
        ):
            return super().store_event_batch(events)  # not a case Dagster batches: the safe loop
        run_id = events[0].run_id
        with self.run_connection(run_id) as conn:
            for event in events:
                conn.execute(self.prepare_insert_event(event))
        checks: list[tuple[EventLogEntry, int]] = []
        with self.index_transaction() as conn:
            for event in events:
                with db_result(conn, self.prepare_insert_event(event)) as result:
                    event_id = result.inserted_primary_key[0]
                if event.dagster_event_type in ASSET_EVENTS:
                    self._store_asset_event_tags(conn, [event], [event_id])
                    self._store_asset_event(conn, event, event_id)
                if event.dagster_event_type in ASSET_CHECK_EVENTS:
                    checks.append((event, event_id))
        for event, event_id in checks:  # one per check and run: not worth a shared transaction
            self.store_asset_check_event(event, event_id)

"""The partitions of every per-track asset, defined in one place.

Two partitionings, chosen by ``MUSIC_PIPELINE_PARTITIONS`` (or the resource's ``partitions``
field) and read once, when the definitions are assembled:

- ``tracks`` (default): one dynamic partition per track, keyed by the track key. The UI shows
  every track with its own status and metadata. Comfortable to tens of thousands of tracks.
- ``buckets``: a fixed set of ``MUSIC_PIPELINE_BUCKETS`` (default 4096) static partitions
  ``b0000``…; a track belongs to the bucket given by a hash of its key, so buckets stay put as
  the library grows and nothing is registered per track. For catalogues past ~100k tracks.

Either way the work is cached per content hash: a run over a bucket analyses only the tracks
whose content is new and answers the others from the stores.

The asset modules declare ``partitions_def=tracks_partitions``; ``Partitioning.apply`` swaps it
for the chosen definition when the definitions are built, and ``tracks_for_run`` maps a run's
partition keys to its tracks — the one mapping every per-track asset uses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import dagster as dg

from music_pipeline.artifacts import read_parquet
from music_pipeline.audio.scan import LibraryScan, TrackRef
from music_pipeline.audio.sync import SyncPlan, bucket_index, bucket_name, bucket_names, plan_buckets, plan_sync
from music_pipeline.settings import resolve_partitioning

# One partition per track; keys come from music_pipeline.audio.scan.track_key.
tracks_partitions = dg.DynamicPartitionsDefinition(name="tracks")

# Tracks analysed per run at most, when the sensor or `build` batches new/changed tracks.
TRACK_BATCH = 500

# Partition keys registered per call: Dagster's SQLite storage checks the new keys with one
# `IN (…)` query, which fails past SQLite's variable limit (1M keys at once: "too many SQL variables").
REGISTER_CHUNK = 10_000


def register_chunks(keys) -> list[list[str]]:
    """``keys`` in lists of at most REGISTER_CHUNK, in order."""
    keys = list(keys)
    return [keys[i : i + REGISTER_CHUNK] for i in range(0, len(keys), REGISTER_CHUNK)]


@functools.lru_cache(maxsize=4)
def _bucket_partitions(n_buckets: int) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(bucket_names(n_buckets))


@dataclass(frozen=True)
class Partitioning:
    """How the per-track assets are partitioned: ``buckets == 0`` is one partition per track."""

    buckets: int = 0

    @classmethod
    def resolve(cls, mode: str | None = None, buckets: int | None = None) -> Partitioning:
        """Argument > MUSIC_PIPELINE_PARTITIONS / MUSIC_PIPELINE_BUCKETS > per track."""
        return cls(resolve_partitioning(mode, buckets)[1])

    @classmethod
    def of(cls, partitions_def: dg.PartitionsDefinition | None) -> Partitioning:
        """The partitioning an asset was built with (what its run's partition keys mean)."""
        if isinstance(partitions_def, dg.StaticPartitionsDefinition):
            return cls(len(partitions_def.get_partition_keys()))
        return cls(0)

    @property
    def mode(self) -> str:
        return "buckets" if self.buckets else "tracks"

    @property
    def definition(self) -> dg.PartitionsDefinition:
        return _bucket_partitions(self.buckets) if self.buckets else tracks_partitions

    @property
    def buckets_per_run(self) -> int:
        """A run spans at most 1/16 of the buckets: new files scatter over every bucket, so a
        large drop is at most 16 runs (each still capped at TRACK_BATCH tracks to analyse)."""
        return max(8, self.buckets // 16)

    @property
    def backfill_policy(self) -> dg.BackfillPolicy:
        # Many tracks per run, parallel inside it: one run per track would cost seconds each.
        return dg.BackfillPolicy.multi_run(max_partitions_per_run=self.buckets_per_run if self.buckets else TRACK_BATCH)

    def bucket_of(self, key: str) -> str:
        return bucket_name(bucket_index(key, self.buckets), self.buckets)

    def apply(self, assets: list) -> list:
        """The assets with every per-track spec on this partitioning (unchanged per track)."""
        if not self.buckets:
            return list(assets)
        out = []
        for a in assets:
            if not isinstance(a, dg.AssetsDefinition) or not any(
                s.partitions_def == tracks_partitions for s in a.specs
            ):
                out.append(a)
                continue
            swapped = a.map_asset_specs(
                lambda s: (
                    s.replace_attributes(partitions_def=self.definition) if s.partitions_def == tracks_partitions else s
                )
            )
            out.append(swapped.with_attributes(backfill_policy=self.backfill_policy))
        return out


@dataclass
class RunTracks:
    """The tracks one run of a per-track asset covers."""

    tracks: list[TrackRef]
    missing: list[str]  # per track: partition keys whose file is gone (removed after the request)
    partitions: int
    partitioning: Partitioning

    def metadata(self) -> dict:
        if self.partitioning.buckets:
            return {"partitioning": "buckets", "buckets": self.partitions, "tracks": len(self.tracks)}
        return {"tracks": self.partitions, "missing_files": len(self.missing)}

    def log_missing(self, log) -> None:
        for key in self.missing:
            log.warning(f"track {key}: no file for this partition any more (removed from the library)")


def tracks_for_run(context: dg.AssetExecutionContext, scan: LibraryScan) -> RunTracks:
    """The tracks of this run's partitions: per track, the track of each key; per bucket, every
    track of the scan whose key hashes into one of the run's buckets."""
    keys = list(context.partition_keys)
    partitioning = Partitioning.of(context.assets_def.partitions_def)
    if partitioning.buckets:
        wanted = {int(k[1:]) for k in keys}
        n = partitioning.buckets
        tracks = [t for t in scan.tracks if bucket_index(t.key, n) in wanted]
        return RunTracks(tracks, [], len(keys), partitioning)
    by_key = scan.by_key()
    return RunTracks(
        [by_key[k] for k in keys if k in by_key], [k for k in keys if k not in by_key], len(keys), partitioning
    )


def materialized_buckets(instance: dg.DagsterInstance, track_keys) -> set[str]:
    """Buckets every per-track asset has materialized at least once."""
    sets = [set(instance.get_materialized_partitions(k)) for k in track_keys]
    return set.intersection(*sets) if sets else set()


def known_track_keys(manifest_path) -> set[str] | None:
    """Bucket mode's registry: the track keys of the last library manifest (the scan the tables
    were built from), or None when nothing was built yet. One column of one parquet file."""
    if not manifest_path.exists():
        return None
    return set(read_parquet(manifest_path, columns=["key"])["key"])


@dataclass
class PartitionPlan:
    """What to run for a library scan, and the partition changes that go with it."""

    sync: SyncPlan
    per_track: bool
    materialized: set[str]  # bucket mode: buckets every per-track asset has materialized

    def dynamic_requests(self) -> list:
        """Per track: the sensor's requests to register new partitions and drop removed ones."""
        if not self.per_track:
            return []
        requests = [tracks_partitions.build_add_request(chunk) for chunk in register_chunks(self.sync.to_add)]
        if self.sync.to_remove:
            requests.append(tracks_partitions.build_delete_request(self.sync.to_remove))
        return requests

    def apply(self, instance: dg.DagsterInstance) -> None:
        """Per track: register and drop the partitions on ``instance`` directly (``build``)."""
        if not self.per_track:
            return
        for key in self.sync.to_remove:
            instance.delete_dynamic_partition(tracks_partitions.name, key)
        for chunk in register_chunks(self.sync.to_add):
            instance.add_dynamic_partitions(tracks_partitions.name, chunk)


def plan_partitions(
    instance: dg.DagsterInstance,
    partitioning: Partitioning,
    scan: LibraryScan,
    needs_run,
    track_keys,
    known: set[str] | None = None,
    skip_buckets: set[str] = frozenset(),
) -> PartitionPlan:
    """The one planner of the build and the sensor. Per track: the registered partitions against
    the scan. Per bucket: nothing is registered; ``known`` (the last manifest's keys) are the known
    tracks, and buckets with tracks that were never materialized (first build, a switch of mode)
    run too, except ``skip_buckets`` (already requested)."""
    if not partitioning.buckets:
        registered = list(instance.get_dynamic_partitions(tracks_partitions.name))
        return PartitionPlan(plan_sync(scan, registered, needs_run, TRACK_BATCH), True, set())
    done = materialized_buckets(instance, track_keys)
    waiting = set()
    if len(done) < partitioning.buckets:  # some bucket was never materialized: is it one with tracks?
        waiting = {partitioning.bucket_of(t.key) for t in scan.tracks} - done
    sync = plan_buckets(
        scan,
        known,
        needs_run,
        partitioning.buckets,
        TRACK_BATCH,
        partitioning.buckets_per_run,
        also=waiting - set(skip_buckets),
    )
    return PartitionPlan(sync, False, done)

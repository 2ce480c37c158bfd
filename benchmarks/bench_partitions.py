"""Per-track partitions against hash buckets on a simulated catalogue of N tracks.

    python benchmarks/bench_partitions.py [--sizes 10000,100000,1000000] [--instance-sizes 10000,100000]
                                          [--files-sizes 10000,100000] [--buckets 4096] [--work DIR]

The catalogue is simulated: N synthetic tracks — real track keys from relative paths
``label/artist/track.flac``, random content hashes — and no audio. Each part measures both
partitionings side by side in the same run; the per-track mode is the baseline.

1. ``--sizes``: the planner and the library sensor's tick on a real Dagster instance (SQLite with
   the shipped batching event log), the listing handed to the sensor as it is (so the tick is
   what the partitioning itself costs). Per track: the first tick and the registration of N
   dynamic partitions it asks for, a tick with nothing new (reads the N registered partitions),
   a tick with one new file. Per bucket: the same ticks against an N-row library manifest and
   an instance where every bucket was materialized.
2. ``--instance-sizes``: Dagster itself with N partitions: a run of 500 tracks (per track: a
   500-partition range of a no-op asset while N are registered; per bucket: the buckets that
   hold 500 tracks), and the partition status the asset page reads
   (``get_and_update_asset_status_cache_value``: cold, and after one more run) once all N
   partitions (or all buckets) are materialized.
3. ``--files-sizes``: the listing on real files: N empty audio files in a label/artist tree
   with a warm hash cache (walk + stat + keys + labels; nothing is read), each of the three
   per-track stores holding N empty result files; ``scan_library``, ``analysed_hashes`` and a
   whole sensor tick with the real resource, per mode.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import dagster as dg
from common import ORIGINAL_ENV  # noqa: F401  (sets one BLAS thread, puts the repo on sys.path)

from music_pipeline.artifacts import write_parquet
from music_pipeline.audio.scan import LibraryScan, TrackRef, track_key
from music_pipeline.audio.sync import bucket_of, plan_buckets, plan_sync
from music_pipeline.defs.partitions import TRACK_BATCH, Partitioning, register_chunks, tracks_partitions
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.sensors import build_library_sensor
from music_pipeline.layout import DataLayout

TRACK_ASSETS = [
    dg.AssetKey(k)
    for k in ("track_embedding", "track_difficulty", "mel_segments", "track_notes", "track_learned_embedding")
]
DAGSTER_YAML = Path(__file__).resolve().parents[1] / "music_pipeline" / "defs" / "dagster.yaml"


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def relpath(i: int) -> str:
    return f"label{i % 8}/artist{(i // 40) % 25000:05d}/track{i:07d}.flac"


def content(i: int) -> str:
    return hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest()


def synthetic_scan(n: int, root: Path = Path("/catalogue"), extra: int = 0) -> LibraryScan:
    tracks = []
    for i in range(n + extra):
        rel = relpath(i)
        tracks.append(
            TrackRef(
                track_key(rel),
                rel,
                str(root / rel),
                f"label{i % 8}",
                None,
                4_000_000,
                1_700_000_000_000_000_000 + i,
                content(i),
            )
        )
    return LibraryScan(root, tracks, [])


def fresh_instance(home: Path) -> dg.DagsterInstance:
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML.read_text())
    os.environ["DAGSTER_HOME"] = str(home)  # the shipped event log lives under DAGSTER_HOME, like `build`'s
    return dg.DagsterInstance.from_config(str(home))


class SimulatedListing(MusicPipelineResource):
    """The resource with the scan and the stores' answer given (part 1: the listing is not timed)."""

    def scan(self) -> LibraryScan:
        return LISTING["scan"]

    def analysed_hashes(self, retry_failed: bool = False) -> set[str]:
        return LISTING["analysed"]


LISTING: dict = {}


def tick(sensor, instance, pipeline, cursor):
    ctx = dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline}, cursor=cursor)
    result, seconds = timed(sensor, ctx)
    return result, ctx.cursor, seconds


def n_requests(result) -> int:
    return len(result.run_requests) if isinstance(result, dg.SensorResult) else 0


def materialize_all_buckets(instance, buckets: int) -> float:
    """One no-op run over every bucket for the five per-track asset keys (as after a full ingest)."""
    partitions = Partitioning(buckets).definition

    @dg.multi_asset(specs=[dg.AssetSpec(k, partitions_def=partitions) for k in TRACK_ASSETS], partitions_def=partitions)
    def noop_tracks():
        for k in TRACK_ASSETS:
            yield dg.MaterializeResult(asset_key=k)

    keys = partitions.get_partition_keys()
    t0 = time.perf_counter()
    result = dg.materialize(
        [noop_tracks],
        instance=instance,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
    assert result.success
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------- part 1


def part_planner(sizes: list[int], buckets: int, work: Path) -> list[dict]:
    rows = []
    for n in sizes:
        gc.collect()
        before = rss_mb()
        scan, t_make = timed(synthetic_scan, n, extra=1)
        new_track = scan.tracks.pop()
        listing_mb = rss_mb() - before
        analysed = {t.content_hash for t in scan.tracks}
        keys = [t.key for t in scan.tracks]
        grown = LibraryScan(scan.root, scan.tracks + [new_track], [])
        print(f"\n== N = {n:,}: synthetic listing built in {t_make:.1f} s, {listing_mb:.0f} MB resident", flush=True)
        done = lambda t, analysed=analysed: t.content_hash not in analysed  # bound now: `del analysed` ends the loop

        # the pure planners
        _, p_track_noop = timed(plan_sync, scan, keys, done, TRACK_BATCH)
        _, p_track_new = timed(plan_sync, grown, keys, done, TRACK_BATCH)
        known = set(keys)
        part = Partitioning(buckets)
        _, p_bucket_noop = timed(plan_buckets, scan, known, done, buckets, TRACK_BATCH, part.buckets_per_run)
        plan, p_bucket_new = timed(plan_buckets, grown, known, done, buckets, TRACK_BATCH, part.buckets_per_run)
        assert plan.buckets == [bucket_of(new_track.key, buckets)]
        # when some bucket was never materialized
        _, t_bucket_all = timed(lambda part=part, keys=keys: {part.bucket_of(k) for k in keys})

        # per track: the sensor on a real instance
        instance = fresh_instance(work / f"home_tracks_{n}")
        data = work / f"data_{n}"
        shutil.rmtree(data, ignore_errors=True)
        pipeline = SimulatedListing(data_dir=str(data), library_dir=str(work))
        LISTING.update(scan=scan, analysed=set())  # first tick: nothing analysed, nothing registered
        sensor = build_library_sensor(Partitioning(), TRACK_ASSETS)
        first, _cursor, s_track_first = tick(sensor, instance, pipeline, None)
        adds = [r for r in first.dynamic_partitions_requests if isinstance(r, dg.AddDynamicPartitionsRequest)]
        t_register = sum(
            timed(instance.add_dynamic_partitions, tracks_partitions.name, list(a.partition_keys))[1] for a in adds
        )
        runs_first = n_requests(first)
        LISTING.update(analysed=analysed)
        _, _, s_track_noop = tick(sensor, instance, pipeline, None)
        LISTING.update(scan=grown)
        result, _, s_track_new = tick(sensor, instance, pipeline, None)
        assert n_requests(result) == 1
        _, t_get_partitions = timed(instance.get_dynamic_partitions, tracks_partitions.name)
        instance.dispose()

        # per bucket: manifest of N rows, every bucket materialized
        instance = fresh_instance(work / f"home_buckets_{n}")
        t_all_buckets = materialize_all_buckets(instance, buckets)
        sensor = build_library_sensor(Partitioning(buckets), TRACK_ASSETS)
        LISTING.update(scan=scan, analysed=set())
        first_b, _, s_bucket_first = tick(sensor, instance, pipeline, None)
        runs_first_b = n_requests(first_b)
        write_parquet(DataLayout(data).manifest_path, scan.to_frame())
        LISTING.update(analysed=analysed)
        result, _, s_bucket_noop = tick(sensor, instance, pipeline, None)
        assert isinstance(result, dg.SkipReason), result
        LISTING.update(scan=grown)
        result, _, s_bucket_new = tick(sensor, instance, pipeline, None)
        assert n_requests(result) == 1
        from music_pipeline.defs.partitions import known_track_keys

        _, t_manifest = timed(known_track_keys, DataLayout(data).manifest_path)
        instance.dispose()
        shutil.rmtree(data, ignore_errors=True)
        row = {
            "n": n,
            "listing_mb": listing_mb,
            "plan_track_noop": p_track_noop,
            "plan_track_new": p_track_new,
            "plan_bucket_noop": p_bucket_noop,
            "plan_bucket_new": p_bucket_new,
            "bucket_of_all": t_bucket_all,
            "tick_track_first": s_track_first,
            "register": t_register,
            "runs_first": runs_first,
            "tick_track_noop": s_track_noop,
            "tick_track_new": s_track_new,
            "get_partitions": t_get_partitions,
            "tick_bucket_first": s_bucket_first,
            "runs_first_b": runs_first_b,
            "tick_bucket_noop": s_bucket_noop,
            "tick_bucket_new": s_bucket_new,
            "manifest_keys": t_manifest,
            "materialize_buckets": t_all_buckets,
        }
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        rows.append(row)
        del scan, grown, analysed, keys, known
    return rows


# ------------------------------------------------------------------------------------- part 2


def part_instance(sizes: list[int], buckets: int, work: Path) -> list[dict]:
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    rows = []
    for n in sizes:
        keys = [track_key(relpath(i)) for i in range(n)]
        print(f"\n== instance with N = {n:,} partitions", flush=True)
        out = {"n": n}
        for mode in ("tracks", "buckets"):
            part = Partitioning(0 if mode == "tracks" else buckets)
            partitions = part.definition
            instance = fresh_instance(work / f"home_{mode}_{n}")
            if mode == "tracks":
                for chunk in register_chunks(keys):
                    instance.add_dynamic_partitions(tracks_partitions.name, chunk)

            @dg.asset(key=TRACK_ASSETS[0], partitions_def=partitions)
            def noop():
                return dg.MaterializeResult()

            def run(start, end, instance=instance):
                result, seconds = timed(
                    dg.materialize,
                    [noop],
                    instance=instance,
                    tags={"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end},
                )
                assert result.success
                return seconds

            all_keys = keys if mode == "tracks" else partitions.get_partition_keys()  # dynamic: in registration order
            if mode == "tracks":
                batch = (all_keys[0], all_keys[TRACK_BATCH - 1])
            else:  # the buckets holding 500 tracks at this N
                per_bucket = max(1.0, n / buckets)
                span = max(1, min(part.buckets_per_run, round(TRACK_BATCH / per_bucket)))
                batch = (all_keys[0], all_keys[span - 1])
            out[f"{mode}_run500"] = run(*batch)
            out[f"{mode}_run_all"] = run(all_keys[0], all_keys[-1])  # every partition materialized
            _, out[f"{mode}_status_cold"] = timed(
                get_and_update_asset_status_cache_value, instance, TRACK_ASSETS[0], partitions
            )
            run(all_keys[-1], all_keys[-1])
            _, out[f"{mode}_status_after_run"] = timed(
                get_and_update_asset_status_cache_value, instance, TRACK_ASSETS[0], partitions
            )
            _, out[f"{mode}_materialized"] = timed(instance.get_materialized_partitions, TRACK_ASSETS[0])
            instance.dispose()
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}), flush=True)
        rows.append(out)
    return rows


# ------------------------------------------------------------------------------------- part 3


def build_files(n: int, root: Path, data: Path) -> None:
    """N empty audio files, a warm hash cache for them, and N empty results in each store."""
    from music_pipeline.audio.scan import HashCache
    from music_pipeline.features.extract import FeatureStore
    from music_pipeline.learned.store import LearnedStore
    from music_pipeline.notes.store import NotesStore

    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    cache = HashCache(DataLayout(data).hash_cache_path)
    made = set()
    for i in range(n):
        p = root / relpath(i)
        if p.parent not in made:
            p.parent.mkdir(parents=True, exist_ok=True)
            made.add(p.parent)
        p.touch()
        st = p.stat()
        cache.put(relpath(i), st.st_size, st.st_mtime_ns, content(i))
    cache.save({relpath(i) for i in range(n)})
    for store in (FeatureStore(data), NotesStore(data), LearnedStore(data)):
        folder = store.path(content(0)).parent
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (folder / f"{content(i)}.npz").touch()


def part_files(sizes: list[int], buckets: int, work: Path) -> list[dict]:
    from music_pipeline.audio.scan import HashCache, scan_library

    rows = []
    for n in sizes:
        root, data = work / f"files_{n}", work / f"files_data_{n}"
        t_build = timed(build_files, n, root, data)[1]
        print(f"\n== {n:,} real empty files (+3 × {n:,} store files) made in {t_build:.0f} s", flush=True)
        pipeline_kwargs = {"data_dir": str(data), "library_dir": str(root), "workers": 1}
        out = {"n": n}
        _, out["hash_cache_load"] = timed(HashCache, DataLayout(data).hash_cache_path)
        scan, out["scan"] = timed(scan_library, root, DataLayout(data).hash_cache_path)
        assert len(scan.tracks) == n and all(t.content_hash for t in scan.tracks)
        analysed, out["analysed_hashes"] = timed(MusicPipelineResource(**pipeline_kwargs).analysed_hashes)
        assert len(analysed) == n
        write_parquet(DataLayout(data).manifest_path, scan.to_frame())
        keys = [t.key for t in scan.tracks]
        del scan
        for mode in ("tracks", "buckets"):
            part = Partitioning(0 if mode == "tracks" else buckets)
            instance = fresh_instance(work / f"home_files_{mode}_{n}")
            if mode == "tracks":
                for chunk in register_chunks(keys):
                    instance.add_dynamic_partitions(tracks_partitions.name, chunk)
            else:
                materialize_all_buckets(instance, buckets)
            sensor = build_library_sensor(part, TRACK_ASSETS)
            pipeline = MusicPipelineResource(**pipeline_kwargs, partitions=mode, buckets=part.buckets)
            result, _, out[f"tick_{mode}_noop"] = tick(sensor, instance, pipeline, None)
            assert isinstance(result, dg.SkipReason), result
            instance.dispose()
        rows.append(out)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}), flush=True)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)
    return rows


# ------------------------------------------------------------------------------------- report


def fmt(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s"


def report(planner, instance_rows, files, buckets):
    if planner:
        print(
            f"\n### 1. planner and sensor tick on a simulated listing (buckets: {buckets}; per-track mode is the baseline)"
        )
        print(
            "| N | plan, nothing new: per track / bucket | plan, one new file | tick, nothing new | tick, one new file | first tick: per track (+ registering N partitions) / bucket | runs requested first | listing in memory |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in planner:
            print(
                f"| {r['n']:,} | {fmt(r['plan_track_noop'])} / {fmt(r['plan_bucket_noop'])} | {fmt(r['plan_track_new'])} / {fmt(r['plan_bucket_new'])} "
                f"| {fmt(r['tick_track_noop'])} / {fmt(r['tick_bucket_noop'])} ({r['tick_track_noop'] / r['tick_bucket_noop']:.1f}×) "
                f"| {fmt(r['tick_track_new'])} / {fmt(r['tick_bucket_new'])} ({r['tick_track_new'] / r['tick_bucket_new']:.1f}×) "
                f"| {fmt(r['tick_track_first'])} (+{fmt(r['register'])}) / {fmt(r['tick_bucket_first'])} | {r['runs_first']} / {r['runs_first_b']} | {r['listing_mb']:.0f} MB |"
            )
        print(
            "details: reading the N registered partitions (per track): "
            + ", ".join(f"{r['n']:,}: {fmt(r['get_partitions'])}" for r in planner)
        )
        print(
            "         reading the manifest's keys (per bucket): "
            + ", ".join(f"{r['n']:,}: {fmt(r['manifest_keys'])}" for r in planner)
        )
        print(
            "         bucket of every track (only while a bucket holding tracks was never materialized): "
            + ", ".join(f"{r['n']:,}: {fmt(r['bucket_of_all'])}" for r in planner)
        )
    if instance_rows:
        print("\n### 2. Dagster with N partitions (a no-op asset; per track / per bucket)")
        print(
            "| N | run of 500 tracks | run over every partition | asset page status, cold | status after one more run | materialized partitions query |"
        )
        print("|---|---|---|---|---|---|")
        for r in instance_rows:
            print(
                f"| {r['n']:,} | {fmt(r['tracks_run500'])} / {fmt(r['buckets_run500'])} | {fmt(r['tracks_run_all'])} / {fmt(r['buckets_run_all'])} "
                f"| {fmt(r['tracks_status_cold'])} / {fmt(r['buckets_status_cold'])} | {fmt(r['tracks_status_after_run'])} / {fmt(r['buckets_status_after_run'])} "
                f"| {fmt(r['tracks_materialized'])} / {fmt(r['buckets_materialized'])} |"
            )
    if files:
        print("\n### 3. the listing on real (empty) files, and a whole sensor tick with nothing new")
        print(
            "| N | hash cache load | scan_library (warm cache) | analysed_hashes (3 stores) | whole tick: per track / bucket |"
        )
        print("|---|---|---|---|---|")
        for r in files:
            print(
                f"| {r['n']:,} | {fmt(r['hash_cache_load'])} | {fmt(r['scan'])} | {fmt(r['analysed_hashes'])} | {fmt(r['tick_tracks_noop'])} / {fmt(r['tick_buckets_noop'])} |"
            )


def sizes_arg(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()] if text else []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000", help="part 1: simulated listing sizes")
    ap.add_argument("--instance-sizes", default="10000,100000", help="part 2: partitions in a real instance")
    ap.add_argument("--files-sizes", default="10000,100000", help="part 3: real empty files ('' skips)")
    ap.add_argument("--buckets", type=int, default=4096)
    ap.add_argument("--work", default="data/bench_partitions")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(work / "home_default")
    (work / "home_default").mkdir(exist_ok=True)
    print(f"python {sys.version.split()[0]}, dagster {dg.__version__}, {os.cpu_count()} cores, work dir {work}")
    planner = part_planner(sizes_arg(args.sizes), args.buckets, work)
    instance_rows = part_instance(sizes_arg(args.instance_sizes), args.buckets, work)
    files = part_files(sizes_arg(args.files_sizes), args.buckets, work)
    report(planner, instance_rows, files, args.buckets)


if __name__ == "__main__":
    main()

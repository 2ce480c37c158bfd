"""What an object-store data directory costs per track, against a local one, in the same run.

Writes and reads N per-track feature files (the real npz layout: 641 floats, descriptors and
3×128×128 float16 segments), then the embeddings table, through ``music_pipeline.artifacts``:
once on local disk (the baseline), once on an S3 endpoint. By default the endpoint is moto's
server started on 127.0.0.1 (an S3 API with no network between: it measures the protocol and
client cost, not a real network); ``--endpoint URL`` measures an existing one (MinIO, Ceph).

    python benchmarks/bench_storage.py --tracks 200
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the checkout on sys.path)
import numpy as np
import pandas as pd

from music_pipeline.artifacts import read_parquet, write_parquet
from music_pipeline.audio.scan import LibraryScan, TrackRef
from music_pipeline.difficulty.audio_descriptors import DESCRIPTOR_NAMES
from music_pipeline.features.embedding import EMBEDDING_DIM, FEATURE_NAMES
from music_pipeline.features.extract import FeatureStore, TrackFeatures
from music_pipeline.features.tables import LibraryTables, build_tables
from music_pipeline_tests.system import S3Server


def _features(rng: np.random.Generator) -> TrackFeatures:
    return TrackFeatures(
        embedding=rng.standard_normal(EMBEDDING_DIM),
        descriptors={n: float(rng.random()) for n in DESCRIPTOR_NAMES},
        segments=rng.standard_normal((3, 128, 128)).astype(np.float16),
        duration_s=180.0,
        source_sr=44100,
        source_channels=2,
        compute_seconds=1.0,
    )


def run(data_dir: str, n: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    store = FeatureStore(data_dir)
    hashes = [f"{i:064x}" for i in range(n)]
    feats = [_features(rng) for _ in range(min(n, 20))]
    t0 = time.perf_counter()
    for i, h in enumerate(hashes):
        store.save(h, feats[i % len(feats)])
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    analysed = sum(store.is_analysed(h) for h in hashes)  # two file checks per track
    check_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    listed = store.analysed_hashes()  # what the sensor and build use: one listing
    list_s = time.perf_counter() - t0
    assert listed == set(hashes)
    t0 = time.perf_counter()
    rows = [store.load(h).embedding for h in hashes]
    read_s = time.perf_counter() - t0
    assert analysed == n and len(rows) == n
    table = pd.DataFrame(np.vstack(rows), columns=FEATURE_NAMES)
    table.insert(0, "key", hashes)
    dest = f"{data_dir.rstrip('/')}/tables/embeddings.parquet"
    t0 = time.perf_counter()
    write_parquet(dest, table)
    back = read_parquet(dest)
    table_s = time.perf_counter() - t0
    assert len(back) == n
    # refreshing the library tables after one new track: from scratch, and reusing the previous rows
    scan = LibraryScan(
        Path("/library"),
        [
            TrackRef(f"k{i}", f"t{i}.flac", f"/library/t{i}.flac", "x", None, 1, 1, h, None)
            for i, h in enumerate(hashes)
        ],
        [],
    )
    t0 = time.perf_counter()
    fresh = build_tables(scan, store)
    scratch_s = time.perf_counter() - t0
    previous = LibraryTables(fresh.embeddings.iloc[:-1], fresh.descriptors.iloc[:-1], fresh.skipped, [])
    t0 = time.perf_counter()
    again = build_tables(scan, store, previous)
    reuse_s = time.perf_counter() - t0
    assert again.files_read == 1 and len(again.embeddings) == n
    return {
        "write ms/track": 1e3 * write_s / n,
        "is_analysed ms/track": 1e3 * check_s / n,
        "listing ms/track": 1e3 * list_s / n,
        "read ms/track": 1e3 * read_s / n,
        "table write+read s": table_s,
        "refresh +1, scratch s": scratch_s,
        "refresh +1, reuse s": reuse_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=200)
    ap.add_argument("--endpoint", help="an existing S3 endpoint (default: start moto's server on 127.0.0.1)")
    ap.add_argument("--bucket", default="bench-storage")
    args = ap.parse_args()

    import fsspec.config
    import s3fs

    server = None
    if args.endpoint is None:
        server = S3Server(Path(tempfile.gettempdir()) / "bench_storage_moto.log").start()
        server.configure_here()
    else:
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        fsspec.config.conf.setdefault("s3", {})["endpoint_url"] = args.endpoint
    fs = s3fs.S3FileSystem()
    if not fs.exists(args.bucket):
        fs.mkdir(args.bucket)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = run(tmp, args.tracks)
        remote = run(f"s3://{args.bucket}/run-{int(time.time())}", args.tracks)
    finally:
        if server is not None:
            server.stop()
    print(
        f"{args.tracks} feature files ({'moto on loopback' if server else args.endpoint}) — local disk is the baseline"
    )
    print(f"{'':22s}{'local':>10s}{'s3':>10s}{'ratio':>8s}")
    for k in local:
        print(f"{k:22s}{local[k]:10.2f}{remote[k]:10.2f}{remote[k] / local[k]:8.1f}×")


if __name__ == "__main__":
    main()

"""Issue 6: the scale-out profile on real servers — PostgreSQL storage, a Redis broker, two
Celery workers and the artifacts in an S3 bucket, all on 127.0.0.1 — runs a small backfill;
every track's artifact exists exactly once, in the bucket, and can be queried from another process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from music_pipeline.synth import write_styled_library

from .system import free_port, require_debian, unavailable, wait_for_port

pytestmark = pytest.mark.slow
DEFS = Path(__file__).resolve().parents[1] / "music_pipeline" / "defs"


def _pg_bin(name: str) -> str:
    require_debian(["postgresql"], "psql")
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        unavailable(f"no {name} under /usr/lib/postgresql")
    return str(found[-1])


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb/postgres refuse to run as root: use Debian's `postgres` account when we are root
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class Services:
    def __init__(self, root: Path):
        self.root = root
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd, log_name, env=None, **kw) -> subprocess.Popen:
        log = open(self.root / log_name, "w")  # noqa: SIM115 - the server's log: the child writes it all its life, and the handle closes when this process ends
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def stop(self):
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    redis = require_debian(["redis-server"], "redis-server")
    root = tmp_path_factory.mktemp("scale")
    services = Services(root)
    # pytest's temp dirs are private to root; the postgres account needs its own reachable folder
    pgroot = Path(tempfile.mkdtemp(prefix="music-pipeline-pg-"))
    os.chmod(pgroot, 0o755)
    pgdata, sockets = pgroot / "data", pgroot / "sock"
    pgdata.mkdir()
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(pgdata, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        _as_postgres_user([initdb, "-D", str(pgdata), "-U", "dagster", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    pg_port, redis_port = free_port(), free_port()
    pg = services.start(
        _as_postgres_user(
            [
                postgres,
                "-D",
                str(pgdata),
                "-p",
                str(pg_port),
                "-k",
                str(sockets),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ]
        ),
        "postgres.log",
    )
    rd = services.start(
        [redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], "redis.log"
    )
    try:
        wait_for_port(pg_port, 60, pg)
        wait_for_port(redis_port, 30, rd)
        psql = _pg_bin("psql")
        for _ in range(30):
            if (
                subprocess.run(
                    [
                        psql,
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(pg_port),
                        "-U",
                        "dagster",
                        "-d",
                        "postgres",
                        "-c",
                        "CREATE DATABASE dagster",
                    ],
                    capture_output=True,
                    check=False,
                ).returncode
                == 0
            ):
                break
            time.sleep(1)
        yield services, pg_port, redis_port
    finally:
        services.stop()
        shutil.rmtree(pgroot, ignore_errors=True)


def test_backfill_through_two_celery_workers(servers, s3_server, tmp_path):
    services, pg_port, redis_port = servers
    lib, home = tmp_path / "lib", tmp_path / "home"
    data = s3_server.make_bucket("scale-out") + "/data"  # shared by every worker, no common disk needed
    write_styled_library(lib, per_style=2, seconds=6.0)  # 8 tracks
    home.mkdir()
    shutil.copy(DEFS / "dagster.scale-out.yaml", home / "dagster.yaml")
    broker = f"redis://127.0.0.1:{redis_port}/0"
    (tmp_path / "celery.yaml").write_text(f"execution:\n  config:\n    broker: {broker}\n    backend: {broker}\n")
    env = {
        **os.environ,
        **s3_server.env,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": f"postgresql+psycopg2://dagster@127.0.0.1:{pg_port}/dagster",
        "MUSIC_PIPELINE_EXECUTOR": "celery",
        "MUSIC_PIPELINE_CELERY_BROKER": broker,
        "MUSIC_PIPELINE_DATA": data,
        "MUSIC_LIBRARY": str(lib),
        "MUSIC_PIPELINE_WORKERS": "1",
    }
    # what an operator does once on a new database: create the schema before anything uses it
    migrate = subprocess.run(
        ["dagster", "instance", "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    celery = [shutil.which("dagster-celery") or "dagster-celery"]
    for name in ("w1", "w2"):
        services.start(
            [
                *celery,
                "worker",
                "start",
                "-A",
                "dagster_celery.app",
                "-y",
                str(tmp_path / "celery.yaml"),
                "-n",
                name,
                "--",
                "-c",
                "1",
            ],
            f"worker_{name}.log",
            env=env,
            cwd=tmp_path,
        )

    # register the partitions in PostgreSQL the way the sensor does, then one run per batch of 2
    keys = _register_partitions(env)
    assert len(keys) == 8
    batches = [(keys[i], keys[i + 1]) for i in range(0, 8, 2)]
    runs = []
    for start, end in batches:
        tags = json.dumps({"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end})
        runs.append(
            subprocess.Popen(
                [
                    "dagster",
                    "job",
                    "execute",
                    "-m",
                    "music_pipeline.definitions",
                    "-j",
                    "ingest_tracks",
                    "--tags",
                    tags,
                ],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [r.communicate(timeout=900)[0] for r in runs]
    for r, out in zip(runs, outputs, strict=True):
        assert r.returncode == 0, out[-3000:]

    # every track's features exist exactly once, in the bucket, and every partition was
    # materialized exactly once
    objects = s3_server.filesystem().find("scale-out/data")
    npz = [o for o in objects if o.startswith("scale-out/data/features/") and o.endswith(".npz")]
    assert len(npz) == 8 and len({o.rsplit("/", 1)[1] for o in npz}) == 8, objects
    assert not any(o.rsplit("/", 1)[1].startswith(".") for o in objects), "temporary files left in the bucket"
    assert not (tmp_path / "data").exists()
    counts = _materialization_counts(env)
    assert counts == {k: 1 for k in keys}, counts
    # the work really went through both Celery workers
    for name in ("w1", "w2"):
        log = (services.root / f"worker_{name}.log").read_text()
        assert "succeeded" in log, f"worker {name} ran no task:\n{log[-2000:]}"
    # the library tables and the similarity index the workers wrote serve a query from elsewhere
    from music_pipeline.artifacts import read_parquet

    table = read_parquet(data + "/tables/embeddings.parquet", columns=["key", "relpath"])
    assert sorted(table["key"]) == sorted(keys)
    query = table["relpath"].iloc[0]
    proc = subprocess.run(
        ["music-pipeline", "similar", "--data", data, "-n", "3", "--json", query],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["query"]["relpath"] == query and len(answer["results"]) == 3, answer
    assert {r["track"] for r in answer["results"]} <= set(keys) - {answer["query"]["track"]}


def _register_partitions(env) -> list[str]:
    code = (
        "import dagster as dg\n"
        "from music_pipeline.defs.resources import MusicPipelineResource\n"
        "keys=[t.key for t in MusicPipelineResource().scan().tracks]\n"
        "dg.DagsterInstance.get().add_dynamic_partitions('tracks', keys)\n"
        "print('\\n'.join(keys))\n"
    )
    return _python(code, env).split()


def _materialization_counts(env) -> dict[str, int]:
    code = (
        "import collections, dagster as dg, json\n"
        "recs=dg.DagsterInstance.get().fetch_materializations(dg.AssetKey('track_embedding'), limit=10000).records\n"
        "print(json.dumps(collections.Counter(r.partition_key for r in recs)))\n"
    )
    return json.loads(_python(code, env).strip().splitlines()[-1])


def _python(code: str, env) -> str:
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout

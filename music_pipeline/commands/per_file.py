"""The per-file loop every file-taking command shares: analyse each file, report failures
(stderr, plus a JSON error object with --json) without stopping, exit non-zero if any failed."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator


class PerFile:
    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.failed = 0

    def fail(self, file: str, exc: Exception) -> None:
        self.failed += 1
        print(f"error: {exc}", file=sys.stderr)
        if self.as_json:
            print(json.dumps({"file": file, "error": getattr(exc, "reason", str(exc))}))

    def features(self, files: list[str]) -> Iterator[tuple[str, object]]:
        """(file, TrackFeatures) for each file that decodes; the others are reported and skipped."""
        from threadpoolctl import threadpool_limits

        from music_pipeline.audio.decode import AudioError
        from music_pipeline.features.extract import extract_features

        # one file at a time: its matrix products are too small for BLAS threads, which only spin
        # (about a quarter more CPU per file with two threads on a busy 2-core machine)
        with threadpool_limits(limits=1):
            for f in files:
                try:
                    yield f, extract_features(f)
                except AudioError as exc:
                    self.fail(f, exc)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

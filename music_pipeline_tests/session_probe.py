"""For the warm-session test, kept out of the package: a stand-in for ``store.run_notes_job`` that
reports which process ran the track and whether that process's onnxruntime session was already
open when the track arrived. The spawned workers import this module by name."""

import os

from music_pipeline.notes import store


def probed_run_notes_job(job):
    warm = store._TRANSCRIBER is not None and store._TRANSCRIBER._session is not None
    outcome = store.run_notes_job(job)
    return os.getpid(), warm, id(store._TRANSCRIBER.session), outcome.status

"""Keep native libraries' chatter out of what a person reads; ``--verbose`` lets it through.

TensorFlow 2.21 logs through absl's C++ logging straight to file descriptor 2 (``E0000 …
node_def_util.cc … NodeDef mentions attribute``, ``WARNING: All log messages before
absl::InitializeLog() …``, the cpu_feature_guard banner); libmpg123 inside libsndfile prints
``Note: Illegal Audio-MPEG-Header`` lines the same way. What was found to work:

- ``quiet_environment()`` before TensorFlow is imported: ``TF_CPP_MIN_LOG_LEVEL=3`` (the old
  setting, 2, hides only INFO and WARNING, so the ``E0000`` lines still printed), and
  ``load_tensorflow()`` where our code first needs TensorFlow: fd 2 goes to a temporary file while
  ``tensorflow`` itself is imported, when the oneDNN banner (which ignores the log level) prints.
  (Turning oneDNN off with ``TF_ENABLE_ONEDNN_OPTS=0`` also silences it, but made the learned
  embedding 2.3× slower.) With both, a Keras fit with validation data and class weights printed no
  C++ line (``test_progress.py`` checks it).
- ``quiet_python_logs()``: the TensorFlow/absl Python loggers (tf.function retracing warnings)
  at ERROR.
- ``stderr_to_file(path)``: because any native library may still write to fd 2, ``build`` and
  ``demo`` point fd 2 of their process (and of every child started meanwhile: extraction workers)
  at a build log and write what the user should see to a stream on the original stderr.
- ``captured_stderr()``: fd 2 goes to a temporary file around one short call (a decoder opening an
  mp3) and the text is handed back instead of printed.

Verbose mode is the environment variable ``MUSIC_PIPELINE_VERBOSE=1`` (set by ``--verbose`` and
inherited by child processes): nothing is silenced. Nothing here imports Dagster or TensorFlow.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from music_pipeline.settings import verbose

TF_QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}
NOISY_PYTHON_LOGGERS = ("tensorflow", "absl", "h5py", "numba")


def quiet_environment() -> None:
    """Environment defaults that must be in place before TensorFlow is imported (a user's own
    setting wins). Inherited by child processes. Verbose mode leaves TensorFlow's defaults."""
    if verbose():
        return
    for k, v in TF_QUIET_ENV.items():
        os.environ.setdefault(k, v)


def load_tensorflow() -> None:
    """Import TensorFlow once with fd 2 captured: its oneDNN banner ignores the log level and is
    printed exactly while ``tensorflow`` is imported. Call before ``import keras``/``tensorflow``
    in code a person runs from a terminal; later imports are free. Verbose mode shows the banner."""
    if "tensorflow" in sys.modules or verbose():
        return
    with captured_stderr():
        import tensorflow  # noqa: F401


def quiet_python_logs() -> None:
    """Python-side warnings of TensorFlow/absl (e.g. "5 out of the last 5 calls … triggered
    tf.function retracing") at ERROR, unless verbose."""
    if verbose():
        return
    for name in NOISY_PYTHON_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def _open_append(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


@contextmanager
def stderr_to_file(path: str | os.PathLike) -> Iterator[TextIO]:
    """Send fd 2 (this process and children started meanwhile) to ``path`` (appended); yields a
    line-buffered text stream on the original stderr. Restores fd 2 afterwards."""
    path = Path(path)
    _flush(sys.stderr)
    saved = os.dup(2)
    fd = _open_append(path)
    os.dup2(fd, 2)
    os.close(fd)
    terminal = os.fdopen(
        os.dup(saved), "w", buffering=1, encoding=getattr(sys.__stderr__, "encoding", None) or "utf-8", errors="replace"
    )
    try:
        yield terminal
    finally:
        _flush(sys.stderr)
        terminal.close()
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Whatever is written to fd 2 meanwhile is collected (the list gets one string at exit)
    instead of printed. For short calls into chatty C libraries; verbose mode passes it through."""
    box: list[str] = []
    if verbose():
        yield box
        return
    with tempfile.TemporaryFile() as tmp:
        _flush(sys.stderr)
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            _flush(sys.stderr)
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.append(tmp.read().decode("utf-8", "replace"))


def _flush(stream) -> None:
    try:
        stream.flush()
    except (AttributeError, ValueError, OSError):
        pass

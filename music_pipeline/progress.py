"""Progress of the long phases (extraction, model training), through plain callbacks.

The core never imports Dagster or a terminal library; it reports, and whoever runs it decides
where reports go. How to plug a phase in:

**A per-track phase** (extraction, note transcription, a learned embedding):

    meter = progress.TrackMeter("notes", total=len(jobs), on_progress=report)
    ...                                   # after each track:
    meter.track_done(audio_seconds=duration)   # None when cached / failed

``TrackMeter`` emits a :class:`Progress` per track with tracks done/total, × real time (audio
seconds analysed per wall-clock second since the phase started) and an ETA.

**Training**: the training functions keep their ``on_progress: Callable[[str], None]`` and
report plain text; a text containing ``fold k/K``, ``epoch e/E``, ``candidate i/n`` … is read as
progress by :func:`parse_message`. For per-epoch reports inside Keras, add
``callbacks=[progress.keras_epochs()]`` to ``model.fit``: it reports a Progress (``training
e/E epochs · loss x``) to :func:`ambient`, the reporter of the Dagster step running now (or to
the callback you pass).

**In a Dagster asset**: ``report = progress.dagster_reporter(context.log.info)`` gives a
callback that takes a :class:`Progress` *or* a text. It writes periodic lines to the run log
(at most one every ``LOG_INTERVAL_S`` per phase, plus the first and the last; texts always) —
formatted by :func:`format_line` (``[progress] extract 12/45 tracks (27%) · 212× real time ·
ETA 0:38``) — and publishes every report to listeners in this process (:func:`listen`), which is
how ``music-pipeline build`` draws its bar for steps that run in its own process. Steps in other
processes reach the CLI through those run-log lines (:func:`parse_line` reads them back).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

LOG_INTERVAL_S = 15.0  # the run log gets one progress line per phase at most this often
ETA_AFTER = 3  # tracks done before an ETA is estimated
PREFIX = "[progress]"


@dataclass(frozen=True)
class Progress:
    phase: str  # "extract", "difficulty_cnn", … (an asset name where there is one)
    done: float
    total: float | None = None  # None: unknown
    unit: str = "steps"
    detail: str = ""  # "212× real time", "fold 2/5 · epoch 7/40"
    eta_s: float | None = None

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))

    @property
    def finished(self) -> bool:
        return self.total is not None and self.done >= self.total


ProgressCallback = Callable[[Progress], None]
Report = Callable[[Progress | str], None]


def format_duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_line(p: Progress) -> str:
    """One run-log line; :func:`parse_line` reads it back."""
    count = f"{p.done:g}/{p.total:g}" if p.total is not None else f"{p.done:g}"
    pct = f" ({100 * p.fraction:.0f}%)" if p.fraction is not None else ""
    parts = [f"{PREFIX} {p.phase} {count} {p.unit}{pct}"]
    if p.detail:
        parts.append(p.detail)
    if p.eta_s is not None and not p.finished:
        parts.append(f"ETA {format_duration(p.eta_s)}")
    return " · ".join(parts)


_LINE = re.compile(
    r"^\[progress\] (?P<phase>\S+) (?P<done>[\d.]+)(?:/(?P<total>[\d.]+))? (?P<unit>\S+)(?: \(\d+%\))?"
    r"(?P<rest>(?: · .*)?)$"
)
_ETA = re.compile(r"^ETA (?:(\d+):)?(\d+):(\d\d)$")


def parse_line(text: str) -> Progress | None:
    """The :class:`Progress` a :func:`format_line` line describes (None for any other text)."""
    m = _LINE.match(text.strip())
    if not m:
        return None
    details, eta = [], None
    for part in filter(None, m["rest"].split(" · ")):
        e = _ETA.match(part)
        if e:
            eta = int(e[1] or 0) * 3600 + int(e[2]) * 60 + int(e[3])
        else:
            details.append(part)
    total = float(m["total"]) if m["total"] else None
    return Progress(m["phase"], float(m["done"]), total, m["unit"], " · ".join(details), eta)


_STEP = re.compile(
    r"\b(fold|epoch|candidate|model|step|round|batch|comparator|track)s?\s+(\d+)\s*/\s*(\d+)", re.IGNORECASE
)


def parse_message(text: str) -> list[tuple[str, int, int]]:
    """``[(word, k, K), …]`` for every "fold 2/5", "epoch 7/40", "candidate 3/12" in a text,
    outermost first as written."""
    return [(m[1].lower(), int(m[2]), int(m[3])) for m in _STEP.finditer(text)]


def nested_fraction(text: str, inner: float | None = None) -> float | None:
    """How far a phase is by the counters its latest text names ("candidate 3/12 · fold 2/5" →
    (3 − 1 + (2 − 1)/5)/12), plus ``inner`` (0–1, e.g. the epochs done) of the innermost unit.
    None when there is nothing to go by."""
    counters = [(k, n) for _, k, n in parse_message(text) if n > 0 and 0 < k <= n]
    if not counters and inner is None:
        return None
    fraction, scale = 0.0, 1.0
    for k, n in counters:
        scale /= n
        fraction += (k - 1) * scale
    if inner is not None:
        fraction += min(max(inner, 0.0), 1.0) * scale
    return min(1.0, fraction)


class TrackMeter:
    """Counts tracks of a per-track phase and reports × real time and the ETA."""

    def __init__(
        self,
        phase: str,
        total: int,
        on_progress: ProgressCallback | Report | None,
        clock: Callable[[], float] = time.perf_counter,
        what: str = "",
    ):
        self.phase, self.total, self.what = phase, int(total), what  # what: e.g. the passes run per track
        self.on_progress = on_progress
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.audio_s = 0.0

    def track_done(self, audio_seconds: float | None = None) -> Progress:
        self.done += 1
        self.audio_s += float(audio_seconds or 0.0)
        p = self.snapshot()
        if self.on_progress:
            self.on_progress(p)
        return p

    def snapshot(self) -> Progress:
        elapsed = max(self.clock() - self.start, 1e-9)
        speed = f"{self.audio_s / elapsed:.0f}× real time" if self.audio_s > 0 else ""
        detail = " · ".join(filter(None, (self.what, speed)))
        # the first tracks carry the start-up (worker spawn, numba warm-up): no ETA from them alone
        eta = elapsed / self.done * (self.total - self.done) if self.done >= ETA_AFTER else None
        return Progress(self.phase, self.done, self.total, "tracks", detail, eta)


class LogLines:
    """A report callback writing to a line logger (``context.log.info``): Progress snapshots
    at most every ``interval_s`` per phase (first and last always), texts always."""

    def __init__(
        self,
        log: Callable[[str], None],
        interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.log, self.interval_s, self.clock = log, interval_s, clock
        self._last: dict[str, float] = {}

    def __call__(self, item: Progress | str) -> None:
        if isinstance(item, str):
            self.log(item)
            return
        now = self.clock()
        last = self._last.get(item.phase)
        if last is None or item.finished or now - last >= self.interval_s:
            self._last[item.phase] = now
            self.log(format_line(item))


# -- listeners in this process ------------------------------------------------------------------
_listeners: list[Report] = []
_lock = threading.Lock()


@contextmanager
def listen(callback: Report) -> Iterator[None]:
    """Receive every report published in this process while the block runs."""
    with _lock:
        _listeners.append(callback)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(callback)


def publish(item: Progress | str) -> None:
    with _lock:
        targets = list(_listeners)
    for cb in targets:
        try:
            cb(item)
        except Exception:  # noqa: BLE001, S110 - a broken display never stops the work it displays
            pass


def dagster_reporter(log: Callable[[str], None], interval_s: float = LOG_INTERVAL_S) -> Report:
    """What an asset passes as ``on_progress``: periodic run-log lines + in-process listeners."""
    lines = LogLines(log, interval_s)

    def report(item: Progress | str) -> None:
        lines(item)
        publish(item)

    return report


# -- the reporter of the step running now ---------------------------------------------------------
_ambient: Report | None = None
_ambient_provider: Callable[[], Report | None] | None = None


def set_ambient(report: Report | None) -> None:
    """A fixed reporter for :func:`ambient` (tests, scripts)."""
    global _ambient
    _ambient = report


def set_ambient_provider(provider: Callable[[], Report | None] | None) -> None:
    """How to find the reporter of whatever runs now; the Dagster layer registers one that
    returns the current step's ``dagster_reporter`` (None outside a step)."""
    global _ambient_provider
    _ambient_provider = provider


def ambient(item: Progress | str) -> None:
    """Report to the step running now (no-op when nothing is running)."""
    try:
        report = _ambient or (_ambient_provider() if _ambient_provider else None)
        if report is not None:
            report(item)
    except Exception:  # reporting progress must never cost the work it reports on
        logging.getLogger(__name__).debug("progress report failed", exc_info=True)


def keras_epochs(on_progress: Report | None = None, phase: str = "training"):
    """A Keras callback reporting a :class:`Progress` (``phase``, epoch e of E, the loss) after
    every epoch — throttled in the run log like any Progress, every epoch to listeners."""
    import keras

    say = on_progress or ambient

    class EpochProgress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            total = (self.params or {}).get("epochs")
            loss = (logs or {}).get("loss")
            detail = f"loss {loss:.3f}" if isinstance(loss, (int, float)) else ""
            say(Progress(phase, epoch + 1, float(total) if total else None, "epochs", detail))

    return EpochProgress()


def with_phase(p: Progress, phase: str) -> Progress:
    return replace(p, phase=phase)

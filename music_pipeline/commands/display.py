"""What `build`/`demo` show while they run: a progress bar on a terminal, periodic lines otherwise.

Fed with ``defs.runner.RunEvent``s. Extraction: tracks done/total over all batches, × real time
and the ETA. Training: models done/total, and for each model in training its latest report
("fold 2/5 · epoch 7/40"), which also moves the bar within that model. Everything goes to one
stream (the terminal's stderr, also when fd 2 is sent to the build log), so stdout carries only
the closing summary.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TextIO

from music_pipeline import progress

LINE_INTERVAL_S = 15.0  # without a terminal: a progress line per phase at most this often


class BuildDisplay:
    def __init__(self, stream: TextIO, tty: bool | None = None, workers: int | None = None):
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.workers = workers
        self.t0 = time.monotonic()
        self._lock = threading.RLock()
        self.bar = None
        self.bar_kind = None
        # extraction over several batch runs
        self.to_extract = 0
        self.extract_before = 0  # tracks finished in earlier batches
        self.extract_batch_total = 0
        self.extract_done = 0.0
        self.extract_t0: float | None = None
        self.extract_detail = ""
        self.extract_finished = False
        # training
        self.model_total = 0
        self.models_done = 0
        self.running: dict[str, dict] = {}  # step -> {"msg": latest text, "p": latest Progress}
        self.step_t0: dict[str, float] = {}
        self._last_line: dict[str, float] = {}
        self._last_text: dict[str, str] = {}
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True, name="build-display")
        if self.tty:
            self._ticker.start()

    # -- plain lines ----------------------------------------------------------------------------
    def _stamp(self) -> str:
        return f"[{progress.format_duration(time.monotonic() - self.t0)}]"

    def line(self, text: str) -> None:
        with self._lock:
            if self.bar is not None:
                self.bar.clear()
            self.stream.write(f"{self._stamp()} {text}\n" if not self.tty else f"{text}\n")
            self.stream.flush()
            if self.bar is not None:
                self.bar.refresh()

    def _throttled(self, key: str, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if text == self._last_text.get(key):
            return
        if force or now - self._last_line.get(key, -1e9) >= LINE_INTERVAL_S:
            self._last_line[key] = now
            self._last_text[key] = text
            self.line(text)

    # -- bars -----------------------------------------------------------------------------------
    def _open_bar(self, kind: str, total: float, desc: str) -> None:
        from tqdm import tqdm

        self._close_bar()
        self.bar_kind = kind
        self.bar = tqdm(
            total=total,
            desc=desc,
            file=self.stream,
            ncols=self._size()[0],
            nrows=self._size()[1],
            leave=True,
            mininterval=0.2,
            bar_format="{desc} {percentage:3.0f}%|{bar:24}| {unit} [{elapsed}]",
            unit="",
        )

    def _size(self) -> tuple[int, int]:
        """The terminal's (columns, lines); a pseudo-terminal without a size reports 0 × 0, with
        which tqdm draws nothing at all: then 100 × 24."""
        try:
            size = os.get_terminal_size(self.stream.fileno())
            columns, lines = size.columns, size.lines
        except (OSError, AttributeError, ValueError):
            columns, lines = 0, 0
        return (columns if columns >= 40 else 100), (lines if lines >= 2 else 24)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.bar_kind = None

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if self.bar is not None:
                    self._render()

    def _render(self) -> None:
        if self.bar_kind == "extract":
            done = self.extract_before + self.extract_done
            self.bar.n = min(done, self.bar.total)
            self.bar.unit = self._fit(self._extract_text(done))
        elif self.bar_kind == "models":
            for report in self.running.values():  # never backwards: reports restart per fold
                report["max"] = max(report.get("max", 0.0), self._fraction(report))
            within = sum(r["max"] for r in self.running.values())
            self.bar.n = min(self.models_done + within, self.bar.total)
            self.bar.unit = self._fit(self._models_text())
        self.bar.refresh()

    def _fit(self, text: str) -> str:
        room = max(20, self.bar.ncols - 50) if self.bar is not None and self.bar.ncols else 60
        return text if len(text) <= room else text[: room - 1] + "…"

    def _extract_text(self, done: float) -> str:
        total = max(self.to_extract, self.extract_before + self.extract_batch_total)
        eta = ""
        if self.extract_t0 is not None and done >= progress.ETA_AFTER:
            elapsed = time.monotonic() - self.extract_t0
            eta = f" · ETA {progress.format_duration(elapsed / done * max(total - done, 0))}"
        speed = f" · {self.extract_detail}" if self.extract_detail else ""
        return f"{done:.0f}/{total} tracks{speed}{eta}"

    @staticmethod
    def _fraction(report: dict) -> float:
        """How far a model is: its counters ("fold 2/5"), then the epochs inside the innermost."""
        p = report["p"]
        return progress.nested_fraction(report["msg"], p.fraction if p is not None else None) or 0.0

    @staticmethod
    def _report_text(report: dict, compact: bool = False) -> str:
        """The latest report of a model in training; compact (for the bar): its counters only."""
        msg = report["msg"]
        counters = progress.parse_message(msg)
        if compact and counters:
            parts = [" ".join(f"{word} {k}/{n}" for word, k, n in counters)]
        else:
            parts = [msg[:70]] if msg else []
        p = report["p"]
        if p is not None:
            count = f"{p.done:g}/{p.total:g}" if p.total is not None else f"{p.done:g}"
            unit = p.unit.removesuffix("s")
            parts.append(f"{unit} {count}" + (f" {p.detail}" if p.detail and not compact else ""))
        return " · ".join(parts)

    def _models_text(self) -> str:
        running = "; ".join(
            f"{step}: {text}" if (text := self._report_text(r, compact=True)) else step
            for step, r in self.running.items()
        )
        return f"{self.models_done}/{self.model_total} models" + (f" · {running}" if running else "")

    # -- events ---------------------------------------------------------------------------------
    def event(self, ev) -> None:
        with self._lock:
            getattr(self, f"_on_{ev.kind}", lambda _e: None)(ev)

    def _on_plan(self, ev) -> None:
        self.to_extract = int(ev.steps or 0)

    def _on_run_start(self, ev) -> None:
        if ev.run == "extract":
            if self.extract_t0 is None:
                self.extract_t0 = time.monotonic()
                who = f" in {self.workers} worker process{'es' if self.workers > 1 else ''}" if self.workers else ""
                self.line(f"analysing {self.to_extract or 'the new'} tracks{who} …")
            if self.tty and self.bar_kind != "extract":
                self._open_bar("extract", max(self.to_extract, 1), "extract ")
        elif ev.run == "models":
            self.model_total = int(ev.steps or 0)
            self.models_done = 0
            self.line(f"training {self.model_total} library models …")
            if self.tty:
                self._open_bar("models", max(self.model_total, 1), "training")
        elif ev.run == "tables":
            self.line("refreshing the library tables …")

    def _on_run_end(self, ev) -> None:
        if ev.run == "extract":
            self.extract_before += self.extract_batch_total
            self.extract_batch_total, self.extract_done = 0, 0.0
            if self.extract_before >= self.to_extract:
                self._finish_extract()
        elif ev.run == "models":
            if self.bar_kind == "models":
                self._render()
                self._close_bar()
            self.line(f"models: {self.models_done}/{self.model_total} trained" + ("" if ev.ok else " (with failures)"))

    def _finish_extract(self) -> None:
        if self.extract_finished:
            return
        self.extract_finished = True
        if self.bar_kind == "extract":
            self._render()
            self._close_bar()
        if self.extract_t0 is not None:
            took = progress.format_duration(time.monotonic() - self.extract_t0)
            speed = f", {self.extract_detail}" if self.extract_detail else ""
            done = self.extract_before + self.extract_done
            self.line(f"analysed {done:.0f} tracks in {took}{speed}")

    def _on_progress(self, ev) -> None:
        p = ev.progress
        if p.phase == "extract" and ev.run == "extract":
            self.extract_batch_total = int(p.total or 0)
            self.extract_done = max(self.extract_done, p.done) if p.done <= (p.total or p.done) else p.done
            if p.detail:
                self.extract_detail = p.detail
            done = self.extract_before + self.extract_done
            if self.tty:
                if self.bar is not None:
                    self._render()
            elif not self.extract_finished:
                self._throttled("extract", "extract " + self._extract_text(done))
            if p.finished and done >= self.to_extract and not self.extract_finished:
                self._finish_extract()
                self.line("updating the library tables, difficulty scores and similarity index …")
            return
        step = ev.step or self._only_running()
        if step is None:
            return
        self._report(step, p=p)

    def _only_running(self) -> str | None:
        # progress published in this process carries no step: it belongs to the step running now
        return next(iter(self.running)) if len(self.running) == 1 else None

    def _on_log(self, ev) -> None:
        if ev.step and ev.step in self.running:
            self._report(ev.step, msg=ev.text.strip().splitlines()[0][:120] if ev.text.strip() else "")

    def _report(self, step: str, msg: str | None = None, p=None) -> None:
        report = self.running.setdefault(step, {"msg": "", "p": None})
        if msg is not None:
            report["msg"], report["p"] = msg, None  # a new fold/candidate starts its epochs again
        if p is not None:
            report["p"] = p
        if self.tty:
            if self.bar is not None:
                self._render()
        elif msg is not None:
            self._throttled(step, f"  {step}: {msg}")
        elif p is not None:  # epochs on their own line: a message may name the fold just finished
            self._throttled(f"{step}/progress", f"  {step}: {self._report_text({'msg': '', 'p': p})}")

    def _on_step_start(self, ev) -> None:
        if ev.run != "models":
            return
        self.running[ev.step] = {"msg": "", "p": None}
        self.step_t0[ev.step] = time.monotonic()
        if not self.tty:
            self.line(f"  training {ev.step} …")
        elif self.bar is not None:
            self._render()

    def _on_step_end(self, ev) -> None:
        if ev.run != "models":
            return
        self.running.pop(ev.step, None)
        self.models_done += 1
        took = progress.format_duration(time.monotonic() - self.step_t0.pop(ev.step, time.monotonic()))
        self.line(f"  {ev.step} {'done' if ev.ok else 'FAILED'} ({took})")
        if self.bar is not None:
            self._render()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self.bar_kind == "extract" and self.extract_before < self.to_extract:
                self._close_bar()
            self._close_bar()

"""What each per-track model pass costs against its floor: the bare network forward pass.

    python benchmarks/bench_passes.py [FILE ...] [--minutes 1 4] [--rounds 5] [--sweep] [--pool]

On synthesized piano-like tracks (``notes/generate.py``, written as 44.1 kHz FLAC so decoding
resamples) or on the given files, one process, one thread per session, for each pass:

- ``decode + resample``: ``audio.decode.decode`` of the file to the pass's rate;
- ``forward (floor)``: the bare network in onnxruntime over the track's model input (all windows of
  the excerpts the budget picks), at the chosen batch size and session options, input ready;
- ``pass (run_notes_job)``: the pass as the build runs it in a worker: decode, loudness, windows,
  network, note creation, overtones, descriptors, the store's write;
- with ``--pool``: ``transcribe_many`` over 2 × cores copies of the longest track with one worker
  per core (as many as ``workers.pool_size`` grants), CPU of this process and its workers, worker
  start-up included;
- with ``--sweep``: the forward pass at batch sizes 1, 4, 8, 16, 32 and all windows, with each
  graph optimisation level, the memory arena off, and 2 intra-op threads with and without
  spin-waiting (the measurements behind ``transcribe.session_options`` and ``BATCH_WINDOWS``).

Every measured callable runs once per round, in an order that alternates between rounds, so all
rows see the same machine load; the median over rounds is printed. Figures are per CPU-second
(``time.process_time``, all threads of the process): × real time = audio seconds / CPU seconds,
of the analysed audio (what the model hears: at most the budget's 60 s) and of the whole track
(what a library pays). ``CPU / floor`` compares CPU per analysed second with the floor of the
same pass, track and run. ``same`` says whether a variant's activations are bit-identical to the
floor's. Run by hand; nothing here is timed in CI.

The learned embedding has the same three rows: the shared decode resampled to 16 kHz, both
taggers alone on the track's patches (the floor), and ``run_learned_job``. Another pass gets its
rows by adding a function to ``PASSES`` that returns ``Row``s (one of them named ``FLOOR``).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import common  # noqa: F401 - one BLAS/OpenMP thread before numpy loads, and the project on sys.path

FLOOR = "forward (floor)"


@dataclass
class Row:
    pass_name: str
    name: str
    run: Callable[[], object]
    track_s: float  # duration of the track(s) one call handles
    analysed_s: float  # audio the model hears in one call
    same: bool | None = None  # output bit-identical to the floor's (variants of the forward pass)
    children: bool = False  # CPU of reaped child processes counts too
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)


def piano_track(path: Path, seconds: float, seed: int) -> Path:
    import soundfile as sf

    from music_pipeline.notes.generate import PieceSpec, generate_piece, render

    if not path.exists():
        spec = PieceSpec(seconds=seconds, onsets_per_s=4, voices=3, chord_share=0.5, range_semitones=24, seed=seed)
        sf.write(path, render(generate_piece(spec), sr=44_100), 44_100, format="FLAC")
    return path


def notes_pass(tracks: list[Path], args) -> list[Row]:
    import numpy as np
    import onnxruntime as ort

    from music_pipeline.audio.decode import decode
    from music_pipeline.notes import basic_pitch_port as bp
    from music_pipeline.notes.store import NotesJob, run_notes_job, transcribe_many
    from music_pipeline.notes.transcribe import (
        BATCH_WINDOWS,
        SR,
        Transcriber,
        loudness_gain_db,
        model_path,
        plan_excerpts,
        session_options,
    )

    rows: list[Row] = []
    transcriber = Transcriber(threads=1)  # as a worker's
    data = tempfile.mkdtemp(prefix="bench_passes_")
    counter = iter(range(10**9))

    def windows_of(path: Path) -> np.ndarray:
        y = decode(path).y
        scaled = y * np.float32(10 ** (loudness_gain_db(y) / 20))
        return np.concatenate([bp.excerpt_windows(scaled, s, n)[0] for s, n in plan_excerpts(len(y))])

    def forward(session, windows, batch):
        out = [
            session.run([bp.NOTE_OUTPUT, bp.ONSET_OUTPUT], {bp.INPUT_NAME: windows[i : i + batch]})
            for i in range(0, len(windows), batch)
        ]
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])

    def session(threads=1, level=None, arena=True, spin=False):
        opts = session_options(threads, spin)
        if level is not None:
            opts.graph_optimization_level = level
        opts.enable_cpu_mem_arena = arena
        return ort.InferenceSession(str(model_path()), opts, providers=["CPUExecutionProvider"])

    def label(path: Path, seconds: float) -> str:
        return f"{path.name}, {seconds / 60:.3g} min" if args.files else f"{seconds / 60:.3g} min"

    def job(path: Path) -> NotesJob:
        return NotesJob(path.stem, str(path), path.name, f"bench{next(counter)}", data)  # never cached

    best = transcriber.session
    for path in tracks:
        seconds = decode(path).duration_s
        windows = windows_of(path)
        analysed = min(seconds, len(windows) * bp.WINDOW_HOP / SR)
        tag = label(path, seconds)
        rows.append(Row("notes", f"decode + resample [{tag}]", lambda p=path: decode(p), seconds, analysed))
        floor_out = forward(best, windows, BATCH_WINDOWS)
        rows.append(
            Row("notes", f"{FLOOR} [{tag}]", lambda w=windows: forward(best, w, BATCH_WINDOWS), seconds, analysed, True)
        )
        rows.append(
            Row(
                "notes",
                f"pass (run_notes_job) [{tag}]",
                lambda p=path: run_notes_job(job(p), transcriber=transcriber),
                seconds,
                analysed,
            )
        )
        if args.sweep and path == tracks[0]:
            variants = {f"batch {b}": (best, b) for b in (1, 8, 16, 32) if b != BATCH_WINDOWS}
            variants[f"batch all ({len(windows)})"] = (best, len(windows))
            levels = ort.GraphOptimizationLevel
            for name in ("ORT_ENABLE_EXTENDED", "ORT_ENABLE_BASIC", "ORT_DISABLE_ALL"):
                variants[name] = (session(level=getattr(levels, name)), BATCH_WINDOWS)
            variants["arena off"] = (session(arena=False), BATCH_WINDOWS)
            variants["2 threads"] = (session(threads=2), BATCH_WINDOWS)
            variants["2 threads, spin-wait"] = (session(threads=2, spin=True), BATCH_WINDOWS)
            for name, (s, b) in variants.items():
                out = forward(s, windows, b)
                same = all(np.array_equal(x, y) for x, y in zip(out, floor_out, strict=True))
                rows.append(
                    Row(
                        "notes",
                        f"  forward, {name} [{tag}]",
                        lambda s=s, b=b, w=windows: forward(s, w, b),
                        seconds,
                        analysed,
                        same,
                    )
                )
    if args.pool:
        from music_pipeline.workers import pool_size

        cores = len(os.sched_getaffinity(0))
        longest = max(tracks, key=lambda p: decode(p).duration_s)
        copies = 2 * cores
        n_workers = pool_size([str(longest)] * copies, cores)
        seconds = decode(longest).duration_s
        tag = label(longest, seconds)
        analysed = next(r.analysed_s for r in rows if r.name == f"{FLOOR} [{tag}]")
        rows.append(
            Row(
                "notes",
                f"transcribe_many, {n_workers} workers, {copies} tracks [{tag}]",
                lambda: transcribe_many([job(longest) for _ in range(copies)], workers=cores),
                seconds * copies,
                analysed * copies,
                children=True,
            )
        )
    return rows


def learned_pass(tracks: list[Path], args) -> list[Row]:
    """The learned embedding: the shared decode resampled to 16 kHz, both taggers alone on the
    track's patches (the floor: one onnxruntime call per tagger, one thread), and
    ``run_learned_job`` as a worker runs it (decode, resample, front end, networks, the store)."""
    from music_pipeline.audio.decode import SharedDecode, decode
    from music_pipeline.learned.musicnn import PATCH_SECONDS, SR, log_mel_patches
    from music_pipeline.learned.store import LearnedJob, _network, run_learned_job

    rows: list[Row] = []
    data = tempfile.mkdtemp(prefix="bench_passes_")
    counter = iter(range(10**9))
    network = _network(data)  # one session per tagger, one thread each, as a worker's

    def job(path: Path) -> LearnedJob:
        return LearnedJob(path.stem, str(path), path.name, f"bench{next(counter)}")  # never cached

    for path in tracks:
        seconds = decode(path).duration_s
        patches, _ = log_mel_patches(SharedDecode(path).get(SR).y)
        analysed = min(seconds, len(patches) * PATCH_SECONDS)
        tag = f"{path.name}, {seconds / 60:.3g} min" if args.files else f"{seconds / 60:.3g} min"
        rows.append(
            Row("learned", f"decode + resample [{tag}]", lambda p=path: SharedDecode(p).get(SR), seconds, analysed)
        )
        rows.append(Row("learned", f"{FLOOR} [{tag}]", lambda x=patches: network.run(x), seconds, analysed, True))
        rows.append(
            Row(
                "learned",
                f"pass (run_learned_job) [{tag}]",
                lambda p=path: run_learned_job(job(p), data),
                seconds,
                analysed,
            )
        )
    return rows


PASSES: dict[str, Callable[[list[Path], argparse.Namespace], list[Row]]] = {
    "notes": notes_pass,
    "learned": learned_pass,
}


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(rows: list[Row], rounds: int) -> None:
    for row in rows:
        row.run()  # warm: sessions, caches, first-call allocations
    for r in range(rounds):
        for row in rows if r % 2 == 0 else rows[::-1]:
            c0, k0, t0 = time.process_time(), child_cpu(), time.perf_counter()
            row.run()
            row.wall.append(time.perf_counter() - t0)
            row.cpu.append(time.process_time() - c0 + ((child_cpu() - k0) if row.children else 0.0))


def report(rows: list[Row]) -> None:
    head = f"{'pass':6} {'row':60} {'track s':>7} {'heard s':>7} {'CPU s':>7} {'wall s':>7} {'×rt/CPU-s heard':>15} {'×rt/CPU-s track':>15} {'CPU/floor':>9} {'same':>5}"
    print(head)
    print("-" * len(head))
    for row in rows:
        cpu, wall = statistics.median(row.cpu), statistics.median(row.wall)
        tag = row.name[row.name.rfind("[") :]
        floor = next(f for f in rows if f.pass_name == row.pass_name and f.name == f"{FLOOR} {tag}")
        ratio = (cpu / row.analysed_s) / (statistics.median(floor.cpu) / floor.analysed_s)
        same = "" if row.same is None else ("yes" if row.same else "NO")
        print(
            f"{row.pass_name:6} {row.name:60} {row.track_s:7.1f} {row.analysed_s:7.1f} {cpu:7.3f} {wall:7.3f} "
            f"{row.analysed_s / cpu:15.1f} {row.track_s / cpu:15.1f} {ratio:9.3f} {same:>5}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="audio files instead of the synthesized tracks")
    ap.add_argument("--minutes", type=float, nargs="+", default=[1.0, 4.0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--passes", nargs="+", default=list(PASSES), choices=list(PASSES))
    ap.add_argument("--sweep", action="store_true", help="batch sizes and session options of the forward pass")
    ap.add_argument("--pool", action="store_true", help="transcribe_many with one worker per core")
    ap.add_argument("--work", default=None, help="folder for the synthesized tracks (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_passes_tracks_"))
    work.mkdir(parents=True, exist_ok=True)
    tracks = [Path(f) for f in args.files] or [
        piano_track(work / f"piano_{m:g}min.flac", 60 * m, seed=i) for i, m in enumerate(args.minutes)
    ]
    rows = [row for name in args.passes for row in PASSES[name](tracks, args)]
    measure(rows, args.rounds)
    print(f"{len(os.sched_getaffinity(0))} cores, {args.rounds} rounds, medians; load average {os.getloadavg()[0]:.2f}")
    report(rows)


if __name__ == "__main__":
    sys.exit(main())

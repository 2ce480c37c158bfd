"""What a question about outside files costs: whole processes of `classify --json` and `difficulty --json`.

    python benchmarks/bench_per_file.py --data DIR FILE ... [--rounds 3]

Each command runs as a fresh `music-pipeline` process over all FILES, as a user types it: interpreter
start, imports, model loading, decoding and analysis included. The data directory must hold a built
library (its genre model and difficulty scale) that has never seen FILES: the commands analyse outside
files from scratch every time (nothing of them is cached), so every round is cold for the analysis.
CPU is the whole process tree's (user + system, ``resource.getrusage(RUSAGE_CHILDREN)``), per file;
the median over rounds is printed. Baselines in the same run: `music-pipeline --help` (the
interpreter and the CLI alone) and `music-pipeline embed` (the 641-D extraction alone).
Run by hand; nothing here is timed in CI.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "--help (start-up)": ["--help"],
    "embed (641-D only)": ["embed", "--json"],
    "classify --json": ["classify", "--json"],
    "difficulty --json": ["difficulty", "--json"],
}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(argv: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one process running ``music-pipeline argv``."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run(["music-pipeline", *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"music-pipeline {' '.join(argv[:2])} … failed ({done.returncode}): {done.stderr[-2000:]}")
    return _children_cpu() - cpu0, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a built data directory that has never seen FILES")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    n = len(args.files)
    cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
    wall: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for r in range(args.rounds):
        names = list(COMMANDS) if r % 2 == 0 else list(reversed(COMMANDS))  # same load for every row
        for name in names:
            argv = COMMANDS[name] if name.startswith("--help") else [*COMMANDS[name], "--data", args.data, *args.files]
            c, w = run_once(argv)
            cpu[name].append(c)
            wall[name].append(w)
    embed = statistics.median(cpu["embed (641-D only)"]) / n
    print(f"{n} files, median of {args.rounds} rounds, whole process")
    print(f"{'command':22s} {'CPU s/file':>10s} {'wall s/file':>11s} {'CPU / embed':>11s}")
    for name in COMMANDS:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        per = c / (1 if name.startswith("--help") else n)
        note = " (per process)" if name.startswith("--help") else ""
        print(f"{name:22s} {per:10.2f} {w / (1 if name.startswith('--help') else n):11.2f} {per / embed:11.2f}{note}")


if __name__ == "__main__":
    main()

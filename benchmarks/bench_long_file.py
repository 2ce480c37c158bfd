"""Peak memory of analysing one long track (default 60 min), in a fresh subprocess.

    python benchmarks/bench_long_file.py [--minutes 60] [--keep]

Writes a synthetic stereo 44.1 kHz FLAC of the given length (tones, clicks, noise), then runs
`music-pipeline embed` on it in a child process and reports the child's peak RSS next to the size
of the decoded mono signal (the floor any whole-track analysis needs).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repo on sys.path)
import numpy as np
import soundfile as sf

from music_pipeline.synth import clicks, noise, tone


def write_long_flac(path: Path, minutes: float, sr: int = 44_100) -> None:
    chunk_s = 60
    with sf.SoundFile(str(path), "w", sr, 2, subtype="PCM_16", format="FLAC") as f:
        for i in range(int(np.ceil(minutes))):
            seconds = min(chunk_s, minutes * 60 - i * chunk_s)
            y = (
                0.3 * tone(110 * (1 + i % 5), seconds, sr)
                + 0.2 * clicks(100 + i % 40, seconds, sr)
                + noise(seconds, sr, 0.02, seed=i)
            )
            f.write(np.stack([y, 0.8 * y], axis=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "long.flac"
    write_long_flac(path, args.minutes)
    print(f"{args.minutes:g} min stereo 44.1 kHz FLAC: {path.stat().st_size / 2**20:.0f} MiB on disk")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "music_pipeline.cli", "embed", str(path), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    mono_mib = args.minutes * 60 * 22_050 * 4 / 2**20
    print(f"exit {proc.returncode}, {wall:.1f} s, {args.minutes * 60 / wall:.0f}x real time")
    print(
        f"peak RSS {peak_mib:.0f} MiB; decoded mono signal {mono_mib:.0f} MiB; ratio {peak_mib / mono_mib:.2f}x; limit 1536 MiB"
    )
    if proc.returncode:
        print(proc.stderr[-2000:])
    if not args.keep:
        path.unlink()


if __name__ == "__main__":
    main()

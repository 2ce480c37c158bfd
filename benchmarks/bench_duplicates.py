"""Duplicates on real music: the development library plus degraded whole copies of some tracks.

    nice -n 15 python benchmarks/bench_duplicates.py [--library /work/dev_library] [--copies 24] [--seed 0]

Builds a temporary library of links to every file of ``--library`` and ``--copies`` degraded whole
copies (cycling: MP3 96 kb/s, Opus 32 kb/s, Vorbis q1, 6 dB quieter, pink noise at 20 dB SNR,
3.5 s trimmed, 2 s of silence padded; via ffmpeg), fingerprints it with the shared analysis and
reports: planted pairs grouped, groups joining different recordings (any group holding two
original files counts as wrong unless they are identical bytes), and the time taken.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from music_pipeline.analysis import TrackJob, analyse_many
from music_pipeline.artifacts import write_parquet
from music_pipeline.audio.scan import scan_library
from music_pipeline.identity.duplicates import duplicate_groups
from music_pipeline.identity.library import build_index
from music_pipeline.layout import DataLayout

DEGRADE = {
    "mp3_96k": ("mp3", ["-c:a", "libmp3lame", "-b:a", "96k"]),
    "opus_32k": ("opus", ["-c:a", "libopus", "-b:a", "32k"]),
    "vorbis_q1": ("ogg", ["-c:a", "libvorbis", "-q:a", "1"]),
    "minus_6db": ("flac", ["-af", "volume=-6dB"]),
    "pink_20db": ("flac", None),
    "trim_3.5s": ("flac", ["-ss", "3.5"]),
    "pad_2s": ("flac", ["-af", "adelay=2000:all=1"]),
}


def pink_copy(src: Path, dst: Path) -> None:
    """src with pink noise 20 dB below its RMS level (ffmpeg's anoisesrc, mixed by amix)."""
    y, sr = sf.read(src, dtype="float32", always_2d=True)
    rms = float(np.sqrt(np.mean(y**2)))
    # anoisesrc's pink noise has an RMS near amplitude/3.4 (measured); aim 20 dB below the signal
    amp = min(1.0, rms * 0.1 * 3.4)
    graph = f"anoisesrc=color=pink:amplitude={amp}:sample_rate={sr}:seed=1[n];[0:a][n]amix=inputs=2:duration=first:normalize=0"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-filter_complex", graph, str(dst)], check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default="/work/dev_library")
    ap.add_argument("--copies", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    src = Path(args.library)
    with open(src / "labels.csv") as f:
        files = [r["path"] for r in csv.DictReader(f)]
    rng = np.random.default_rng(args.seed)
    planted = [files[i] for i in rng.permutation(len(files))[: args.copies]]
    with tempfile.TemporaryDirectory() as tmpd:
        lib, data = Path(tmpd) / "lib", Path(tmpd) / "data"
        for rel in files:
            (lib / rel).parent.mkdir(parents=True, exist_ok=True)
            (lib / rel).symlink_to(src / rel)
        kinds = list(DEGRADE)
        copy_of = {}
        for i, rel in enumerate(planted):
            kind = kinds[i % len(kinds)]
            ext, opts = DEGRADE[kind]
            dst = lib / "copies" / f"{Path(rel).stem}.{kind}.{ext}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            wav = Path(tmpd) / "source.wav"  # read by libsndfile: ffmpeg refuses some of these Ogg headers
            y, sr = sf.read(src / rel, dtype="float32")
            sf.write(wav, y, sr)
            if opts is None:
                pink_copy(wav, dst)
            else:
                subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), *opts, str(dst)], check=True)
            copy_of[str(dst.relative_to(lib))] = (rel, kind)
        scan = scan_library(lib)
        jobs = [TrackJob(t.key, t.path, t.relpath, t.content_hash, str(data), ("fingerprints",)) for t in scan.tracks]
        t0 = time.process_time()
        analyse_many(jobs, workers=1)
        fp_cpu = time.process_time() - t0
        write_parquet(DataLayout(data).manifest_path, scan.to_frame())
        t0 = time.perf_counter()
        lib_index, _ = build_index(data)
        index_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        groups = duplicate_groups(data, lib_index)
        dup_s = time.perf_counter() - t0
    group_of = {t["path"]: gi for gi, g in enumerate(groups) for t in g["tracks"]}
    found = [c for c, (rel, _) in copy_of.items() if c in group_of and group_of.get(rel) == group_of[c]]
    missed = [(c, copy_of[c][1]) for c in copy_of if c not in found]
    wrong = [g for g in groups if len({copy_of.get(t["path"], (t["path"],))[0] for t in g["tracks"]}) > 1]
    print(
        json.dumps(
            {
                "tracks": len(jobs),
                "planted_copies": len(copy_of),
                "planted_pairs_grouped": f"{len(found)}/{len(copy_of)}",
                "missed": missed,
                "groups": len(groups),
                "groups_joining_different_recordings": [[t["path"] for t in g["tracks"]] for g in wrong],
                "fingerprint_cpu_s": round(fp_cpu, 1),
                "index_build_s": round(index_s, 2),
                "duplicates_s": round(dup_s, 2),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()

"""Identification of degraded clips and cost of the landmark fingerprints, on real music.

    nice -n 15 python benchmarks/bench_fingerprint.py [--library /work/dev_library] [--tracks 60]
        [--held-out 30] [--clips 2] [--seed 0]

Indexes ``--tracks`` files of the library (a seeded draw), holds ``--held-out`` others out of the
index. For each indexed track, ``--clips`` 10-s clips from random places, each degraded one way
(MP3 64 kb/s, Vorbis q0, Opus 24 kb/s via ffmpeg; 6 dB quieter; pink noise at 20 dB SNR; a 5-s
trim); clips of the held-out tracks must get no match. Reports the rates with Wilson 95 % CIs, the
offset error, the vote distributions (what the thresholds were chosen from), the fingerprint's
cost beside the 641-D extraction on the same decode, and the lookup latency.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from music_pipeline.audio.decode import ANALYSIS_SR, AudioError, SharedDecode, decode
from music_pipeline.identity.fingerprint import _spectrogram, fingerprint_signal
from music_pipeline.identity.index import FingerprintIndex, accepted

CLIP_S = 10.0
ENCODINGS = {
    "mp3_64k": ("mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
    "vorbis_q0": ("ogg", ["-c:a", "libvorbis", "-q:a", "0"]),
    "opus_24k": ("opus", ["-c:a", "libopus", "-b:a", "24k"]),
}
KINDS = [*ENCODINGS, "minus_6db", "pink_20db", "trim_5s"]


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    z, p = 1.96, k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def pink(n: int, rng) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=float)
    f[0] = 1.0
    y = np.fft.irfft(spec / np.sqrt(f), n)
    return (y / np.sqrt(np.mean(y**2))).astype(np.float32)


def degrade(y: np.ndarray, kind: str, tmp: Path, rng) -> np.ndarray:
    """The clip ``y`` (at ANALYSIS_SR) degraded one way, read back as the library reads files."""
    import soundfile as sf

    if kind in ENCODINGS:
        ext, codec = ENCODINGS[kind]
        src, dst = tmp / "clip.wav", tmp / f"clip.{ext}"
        sf.write(src, y, ANALYSIS_SR)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *codec, str(dst)], check=True)
        return decode(dst, min_duration_s=1.0).y
    if kind == "minus_6db":
        return y * np.float32(10 ** (-6 / 20))
    if kind == "pink_20db":
        rms = np.sqrt(np.mean(y.astype(np.float64) ** 2))
        return y + pink(len(y), rng) * np.float32(rms * 10 ** (-20 / 20))
    if kind == "trim_5s":
        return y[: int(5 * ANALYSIS_SR)]
    raise ValueError(kind)


def same_place(y: np.ndarray, start: float, found: float) -> bool:
    """Whether ``found`` is where the clip starts, or a place where the track repeats the clip's
    material (game music loops: the same bars recur, and the clip is then truly at both), judged
    by the correlation of the two places' log spectrograms in the original."""
    if abs(found - start) <= 0.2:
        return True
    a, b = int(start * ANALYSIS_SR), int(found * ANALYSIS_SR)
    n = int(min(CLIP_S * ANALYSIS_SR, len(y) - max(a, b)))
    if b < 0 or n < ANALYSIS_SR:
        return False
    u, v = (_spectrogram(y[i : i + n]).ravel().astype(np.float64) for i in (a, b))
    u, v = u - u.mean(), v - v.mean()
    return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-12)) >= 0.8


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", default="/work/dev_library")
    ap.add_argument("--tracks", type=int, default=60)
    ap.add_argument("--held-out", type=int, default=30)
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-extract", action="store_true", help="skip the 641-D extraction timing")
    args = ap.parse_args()
    from music_pipeline.features.extract import extract_features, warm_up

    lib = Path(args.library)
    with open(lib / "labels.csv") as f:
        files = [lib / r["path"] for r in csv.DictReader(f)]
    rng = np.random.default_rng(args.seed)
    files = [files[i] for i in rng.permutation(len(files))]
    indexed, held = files[: args.tracks], files[args.tracks : args.tracks + args.held_out]
    if not args.no_extract:
        warm_up()

    fps, signals, audio_s, fp_cpu, ex_cpu = [], {}, 0.0, 0.0, 0.0
    for p in indexed + held:
        shared = SharedDecode(p)
        a = shared.get()
        t0 = time.process_time()
        fp = fingerprint_signal(a.y, a.sr)
        fp_cpu += time.process_time() - t0
        if not args.no_extract:
            t0 = time.process_time()
            extract_features(p, audio=shared)
            ex_cpu += time.process_time() - t0
        audio_s += a.duration_s
        signals[p] = a.y
        if p in indexed:
            fps.append((str(p.relative_to(lib)), fp))
    t0 = time.perf_counter()
    index = FingerprintIndex.build(fps)
    build_s = time.perf_counter() - t0
    n_hashes = len(index.hashes)

    rows, lookup_s = [], []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for p in indexed + held:
            y = signals[p]
            for _ in range(args.clips):
                for kind in KINDS:
                    for _draw in range(20):  # a clip of music: not one of a track's silences
                        start = float(rng.uniform(0, max(0.0, len(y) / ANALYSIS_SR - CLIP_S)))
                        clip = y[int(start * ANALYSIS_SR) : int((start + CLIP_S) * ANALYSIS_SR)]
                        if np.abs(clip).max() > 10 ** (-50 / 20):
                            break
                    try:
                        z = degrade(clip, kind, tmp, rng)
                    except AudioError:
                        z = np.zeros(int(CLIP_S * ANALYSIS_SR), np.float32)  # counted as a miss
                    t0 = time.perf_counter()
                    m = index.best(fingerprint_signal(z, ANALYSIS_SR))
                    lookup_s.append(time.perf_counter() - t0)
                    truth = str(p.relative_to(lib)) if p in indexed else None
                    rows.append(
                        {
                            "kind": kind,
                            "source": str(p.relative_to(lib)),
                            "truth": truth,
                            "start": start,
                            "best": None if m is None else str(index.content_hashes[m.track]),
                            "offset_s": None if m is None else m.offset_s,
                            "votes": 0 if m is None else m.votes,
                            "runner_up": 0 if m is None else m.runner_up,
                            "accepted": bool(m is not None and accepted(m)),
                            "offset_ok": m is not None and truth is not None and same_place(y, start, m.offset_s),
                        }
                    )

    out = {"tracks_indexed": len(indexed), "tracks_held_out": len(held), "index_entries": n_hashes}
    out["index_build_s"] = round(build_s, 3)
    out["fingerprint_x_realtime_per_cpu_s"] = round(audio_s / fp_cpu, 1)
    if not args.no_extract:
        out["extract_641d_x_realtime_per_cpu_s"] = round(audio_s / ex_cpu, 1)
        out["fingerprint_cost_vs_extract_pct"] = round(100 * fp_cpu / ex_cpu, 2)
    out["lookup_ms_median"] = round(1000 * float(np.median(lookup_s)), 1)
    out["lookup_ms_p95"] = round(1000 * float(np.percentile(lookup_s, 95)), 1)
    for kind in KINDS:
        pos = [r for r in rows if r["kind"] == kind and r["truth"]]
        ok = [r for r in pos if r["accepted"] and r["best"] == r["truth"] and r["offset_ok"]]
        lo, hi = wilson(len(ok), len(pos))
        out[f"identified_{kind}"] = f"{len(ok)}/{len(pos)} = {len(ok) / max(len(pos), 1):.3f} [{lo:.3f}, {hi:.3f}]"
    pos = [r for r in rows if r["truth"]]
    ok = [r for r in pos if r["accepted"] and r["best"] == r["truth"] and r["offset_ok"]]
    out["identified_all"] = (
        f"{len(ok)}/{len(pos)} = {len(ok) / len(pos):.3f} [{wilson(len(ok), len(pos))[0]:.3f}, {wilson(len(ok), len(pos))[1]:.3f}]"
    )
    right = [r for r in pos if r["accepted"] and r["best"] == r["truth"]]
    lo, hi = wilson(len(right), len(pos))
    out["track_identified_any_offset"] = f"{len(right)}/{len(pos)} = {len(right) / len(pos):.3f} [{lo:.3f}, {hi:.3f}]"
    wrong = [r for r in pos if r["accepted"] and r["best"] != r["truth"]]
    out["library_clips_matched_to_wrong_track"] = len(wrong)
    neg = [r for r in rows if not r["truth"]]
    fa = [r for r in neg if r["accepted"]]
    lo, hi = wilson(len(neg) - len(fa), len(neg))
    out["not_in_library_unmatched"] = (
        f"{len(neg) - len(fa)}/{len(neg)} = {1 - len(fa) / len(neg):.3f} [{lo:.3f}, {hi:.3f}]"
    )
    q = [0, 50, 90, 99, 100]
    out["votes_true_clips_percentiles_0_50_90_99_100"] = np.percentile([r["votes"] for r in pos], q).tolist()
    out["votes_outside_clips_percentiles"] = np.percentile([r["votes"] for r in neg], q).tolist()
    out["ratio_outside_clips_percentiles"] = np.percentile(
        [r["votes"] / max(r["runner_up"], 1) for r in neg], q
    ).tolist()
    exact = [abs(r["offset_s"] - r["start"]) for r in ok if abs(r["offset_s"] - r["start"]) <= 0.2]
    out["offset_error_s_max"] = round(max(exact, default=0), 3)
    out["identified_at_a_repeat_of_the_clip"] = len(ok) - len(exact)
    out["not_in_library_matched"] = [(r["source"], r["best"], r["votes"], r["runner_up"]) for r in fa]
    out["missed"] = [
        {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in pos if r not in ok
    ]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

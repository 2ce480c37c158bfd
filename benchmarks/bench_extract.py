"""Per-track extraction throughput (× real time, one core) against the naive per-feature way.

    python benchmarks/bench_extract.py [FILE ...] [--library DIR] [--limit N]

Both run in this process, one file at a time and interleaved file by file (so both see the same
machine load), after a warm-up (numba compilation excluded from both). Throughput per core is
audio seconds / CPU seconds of this single-threaded process; wall-clock figures are printed too.
"""

from __future__ import annotations

import argparse
import time

from common import audio_files

import librosa  # noqa: E402
import numpy as np  # noqa: E402

from music_pipeline.audio.decode import decode  # noqa: E402
from music_pipeline.features.difficulty import compute_descriptors  # noqa: E402
from music_pipeline.features.embedding import compute_embedding  # noqa: E402
from music_pipeline.features.extract import warm_up  # noqa: E402
from music_pipeline.features.rhythm import compute_rhythm  # noqa: E402
from music_pipeline.features.segments import extract_segments  # noqa: E402
from music_pipeline.features.spectra import compute_spectra  # noqa: E402


def naive_embedding(path) -> np.ndarray:
    """The reference project's way: every feature from the waveform with its own librosa call."""
    y, sr = librosa.load(path, sr=22050, mono=True)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr)
    parts = [
        mfcc.mean(1), mfcc.std(1), librosa.feature.delta(mfcc).mean(1),
        chroma.mean(1), chroma.std(1),
    ]
    for f in (librosa.feature.spectral_centroid, librosa.feature.spectral_rolloff, librosa.feature.spectral_bandwidth):
        v = f(y=y, sr=sr)
        parts += [[v.mean()], [v.std()]]
    contrast = librosa.feature.spectral_contrast(y=y, sr=sr)
    flat = librosa.feature.spectral_flatness(y=y)
    zcr = librosa.feature.zero_crossing_rate(y)
    tempo = librosa.feature.tempo(y=y, sr=sr)
    rms = librosa.feature.rms(y=y)
    tonnetz = librosa.feature.tonnetz(y=y, sr=sr)
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=128))
    parts += [contrast.mean(1), contrast.std(1), [flat.mean(), flat.std()], [zcr.mean(), zcr.std()], tempo,
              [rms.mean(), rms.std()], tonnetz.mean(1), tonnetz.std(1), mel.mean(1), *np.percentile(mel, [25, 50, 75], axis=1)]
    return np.concatenate([np.ravel(p) for p in parts])


def ours_staged(path, t: dict) -> float:
    def lap(name, t0):
        now = time.process_time()
        t[name] = t.get(name, 0.0) + now - t0
        return now

    t0 = time.process_time()
    audio = decode(path)
    t0 = lap("decode", t0)
    spectra = compute_spectra(audio.y, audio.sr)
    t0 = lap("spectra (1 STFT + 1 CQT)", t0)
    rhythm = compute_rhythm(spectra)
    t0 = lap("rhythm", t0)
    compute_embedding(spectra, rhythm)
    t0 = lap("embedding stats", t0)
    compute_descriptors(spectra, rhythm)
    t0 = lap("difficulty descriptors", t0)
    extract_segments(spectra)
    lap("segments", t0)
    return audio.duration_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*")
    ap.add_argument("--library")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    files = audio_files(args.files, args.library)
    if args.limit:
        files = files[: args.limit]
    warm_up()
    naive_embedding(files[0])  # warm the naive path too

    stages: dict[str, float] = {}
    audio_s = ours = naive = ours_wall = naive_wall = 0.0
    for f in files:
        w0, c0 = time.perf_counter(), time.process_time()
        audio_s += ours_staged(f, stages)
        w1, c1 = time.perf_counter(), time.process_time()
        naive_embedding(f)
        w2, c2 = time.perf_counter(), time.process_time()
        ours, naive = ours + c1 - c0, naive + c2 - c1
        ours_wall, naive_wall = ours_wall + w1 - w0, naive_wall + w2 - w1

    print(f"{len(files)} files, {audio_s / 60:.1f} min of audio, one core")
    print(f"  naive (per-feature from y): {naive:7.1f} CPU s  {audio_s / naive:7.1f}x real time per core  (wall {naive_wall:.1f} s)")
    print(f"  music_pipeline (full pass): {ours:7.1f} CPU s  {audio_s / ours:7.1f}x real time per core  (wall {ours_wall:.1f} s)")
    print(f"  speed-up: {naive / ours:.2f}x CPU, {naive_wall / ours_wall:.2f}x wall")
    print("  stage breakdown (ours, CPU s):")
    for name, secs in stages.items():
        print(f"    {name:28s} {secs:6.2f} s  {100 * secs / ours:5.1f}%")
    base = ours - stages["difficulty descriptors"] - stages["segments"]
    print(f"  descriptors + segments add {100 * (ours - base) / base:.1f}% to the embedding-only pass")


if __name__ == "__main__":
    main()

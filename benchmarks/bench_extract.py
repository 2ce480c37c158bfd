"""What extraction costs per minute of audio: the floor, the project, the whole `embed` process,
and the naive way — for one-minute and for 5-second files, side by side in one run.

    python benchmarks/bench_extract.py [--library DIR] [--tracks 32] [--short 128] [--repeat 1]

Inputs: ``--tracks`` one-minute excerpts and ``--short`` 5-second excerpts cut from the library's
tracks (default: the demo library), written once as 22.05 kHz mono FLAC (so nothing is resampled)
under ``data/bench_cache/``. Rows:

- floor: decode + one STFT (n_fft 2048, hop 512) — what any such pass must at least pay;
- music_pipeline: ``extract_features`` (the 641 values, descriptors and segments);
- naive: ``librosa.load`` then every feature from the waveform with its own librosa call;
- ... whole process: the same as a fresh command, CPU seconds of the process and its children
  (start-up, imports, numba loading, workers) from ``getrusage``: ``music-pipeline embed FILES``
  for the project, and a fresh interpreter running the naive loop (or the floor loop).

In-process rows run in this process, interleaved file by file (so all see the same machine load),
after a warm-up; "× real time per CPU-second" is audio seconds / CPU seconds. Whole-process rows
run with the caller's environment, as a user would (no thread limits added).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
from common import DEMO, ORIGINAL_ENV, audio_files

from music_pipeline.audio.decode import decode
from music_pipeline.difficulty.audio_descriptors import compute_descriptors
from music_pipeline.features.embedding import compute_embedding
from music_pipeline.features.extract import warm_up
from music_pipeline.features.rhythm import compute_rhythm
from music_pipeline.features.segments import extract_segments
from music_pipeline.features.spectra import HOP, N_FFT, SR, compute_spectra

CACHE = Path("data/bench_cache")


def naive_embedding(path) -> np.ndarray:
    """The reference project's way: every feature from the waveform with its own librosa call."""
    y, sr = librosa.load(path, sr=22050, mono=True)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr)
    parts = [
        mfcc.mean(1),
        mfcc.std(1),
        librosa.feature.delta(mfcc).mean(1),
        chroma.mean(1),
        chroma.std(1),
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
    parts += [
        contrast.mean(1),
        contrast.std(1),
        [flat.mean(), flat.std()],
        [zcr.mean(), zcr.std()],
        tempo,
        [rms.mean(), rms.std()],
        tonnetz.mean(1),
        tonnetz.std(1),
        mel.mean(1),
        *np.percentile(mel, [25, 50, 75], axis=1),
    ]
    return np.concatenate([np.ravel(p) for p in parts])


def floor_pass(path) -> float:
    """Decode (+ resample when needed) and one magnitude STFT: the least any such pass pays."""
    audio = decode(path)
    np.abs(librosa.stft(audio.y, n_fft=N_FFT, hop_length=HOP))
    return audio.duration_s


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


def prepare(library: Path, folder: Path, count: int, seconds: float, offset: float = 20.0) -> list[Path]:
    """``count`` excerpts of ``seconds`` from the library's tracks (several per track when needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    have = sorted(folder.glob("*.flac"))
    if len(have) >= count:
        return have[:count]
    sources = audio_files([], str(library))
    out, i = [], 0
    for src in sources:
        y, _ = librosa.load(src, sr=SR, mono=True, offset=offset)
        for start in range(0, int(len(y) / SR - seconds) + 1, int(seconds) if seconds >= 30 else 11):
            piece = y[start * SR : int((start + seconds) * SR)]
            if len(piece) < int(seconds * SR) or np.abs(piece).max() < 1e-3:
                continue
            path = folder / f"{i:04d}_{src.stem[:24]}.flac"
            sf.write(path, piece, SR)
            out.append(path)
            i += 1
            if i >= count:
                return out
            if seconds >= 30:
                break  # one-minute excerpts: one per track, so they are distinct music
    if len(out) < count:
        sys.exit(f"only {len(out)} excerpts of {seconds} s could be cut from {library}")
    return out


def in_process(files: list[Path]) -> dict:
    stages: dict[str, float] = {}
    cpu = {"floor": 0.0, "music_pipeline": 0.0, "naive": 0.0}
    audio_s = 0.0
    for f in files:
        c0 = time.process_time()
        floor_pass(f)
        c1 = time.process_time()
        audio_s += ours_staged(f, stages)
        c2 = time.process_time()
        naive_embedding(f)
        c3 = time.process_time()
        cpu["floor"] += c1 - c0
        cpu["music_pipeline"] += c2 - c1
        cpu["naive"] += c3 - c2
    return {"audio_s": audio_s, "cpu": cpu, "stages": stages}


_NAIVE_SCRIPT = """
import sys
sys.path.insert(0, {bench!r})
from bench_extract import {fn}
for f in sys.argv[1:]:
    {fn}(f)
"""


def whole_process(cmd: list[str]) -> float:
    """CPU seconds (user + system) of ``cmd`` and everything it started."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ORIGINAL_ENV, check=False
    )  # not this process's one-thread setting
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} … failed: {proc.stderr.strip()[-500:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def whole_processes(files: list[Path]) -> dict:
    names = [str(f) for f in files]
    bench = str(Path(__file__).resolve().parent)
    return {
        "music_pipeline": whole_process([sys.executable, "-m", "music_pipeline.cli", "embed", "--json", *names]),
        "naive": whole_process([sys.executable, "-c", _NAIVE_SCRIPT.format(bench=bench, fn="naive_embedding"), *names]),
        "floor": whole_process([sys.executable, "-c", _NAIVE_SCRIPT.format(bench=bench, fn="floor_pass"), *names]),
    }


def report(title: str, files: list[Path], inproc: dict, whole: dict) -> None:
    audio_s, cpu = inproc["audio_s"], inproc["cpu"]
    print(f"\n## {title}: {len(files)} files, {audio_s / 60:.1f} min of audio")
    print(f"{'':26s} {'in process':>22s}   {'whole process (start-up incl.)':>32s}")
    print(f"{'':26s} {'CPU s':>8s} {'x RT/CPU-s':>12s}   {'CPU s':>10s} {'x RT/CPU-s':>12s} {'per file':>8s}")
    for name in ("floor", "music_pipeline", "naive"):
        c, w = cpu[name], whole[name]
        print(f"{name:26s} {c:8.2f} {audio_s / c:12.1f}   {w:10.2f} {audio_s / w:12.1f} {w / len(files):8.3f}")
    print(
        f"music_pipeline vs naive:   in process {cpu['naive'] / cpu['music_pipeline']:.2f}x, whole process {whole['naive'] / whole['music_pipeline']:.2f}x faster"
    )
    print(
        f"floor vs music_pipeline:   in process {cpu['music_pipeline'] / cpu['floor']:.2f}x, whole process {whole['music_pipeline'] / whole['floor']:.2f}x the floor's cost"
    )
    stages, ours = inproc["stages"], cpu["music_pipeline"]
    print(
        "stage breakdown (music_pipeline in process, CPU s): "
        + ", ".join(f"{k} {v:.2f} ({100 * v / ours:.0f}%)" for k, v in stages.items())
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", default=str(DEMO), help="where to cut the excerpts from (default: the demo library)")
    ap.add_argument("--tracks", type=int, default=32, help="one-minute excerpts (default 32)")
    ap.add_argument("--short", type=int, default=128, help="5-second excerpts (default 128)")
    args = ap.parse_args()
    corpora = [
        ("one-minute files", prepare(Path(args.library), CACHE / "one_minute", args.tracks, 60.0)),
        ("5-second files", prepare(Path(args.library), CACHE / "five_seconds", args.short, 5.0)),
    ]
    warm_up()
    naive_embedding(corpora[0][1][0])  # warm the naive path too
    floor_pass(corpora[0][1][0])
    for title, files in corpora:
        report(title, files, in_process(files), whole_processes(files))


if __name__ == "__main__":
    main()

"""Write synthesized test audio to disk in several formats, and a corpus of broken inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from music_pipeline.synth import SR, clicks, noise, tone

FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "aiff": ("AIFF", "PCM_16"),
}


def write(path: Path, y: np.ndarray, sr: int = SR) -> Path:
    fmt, subtype = FORMATS[path.suffix.lstrip(".")]
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "OGG" and subtype == "OPUS" and sr not in (8000, 12000, 16000, 24000, 48000):
        import soxr

        y, sr = soxr.resample(y, sr, 48000), 48000
    sf.write(str(path), y, sr, format=fmt, subtype=subtype)
    return path


def truncate(path: Path, keep_fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def write_bad_corpus(root: Path) -> dict[str, str | None]:
    """Broken and awkward inputs. Returns relpath -> expected failure keyword (None = must succeed)."""
    root.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str | None] = {}
    good = 0.4 * tone(330, 8) + 0.3 * clicks(100, 8)

    (root / "empty.wav").write_bytes(b"")
    expect["empty.wav"] = "empty"
    for ext in ("ogg", "flac", "mp3"):
        truncate(write(root / f"truncated.{ext}", good), 0.02)  # cut inside the first frames
    expect.update({"truncated.ogg": "not a readable", "truncated.flac": "truncated", "truncated.mp3": "not a readable"})
    for ext in ("ogg", "flac", "mp3", "wav"):
        truncate(write(root / f"half.{ext}", good), 0.5)  # cut half way through the 8 s
    # Ogg and FLAC refuse the cut stream; mp3 and wav decode the first ~4 s (checked in the tests)
    expect.update({"half.ogg": "truncated", "half.flac": "truncated", "half.mp3": None, "half.wav": None})
    (root / "notes.mp3").write_text("these are my notes, not audio\n" * 20)
    expect["notes.mp3"] = "not"
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    (root / "cover.wav").write_bytes(png)
    expect["cover.wav"] = "not"
    write(root / "silence.wav", np.zeros(SR * 5, np.float32))
    expect["silence.wav"] = "silent"
    write(root / "dc.wav", np.full(SR * 5, 0.5, np.float32))
    expect["dc.wav"] = "DC"
    write(root / "clipped_noise.flac", np.clip(noise(6, amp=3.0, seed=4), -1, 1))
    expect["clipped_noise.flac"] = None
    write(root / "blip.wav", tone(440, 0.2))
    expect["blip.wav"] = "too short"
    write(root / "phone_8k.wav", tone(440, 6, sr=8000), sr=8000)
    expect["phone_8k.wav"] = None
    t = np.arange(96_000 * 5) / 96_000
    six = np.stack([0.2 * np.sin(2 * np.pi * f * t) for f in (110, 220, 330, 440, 550, 660)], axis=1).astype(np.float32)
    sf.write(str(root / "surround_96k.flac"), six, 96_000, subtype="PCM_24")
    expect["surround_96k.flac"] = None
    for name in ("my song (live).ogg", "café – ünïcødé ♪.wav", "$(touch pwned); `rm -rf x` & 'q'.flac"):
        write(root / name, good)
        expect[name] = None
    write(root / "copy_a.wav", good * 0.9)
    (root / "copy_b.wav").write_bytes((root / "copy_a.wav").read_bytes())
    expect["copy_a.wav"] = None
    expect["copy_b.wav"] = "duplicate"
    loop = root / "loop"
    loop.mkdir(exist_ok=True)
    if not (loop / "again").exists():
        os.symlink("..", loop / "again")  # a directory symlink loop
    return expect

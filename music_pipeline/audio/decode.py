"""Decode any supported audio file to mono float32 at the analysis sample rate.

soundfile (libsndfile) reads wav/flac/ogg(Vorbis, Opus)/mp3/aiff; other containers go through the
``ffmpeg`` binary when it is installed. Decoding streams in blocks and resamples with a streaming
soxr resampler, so memory stays near the size of the decoded mono signal even for hour-long,
high-rate, multi-channel files.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from music_pipeline.quiet import captured_stderr

log = logging.getLogger(__name__)

# Extensions we try to decode. soundfile (libsndfile) handles the first group; the second needs ffmpeg.
SOUNDFILE_EXTENSIONS = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc"}
FFMPEG_EXTENSIONS = {".m4a", ".aac", ".mp4", ".alac", ".wma", ".webm", ".mka", ".ape", ".wv"}
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | FFMPEG_EXTENSIONS

ANALYSIS_SR = 22_050
MIN_DURATION_S = 3.0
# Below this peak level (dBFS) a file is treated as silent: no analysis of it would mean anything.
SILENCE_PEAK_DB = -70.0
_BLOCK_FRAMES = 1 << 16
CHATTY_SUFFIXES = (".mp3", ".mp2", ".mpga")  # decoded by libmpg123, which prints notes to fd 2
# libsndfile's SF_ERR_SYSTEM: the operating system failed the read (EIO, a stale network handle),
# not the file's content
_SF_ERR_SYSTEM = 2
# ffmpeg: a decode that takes longer than this (wall clock) is stopped; at least ~100x real time is
# normal, so only a hung decoder or a stalled network mount gets here
FFMPEG_TIMEOUT_S = 600.0
# and no decode holds more than this much audio (mono float32 at the analysis rate: 12 h ≈ 3.8 GB at 22 kHz)
MAX_DECODED_HOURS = 12.0


class AudioError(Exception):
    """A track cannot be analysed. ``str()`` names the file and the reason.

    ``permanent``: the file's content is the cause (unreadable, not audio, truncated, silent, too
    short), so retrying the same content cannot help and the failure is remembered. False when
    the cause lies outside the content (the file vanished, cannot be opened right now), so the
    next build tries again."""

    def __init__(self, path: str | Path, reason: str, permanent: bool = True):
        self.path = str(path)
        self.reason = reason
        self.permanent = permanent
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class DecodedAudio:
    y: np.ndarray  # mono float32 at ``sr``
    sr: int
    source_sr: int
    source_channels: int
    duration_s: float  # of the decoded signal


def _mono(block: np.ndarray) -> np.ndarray:
    if block.ndim == 1 or block.shape[1] == 1:
        return np.ascontiguousarray(block.reshape(-1), dtype=np.float32)
    # a matrix-vector product: several times faster than a strided mean over the channel axis
    return block @ np.full(block.shape[1], 1.0 / block.shape[1], dtype=np.float32)


def _os_fault(path: Path, exc: sf.LibsndfileError) -> bool:
    """Whether libsndfile failed because of the operating system (the file vanished or could not
    be read), not because of what the file holds."""
    return getattr(exc, "code", None) == _SF_ERR_SYSTEM or not os.access(path, os.R_OK)


def _decode_soundfile(path: Path, sr: int, max_duration_s: float | None) -> tuple[np.ndarray, int, int]:
    try:
        f = sf.SoundFile(str(path))
    except sf.LibsndfileError as exc:
        detail = exc.error_string or str(exc)
        if _os_fault(path, exc):
            raise AudioError(path, f"cannot read file ({detail})", permanent=False) from None
        if "possibly a pipe" in detail:  # libsndfile's wording when a decoder rejects the data
            detail = "unrecognised or corrupt audio data"
        raise AudioError(path, f"not a readable audio file ({detail})") from None
    except OSError as exc:
        raise AudioError(path, f"cannot open file ({exc.strerror or exc})", permanent=False) from None
    with f:
        source_sr, channels = f.samplerate, f.channels
        if source_sr <= 0 or channels <= 0:
            raise AudioError(path, f"invalid header (sample rate {source_sr}, channels {channels})")
        stream = soxr.ResampleStream(source_sr, sr, 1, dtype="float32", quality="HQ")
        # write into one preallocated buffer: collecting chunks and concatenating doubles the peak
        out = _Buffer(int(max(f.frames, 0) * sr / source_sr) + 4096)
        limit = int(max_duration_s * source_sr) if max_duration_s else None
        read = 0
        try:
            while True:
                block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if block.size == 0:
                    break
                read += len(block)
                out.append(stream.resample_chunk(_mono(block)))
                if limit and read >= limit:
                    break
        except sf.LibsndfileError as exc:
            if _os_fault(path, exc):
                raise AudioError(
                    path, f"reading failed after {read / source_sr:.1f} s ({exc.error_string or exc})", permanent=False
                ) from None
            raise AudioError(
                path,
                f"decoding failed after {read / source_sr:.1f} s, file is truncated or corrupt ({exc.error_string or exc})",
            ) from None
        if read == 0:  # e.g. an Ogg file cut before its first complete page: a header, no audio
            raise AudioError(path, "no audio could be decoded: the file is truncated or corrupt")
        out.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    return out.array(), source_sr, channels


class _Buffer:
    """A growable float32 array (headers of some formats under-report their length)."""

    def __init__(self, capacity: int):
        self.data = np.empty(max(capacity, 1), np.float32)
        self.n = 0

    def append(self, chunk: np.ndarray) -> None:
        if self.n + len(chunk) > len(self.data):
            grown = np.empty(max(2 * len(self.data), self.n + len(chunk)), np.float32)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n : self.n + len(chunk)] = chunk
        self.n += len(chunk)

    def array(self) -> np.ndarray:
        return self.data[: self.n] if self.n > 0.9 * len(self.data) else self.data[: self.n].copy()


def _decode_ffmpeg(
    path: Path, sr: int, max_duration_s: float | None, timeout_s: float = FFMPEG_TIMEOUT_S
) -> tuple[np.ndarray, int, int]:
    """ffmpeg's output streamed into one growing buffer (never the whole byte stream plus a copy),
    stopped after ``timeout_s`` or past ``MAX_DECODED_HOURS`` of audio."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError(
            path,
            f"{path.suffix} files need ffmpeg, which is not installed (Debian/Ubuntu: apt-get install ffmpeg, "
            "then: music-pipeline build --retry-failed)",
        )
    # Argument list, never a shell string: file names cannot inject commands.
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(sr), "-f", "f32le"]
    if max_duration_s:
        cmd += ["-t", str(max_duration_s)]
    cmd.append("pipe:1")
    limit = int(MAX_DECODED_HOURS * 3600 * sr) * 4  # bytes
    out = _Buffer(sr * 60)
    stderr: list[bytes] = []
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        # stderr drained beside stdout, so a chatty decoder cannot block on a full pipe; the
        # watchdog kills a decoder that hangs (a blocked read then ends)
        drain = threading.Thread(target=lambda: stderr.append(proc.stderr.read()), daemon=True)
        timed_out = threading.Event()
        watchdog = threading.Timer(timeout_s, lambda: (timed_out.set(), proc.kill()))
        drain.start()
        watchdog.start()
        carry, total = b"", 0
        try:
            while chunk := proc.stdout.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise AudioError(path, f"longer than {MAX_DECODED_HOURS:g} h of audio: not analysed")
                data = carry + chunk
                whole = len(data) - len(data) % 4
                out.append(np.frombuffer(data[:whole], dtype="<f4"))
                carry = data[whole:]
            proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            drain.join(timeout=5)
    if timed_out.is_set():
        raise AudioError(path, f"ffmpeg took longer than {timeout_s:g} s: stopped", permanent=False)
    if proc.returncode != 0:
        msg = b"".join(stderr).decode("utf-8", "replace").strip().splitlines()
        if not path.exists():
            raise AudioError(path, "file disappeared while ffmpeg read it", permanent=False)
        raise AudioError(path, f"ffmpeg could not decode it ({msg[-1] if msg else 'exit ' + str(proc.returncode)})")
    return out.array(), sr, 1  # ffmpeg already downmixed; source rate is not reported on this path


def decode(
    path: str | Path,
    sr: int = ANALYSIS_SR,
    *,
    min_duration_s: float = MIN_DURATION_S,
    max_duration_s: float | None = None,
) -> DecodedAudio:
    """Decode ``path`` to mono float32 at ``sr`` and reject what cannot be analysed.

    Raises :class:`AudioError` naming the file and the reason: unreadable, not audio, truncated,
    shorter than ``min_duration_s``, silent, or only a DC offset.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file does not exist", permanent=False)
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioError(path, f"cannot stat file ({exc.strerror})", permanent=False) from None
    if size == 0:
        raise AudioError(path, "file is empty (0 bytes)")
    if path.suffix.lower() in FFMPEG_EXTENSIONS:
        y, source_sr, channels = _decode_ffmpeg(path, sr, max_duration_s)
    elif path.suffix.lower() in CHATTY_SUFFIXES:
        # libmpg123 prints "Note: Illegal Audio-MPEG-Header …" to fd 2 for non-MPEG data before
        # libsndfile reports the error; keep it out of the terminal (debug log in verbose mode)
        chatter: list[str] = []
        try:
            with captured_stderr() as chatter:
                y, source_sr, channels = _decode_soundfile(path, sr, max_duration_s)
        finally:
            if chatter and chatter[0].strip():
                log.debug("decoder output for %s:\n%s", path, chatter[0].rstrip())
    else:
        y, source_sr, channels = _decode_soundfile(path, sr, max_duration_s)
    duration = len(y) / sr
    if duration < min_duration_s:
        raise AudioError(path, f"too short: {duration:.2f} s of audio, at least {min_duration_s:g} s needed")
    if not np.all(np.isfinite(y)):
        raise AudioError(path, "decoded samples contain NaN or infinity")
    peak = float(np.max(np.abs(y)))
    if peak <= 10 ** (SILENCE_PEAK_DB / 20):
        raise AudioError(
            path, f"silent: peak level {20 * np.log10(max(peak, 1e-12)):.0f} dBFS is below {SILENCE_PEAK_DB:.0f} dBFS"
        )
    if float(np.max(y) - np.min(y)) <= 10 ** (SILENCE_PEAK_DB / 20):
        raise AudioError(path, "no signal: the file is a constant (DC) level")
    return DecodedAudio(y=y, sr=sr, source_sr=source_sr, source_channels=channels, duration_s=duration)


class SharedDecode:
    """One decode of a file for every pass that reads it (the features, the notes and the learned
    embedding of a track): decoded on first use at ``ANALYSIS_SR``, kept for the others, and
    resampled for a pass that wants another rate. A decode that failed fails every pass the same
    way, without a second attempt."""

    def __init__(self, path: str | Path):
        self.path = path
        self._audio: DecodedAudio | None = None
        self._error: AudioError | None = None
        self.decodes = 0  # how often the file was read (at most once)

    def get(self, sr: int = ANALYSIS_SR) -> DecodedAudio:
        if self._error is not None:
            raise self._error
        if self._audio is None:
            self.decodes += 1
            try:
                self._audio = decode(self.path)
            except AudioError as exc:
                self._error = exc
                raise
        audio = self._audio
        if sr == audio.sr:
            return audio
        y = soxr.resample(audio.y, audio.sr, sr, quality="HQ").astype(np.float32, copy=False)
        return DecodedAudio(y, sr, audio.source_sr, audio.source_channels, len(y) / sr)

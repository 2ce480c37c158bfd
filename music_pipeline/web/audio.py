"""Audio for the browser: the library file as it is, or transcoded when browsers cannot play it.

- Formats every current browser plays (mp3, Ogg Vorbis/Opus, FLAC, PCM/float WAV, AAC/MP4,
  WebM) are sent as they are, with HTTP Range (206 partial content) from Starlette's
  ``FileResponse``.
- Files libsndfile reads but browsers do not (AIFF, ADPCM WAV, …) are served as a 16-bit PCM WAV
  computed on the fly: its size is known from the header (44 bytes + frames × channels × 2), so
  Range requests map to exact frame offsets and seeking works without a temporary file.
- Files only ffmpeg decodes (WMA, APE, WavPack, …) are piped through ``ffmpeg`` into WAV, whole
  (no Range: the length is unknown before decoding); without ffmpeg they get 415.

Only files of the library are served, by their track key: the key is looked up in the index and
its stored library path joined under the library root with ``storage.safe_join`` — nothing from
the request reaches the file system.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from starlette.responses import FileResponse, Response, StreamingResponse

from music_pipeline.audio.scan import FFMPEG_EXTENSIONS

# extension → content type of formats browsers play natively
NATIVE_TYPES = {
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".flac": "audio/flac",
    ".wav": "audio/wav",
    ".wave": "audio/wav",
    ".m4a": "audio/mp4",
    ".mp4": "audio/mp4",
    ".aac": "audio/aac",
    ".webm": "audio/webm",
}
# WAV sample formats browsers decode; other WAV codecs (ADPCM, GSM, 64-bit float, …) are transcoded
BROWSER_WAV_SUBTYPES = {"PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT"}
WAV_HEADER_BYTES = 44
CHUNK_FRAMES = 1 << 15
# transcodes running at once: each keeps a core busy, so more than the cores only slows them all
MAX_TRANSCODES = max(2, os.cpu_count() or 2)
RETRY_AFTER_S = 2
_TRANSCODES = threading.BoundedSemaphore(MAX_TRANSCODES)


class AudioUnavailable(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class _TranscodeSlot:
    """A transcode's body holding one of the ``MAX_TRANSCODES`` slots until it ends, fails, or is
    dropped unread (a client that went away before the first byte)."""

    def __init__(self, body):
        self.held, self.body, self.slots = False, body, _TRANSCODES
        if not self.slots.acquire(blocking=False):
            raise AudioUnavailable(
                503, f"{MAX_TRANSCODES} transcodes are running: try again in a moment", retry_after=RETRY_AFTER_S
            )
        self.held = True

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self.body)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self.held:
            self.held = False
            self.slots.release()
            close = getattr(self.body, "close", None)
            if close:
                close()

    __del__ = release


@dataclass(frozen=True)
class Delivery:
    """How one library file reaches the browser."""

    mode: str  # native | wav | ffmpeg
    content_type: str
    frames: int = 0
    channels: int = 0
    samplerate: int = 0

    @property
    def wav_size(self) -> int:
        return WAV_HEADER_BYTES + self.frames * self.channels * 2


def delivery_for(path: Path) -> Delivery:
    ext = path.suffix.lower()
    if ext in (".wav", ".wave"):
        info = sf.info(str(path))
        if info.subtype in BROWSER_WAV_SUBTYPES:
            return Delivery("native", "audio/wav")
        return Delivery("wav", "audio/wav", info.frames, info.channels, info.samplerate)
    if ext in NATIVE_TYPES:
        return Delivery("native", NATIVE_TYPES[ext])
    if ext in FFMPEG_EXTENSIONS:
        return Delivery("ffmpeg", "audio/wav")
    info = sf.info(str(path))  # AIFF/AIFC and whatever else libsndfile reads
    return Delivery("wav", "audio/wav", info.frames, info.channels, info.samplerate)


def wav_header(frames: int, channels: int, samplerate: int) -> bytes:
    data = frames * channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", min(0xFFFFFFFF, 36 + data))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, samplerate, samplerate * channels * 2, channels * 2, 16)
        + b"data"
        + struct.pack("<I", min(0xFFFFFFFF, data))
    )


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` range as [start, end) within ``size``; None = whole file. Several ranges
    are answered with the first (browsers ask for one). Raises AudioUnavailable(416)."""
    if not header:
        return None
    m = _RANGE.match(header.split(",")[0].strip())
    if not m or m.groups() == ("", ""):
        return None  # malformed: RFC 9110 lets a server ignore it and send everything
    a, b = m.groups()
    if a == "":  # the last b bytes
        start, end = max(0, size - int(b)), size
    else:
        start, end = int(a), (min(size, int(b) + 1) if b else size)
    if start >= size or start >= end:
        raise AudioUnavailable(416, f"range {header} is outside the {size} bytes of this stream")
    return start, end


def _wav_bytes(path: Path, d: Delivery, start: int, end: int):
    """Bytes [start, end) of the WAV rendering of ``path``, streamed in chunks."""
    header = wav_header(d.frames, d.channels, d.samplerate)
    if start < WAV_HEADER_BYTES:
        yield header[start : min(end, WAV_HEADER_BYTES)]
        start = WAV_HEADER_BYTES
    if start >= end:
        return
    frame_bytes = d.channels * 2
    first, skip = divmod(start - WAV_HEADER_BYTES, frame_bytes)
    remaining = end - start
    with sf.SoundFile(str(path)) as f:
        f.seek(first)
        while remaining > 0:
            block = f.read(CHUNK_FRAMES, dtype="int16", always_2d=True)
            if not len(block):
                break
            data = block.astype("<i2", copy=False).tobytes()[skip:]
            skip = 0
            chunk = data[:remaining]
            remaining -= len(chunk)
            yield chunk
    if remaining > 0:  # the header promised more frames than the decoder gave: pad with silence
        yield b"\0" * remaining


def _ffmpeg_stream(path: Path, ffmpeg: str):
    proc = subprocess.Popen(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-f", "wav", "-acodec", "pcm_s16le", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        while chunk := proc.stdout.read(1 << 16):
            yield chunk
    finally:
        proc.kill()
        proc.wait()


def audio_response(path: Path, delivery: Delivery, range_header: str | None, method: str = "GET") -> Response:
    if delivery.mode == "native":
        return FileResponse(path, media_type=delivery.content_type)
    if delivery.mode == "ffmpeg":
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise AudioUnavailable(415, f"{path.suffix} needs transcoding with ffmpeg, which is not installed")
        if method == "HEAD":  # headers only: no decoder is started to answer it
            return Response(media_type=delivery.content_type, headers={"Accept-Ranges": "none"})
        return StreamingResponse(
            _TranscodeSlot(_ffmpeg_stream(path, ffmpeg)),
            media_type=delivery.content_type,
            headers={"Accept-Ranges": "none"},
        )
    size = delivery.wav_size
    rng = parse_range(range_header, size)
    start, end = rng or (0, size)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(end - start),
        "X-Transcoded-From": path.suffix.lower().lstrip("."),
    }
    status = 200
    if rng is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    body = iter(()) if method == "HEAD" else _TranscodeSlot(_wav_bytes(path, delivery, start, end))
    return StreamingResponse(body, status_code=status, media_type=delivery.content_type, headers=headers)

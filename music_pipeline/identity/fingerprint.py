"""Landmark fingerprints (Wang 2003, the "Shazam" method) of a signal.

The signal is resampled to ``FP_SR``, its log-magnitude spectrogram is searched for local peaks
(at most ``PEAKS_PER_S`` per second, the strongest), and each peak (the anchor) is paired with the
next ``FAN_OUT`` peaks in a target zone after it. A pair's frequency, frequency step and time step
make one 32-bit hash; the anchor's frame is where it sits in the track. Peaks and their spacing
survive re-encoding, level changes and light noise; a clip shares many hashes with its track at
one constant time offset, and almost none with other music.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from music_pipeline.audio.decode import ANALYSIS_SR

FP_SR = ANALYSIS_SR  # the shared decode's rate: no resampling on the way (it would cost more than the peaks)
N_FFT = 1024
HOP = 512
FRAME_S = HOP / FP_SR  # seconds per fingerprint frame (23.2 ms)
MIN_BIN, MAX_BIN = 3, 187  # ~65 Hz .. ~4 kHz: below the cut of low-bitrate encoders
PEAK_NEIGHBOURHOOD = (15, 11)  # (bins, frames) of the local-maximum filter
PEAKS_PER_S = 30
FAN_OUT = 6
MAX_DT = 63  # frames (6 bits)
MAX_DF = 127  # bins either side (8 bits with the sign offset)
F_BITS, DF_BITS, DT_BITS = 9, 8, 6  # 23 bits of hash


@dataclass
class Fingerprint:
    hashes: np.ndarray  # uint32
    frames: np.ndarray  # int32: the anchor's frame (× FRAME_S seconds)
    duration_s: float
    compute_seconds: float = 0.0

    def to_arrays(self) -> dict:
        return {
            "hashes": self.hashes,
            "frames": self.frames,
            "duration_s": np.float64(self.duration_s),
            "compute_seconds": np.float64(self.compute_seconds),
        }

    @classmethod
    def from_arrays(cls, z) -> Fingerprint:
        return cls(
            z["hashes"].astype(np.uint32, copy=False),
            z["frames"].astype(np.int32, copy=False),
            float(z["duration_s"]),
            float(z["compute_seconds"]),
        )


def _spectrogram(y: np.ndarray) -> np.ndarray:
    """log-magnitude, (bins MIN_BIN..MAX_BIN) × frames, float32."""
    n = 1 + max(0, (len(y) - N_FFT) // HOP)
    if len(y) < N_FFT:
        y = np.pad(y, (0, N_FFT - len(y)))
    frames = np.lib.stride_tricks.as_strided(y, shape=(n, N_FFT), strides=(y.strides[0] * HOP, y.strides[0]))
    from scipy import fft

    window = np.hanning(N_FFT).astype(np.float32)
    spec = fft.rfft(frames * window, axis=1)[:, MIN_BIN:MAX_BIN]
    power = spec.real**2 + spec.imag**2
    return np.log(power.T + np.float32(1e-10))


def running_max(x: np.ndarray, width: int, axis: int) -> np.ndarray:
    """The centred running maximum of ``width`` along ``axis``, −inf beyond the edges: exactly
    ``scipy.ndimage.maximum_filter1d(mode="constant", cval=-inf)``, by doubling windows (log2(width)
    array maxima), which measured 5× faster than scipy's filter on fingerprint spectrograms."""
    x = np.moveaxis(x, axis, 0)
    n, left = x.shape[0], width // 2
    pad = np.full((width - 1, *x.shape[1:]), -np.inf, dtype=x.dtype)
    cur = np.concatenate([pad[:left], x, pad[left:]])
    w = 1
    while 2 * w <= width:
        cur = np.maximum(cur[:-w], cur[w:])
        w *= 2
    return np.moveaxis(np.maximum(cur[:n], cur[width - w : width - w + n]), 0, axis)


def peaks(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frames, bins) of the spectral peaks of ``y`` (at ``FP_SR``), in time order."""
    s = _spectrogram(np.ascontiguousarray(y, dtype=np.float32))
    local = running_max(running_max(s, PEAK_NEIGHBOURHOOD[1], axis=1), PEAK_NEIGHBOURHOOD[0], axis=0)
    # a peak must stand out of its frame's level (silence and flat noise give none)
    floor = s.mean(axis=0, keepdims=True) + np.float32(2.0)
    fb, ft = np.nonzero((s == local) & (s > floor))
    if len(ft) == 0:
        return ft.astype(np.int32), fb.astype(np.int32)
    # density cap: the strongest PEAKS_PER_S of every second
    strength = s[fb, ft]
    block = ft // round(1.0 / FRAME_S)
    order = np.lexsort((-strength, block))
    block_sorted = block[order]
    starts = np.searchsorted(block_sorted, block_sorted, side="left")
    rank = np.arange(len(order)) - starts
    keep = order[rank < PEAKS_PER_S]
    keep = keep[np.lexsort((fb[keep], ft[keep]))]
    return ft[keep].astype(np.int32), fb[keep].astype(np.int32)


def landmarks(frames: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, anchor frames): each peak paired with the next FAN_OUT peaks within MAX_DT frames."""
    hs, ts = [], []
    n = len(frames)
    for k in range(1, FAN_OUT + 1):
        if n <= k:
            break
        dt = frames[k:] - frames[:-k]
        df = bins[k:] - bins[:-k]
        ok = (dt > 0) & (dt <= MAX_DT) & (np.abs(df) <= MAX_DF)
        f1 = bins[:-k][ok].astype(np.uint32)
        h = (f1 << (DF_BITS + DT_BITS)) | ((df[ok] + MAX_DF).astype(np.uint32) << DT_BITS) | dt[ok].astype(np.uint32)
        hs.append(h)
        ts.append(frames[:-k][ok])
    if not hs:
        return np.zeros(0, np.uint32), np.zeros(0, np.int32)
    return np.concatenate(hs).astype(np.uint32), np.concatenate(ts).astype(np.int32)


def fingerprint_signal(y: np.ndarray, sr: int) -> Fingerprint:
    """The landmarks of a mono signal at any rate (resampled to FP_SR)."""
    import soxr

    t0 = time.perf_counter()
    if sr != FP_SR:
        y = soxr.resample(y, sr, FP_SR, quality="LQ").astype(np.float32, copy=False)
    h, t = landmarks(*peaks(y))
    return Fingerprint(h, t, len(y) / FP_SR, time.perf_counter() - t0)

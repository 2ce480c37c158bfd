"""Compute every frame-level representation of a track once.

One STFT feeds the mel spectrogram (and from it MFCC, onset strength and the segments) and the
spectral descriptors; one CQT feeds chroma and tonnetz. Long tracks are processed in blocks of
frames so peak memory stays bounded: the STFT blocks are exact (the same frames a whole-signal
STFT gives), the CQT blocks are computed with a margin of context on each side and trimmed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import librosa
import numpy as np
from librosa.core import constantq as _constantq

SR = 22_050
N_FFT = 2048
HOP = 512
N_MELS = 128
N_MFCC = 20
CQT_BINS_PER_OCTAVE = 36
CQT_OCTAVES = 7
CQT_FMIN = librosa.note_to_hz("C1")
# Chroma and tonnetz enter the embedding as means and standard deviations, which a 93 ms CQT hop
# reproduces to three decimals at a third of the cost of a 23 ms hop.
CQT_HOP = 4 * HOP
HF_CUTOFF_HZ = 4000.0
FLATNESS_AMIN = 1e-10
BLOCK_FRAMES = 8192  # ~3 min of STFT frames per block (~270 MB of STFT workspace at most)
_CQT_MARGIN_FRAMES = 24  # ~2.2 s of context each side, more than the longest CQT filter (~0.5 s)


@dataclass
class Spectra:
    """Frame-level matrices of one track (float32, frames on the last axis)."""

    sr: int
    hop: int
    n_samples: int
    log_mel: np.ndarray  # (128, T) dB re 1.0
    mfcc: np.ndarray  # (20, T)
    centroid: np.ndarray  # (T,)
    rolloff: np.ndarray
    bandwidth: np.ndarray
    contrast: np.ndarray  # (7, T)
    flatness: np.ndarray  # (T,)
    rms: np.ndarray  # (T,)
    zcr: np.ndarray  # (T,)
    spectral_entropy: np.ndarray  # (T,) normalised 0..1
    hf_ratio: np.ndarray  # (T,) power above HF_CUTOFF_HZ / total
    cqt: np.ndarray  # (252, T / 4) magnitude, hop CQT_HOP
    chroma: np.ndarray  # (12, T / 4), hop CQT_HOP

    @property
    def n_frames(self) -> int:
        return self.log_mel.shape[1]

    @property
    def frame_rate(self) -> float:
        return self.sr / self.hop

    @property
    def cqt_frame_rate(self) -> float:
        return self.sr / CQT_HOP


_MEL_BASIS: dict[int, np.ndarray] = {}


# librosa.cqt rebuilds its constant-Q filter bank (one FFT basis per octave) on every call: for a
# one-minute track that was 60 % of the CQT. The bank depends only on the sample rate and the bin
# layout, so each process builds it once and hands librosa a copy (``vqt`` rescales it in place).
# The values are librosa's own, bit for bit (pinned by a test against an uncached librosa.cqt).
_FILTER_FFT = "__vqt_filter_fft"  # module-level in librosa.core.constantq (librosa 0.11)
_FILTER_CACHE: dict[tuple, tuple] = {}
_FILTER_CACHE_MAX = 64


def _filter_key(sr, freqs, filter_scale, norm, sparsity, hop_length, window, gamma, dtype, alpha) -> tuple:
    arr = lambda a: None if a is None else np.asarray(a, dtype=np.float64).tobytes()
    return (
        float(sr),
        arr(freqs),
        float(filter_scale),
        norm,
        float(sparsity),
        hop_length,
        repr(window),
        float(gamma),
        np.dtype(dtype).str,
        arr(alpha),
    )


def _install_filter_cache() -> None:
    original = getattr(_constantq, _FILTER_FFT, None)
    if original is None or getattr(original, "_music_pipeline_cached", False):
        return

    def cached(
        sr,
        freqs,
        filter_scale,
        norm,
        sparsity,
        hop_length=None,
        window="hann",
        gamma=0.0,
        dtype=np.complex64,
        alpha=None,
    ):
        key = _filter_key(sr, freqs, filter_scale, norm, sparsity, hop_length, window, gamma, dtype, alpha)
        hit = _FILTER_CACHE.get(key)
        if hit is None:
            if len(_FILTER_CACHE) >= _FILTER_CACHE_MAX:  # other layouts than ours: stay bounded
                _FILTER_CACHE.clear()
            hit = original(
                sr,
                freqs,
                filter_scale,
                norm,
                sparsity,
                hop_length=hop_length,
                window=window,
                gamma=gamma,
                dtype=dtype,
                alpha=alpha,
            )
            _FILTER_CACHE[key] = hit
        basis, n_fft, lengths = hit
        return basis.copy(), n_fft, lengths.copy()

    cached._music_pipeline_cached = True
    cached.__wrapped__ = original
    setattr(_constantq, _FILTER_FFT, cached)


_install_filter_cache()


def _mel_basis(sr: int) -> np.ndarray:
    if sr not in _MEL_BASIS:
        _MEL_BASIS[sr] = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)
    return _MEL_BASIS[sr]


def centroid_and_bandwidth(S: np.ndarray, freqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """librosa.feature.spectral_centroid / spectral_bandwidth (p=2, norm=True) as two matrix-vector
    products: librosa's versions normalise the whole spectrogram twice, which was a third of the
    pass. Equality with librosa is pinned by a test."""
    total = S.sum(axis=0, dtype=np.float64)
    safe = np.where(total > 0, total, 1.0)
    f = freqs.astype(np.float32)  # float32 BLAS products; the ratios are formed in float64
    moments = np.stack([f, f**2]) @ S
    centroid = moments[0].astype(np.float64) / safe
    second = moments[1].astype(np.float64) / safe
    bandwidth = np.sqrt(np.maximum(second - centroid**2, 0.0))
    silent = total <= np.finfo(np.float32).tiny
    centroid[silent], bandwidth[silent] = 0.0, 0.0
    return centroid.astype(np.float32), bandwidth.astype(np.float32)


def rolloff(S: np.ndarray, freqs: np.ndarray, roll_percent: float = 0.85) -> np.ndarray:
    """librosa.feature.spectral_rolloff without its NaN-masked copy of the spectrogram (pinned by a test)."""
    cumulative = np.cumsum(S, axis=0, dtype=np.float32)
    reached = cumulative >= roll_percent * cumulative[-1]
    return freqs[np.argmax(reached, axis=0)].astype(np.float32)


_CONTRAST_BANDS: dict[tuple[int, int], list[tuple[slice, int]]] = {}


def _contrast_bands(
    sr: int, n_bins: int, n_bands: int = 6, fmin: float = 200.0, quantile: float = 0.02
) -> list[tuple[slice, int]]:
    """librosa.feature.spectral_contrast's octave bands as row slices, and how many bins each
    band's peak/valley averages (built once per sample rate)."""
    key = (sr, n_bins)
    if key not in _CONTRAST_BANDS:
        freq = librosa.fft_frequencies(sr=sr, n_fft=2 * (n_bins - 1))
        octa = np.zeros(n_bands + 2)
        octa[1:] = fmin * (2.0 ** np.arange(0, n_bands + 1))
        bands = []
        for k, (f_low, f_high) in enumerate(itertools.pairwise(octa)):
            idx = np.flatnonzero((freq >= f_low) & (freq <= f_high))
            lo = idx[0] - 1 if k > 0 else idx[0]
            hi = n_bins if k == n_bands else idx[-1] + 1
            count = hi - lo
            rows = slice(lo, hi if k == n_bands else hi - 1)  # librosa drops a band's top bin, but not the last band's
            bands.append((rows, int(max(np.rint(quantile * count), 1))))
        _CONTRAST_BANDS[key] = bands
    return _CONTRAST_BANDS[key]


def spectral_contrast(S: np.ndarray, sr: int) -> np.ndarray:
    """librosa.feature.spectral_contrast(S=S, sr=sr) over row slices instead of boolean masks (no
    copy of each band before its sort); pinned to librosa by a test."""
    bands = _contrast_bands(sr, S.shape[0])
    valley = np.zeros((len(bands), S.shape[1]))
    peak = np.zeros_like(valley)
    for k, (rows, idx) in enumerate(bands):
        sub = S[rows]
        n = sub.shape[0]
        ordered = np.sort(sub, axis=0)
        valley[k] = ordered[:idx].mean(axis=0)
        peak[k] = ordered[n - idx :].mean(axis=0)
    return librosa.power_to_db(peak) - librosa.power_to_db(valley)


def _centred_segment(y: np.ndarray, f0: int, f1: int) -> np.ndarray:
    """Samples under frames [f0, f1) of a centred STFT, zero-padded at the signal's ends only
    (no padded copy of the whole signal)."""
    start, stop = f0 * HOP - N_FFT // 2, (f1 - 1) * HOP + N_FFT // 2
    seg = y[max(0, start) : max(0, min(len(y), stop))]
    if start < 0 or stop > len(y):
        seg = np.pad(seg, (max(0, -start), max(0, stop - len(y))), mode="constant")
    return seg


def entropy_and_flatness(power: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised spectral entropy and librosa.feature.spectral_flatness (amin 1e-10, power 2) from
    one log of the floored power spectrum (pinned to librosa by a test)."""
    floored = np.maximum(power, FLATNESS_AMIN)
    log_power = np.log(floored)
    plogp = (power * log_power).sum(axis=0) / np.log(2.0)
    entropy = (np.log2(total) - plogp / total) / np.log2(power.shape[0])
    entropy = np.where(power.sum(axis=0) > 0, np.clip(entropy, 0.0, 1.0), 0.0)  # a silent frame has no spread
    flatness = np.exp(log_power.mean(axis=0)) / floored.mean(axis=0)
    return entropy, flatness


def _stft_block_features(y: np.ndarray, f0: int, f1: int, sr: int) -> dict[str, np.ndarray]:
    """Features of frames [f0, f1); exact w.r.t. a whole-signal centred STFT."""
    seg = _centred_segment(y, f0, f1)
    S = np.abs(librosa.stft(seg, n_fft=N_FFT, hop_length=HOP, center=False)).astype(np.float32)
    power = S**2
    mel_power = _mel_basis(sr) @ power
    log_mel = librosa.power_to_db(mel_power, ref=1.0, amin=1e-10, top_db=None)
    freqs = librosa.fft_frequencies(sr=sr, n_fft=N_FFT)
    total = power.sum(axis=0) + 1e-12
    # H = log2(total) - sum(P log2 P) / total: one log pass, no normalised copy of the matrix
    entropy, flatness = entropy_and_flatness(power, total)
    centroid, bandwidth = centroid_and_bandwidth(S, freqs)
    frames = librosa.util.frame(seg, frame_length=N_FFT, hop_length=HOP)
    signs = np.signbit(frames)
    zcr = (signs[1:] != signs[:-1]).mean(axis=0)
    return {
        "log_mel": log_mel,
        "mfcc": librosa.feature.mfcc(S=log_mel, n_mfcc=N_MFCC),
        "centroid": centroid,
        "rolloff": rolloff(S, freqs),
        "bandwidth": bandwidth,
        "contrast": spectral_contrast(S, sr),
        "flatness": flatness.astype(np.float32),
        "rms": librosa.feature.rms(S=S, frame_length=N_FFT)[0],
        "zcr": zcr.astype(np.float32),
        "spectral_entropy": entropy.astype(np.float32),
        "hf_ratio": (power[int(np.searchsorted(freqs, HF_CUTOFF_HZ)) :].sum(axis=0) / total).astype(
            np.float32
        ),  # a view, not a copy
    }


def _cqt_block(y: np.ndarray, c0: int, c1: int, n_cqt_frames: int, sr: int) -> np.ndarray:
    """CQT frames [c0, c1) (hop CQT_HOP) computed with up to _CQT_MARGIN_FRAMES of context per side."""
    m0 = min(c0, _CQT_MARGIN_FRAMES)
    m1 = min(n_cqt_frames - c1, _CQT_MARGIN_FRAMES)
    seg = y[(c0 - m0) * CQT_HOP : (c1 + m1) * CQT_HOP]
    C = np.abs(
        librosa.cqt(
            seg,
            sr=sr,
            hop_length=CQT_HOP,
            fmin=CQT_FMIN,
            n_bins=CQT_BINS_PER_OCTAVE * CQT_OCTAVES,
            bins_per_octave=CQT_BINS_PER_OCTAVE,
            tuning=0.0,
        )
    ).astype(np.float32)
    C = C[:, m0 : m0 + (c1 - c0)]
    if C.shape[1] < c1 - c0:  # the last partial frame: repeat the edge
        C = np.pad(C, ((0, 0), (0, c1 - c0 - C.shape[1])), mode="edge")
    return C


def compute_spectra(y: np.ndarray, sr: int = SR, block_frames: int = BLOCK_FRAMES) -> Spectra:
    """All frame-level matrices of the mono signal ``y`` (one STFT pass, one CQT pass)."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    n_frames = 1 + len(y) // HOP  # what librosa.stft(center=True) gives
    n_cqt_frames = 1 + len(y) // CQT_HOP
    ratio = CQT_HOP // HOP
    block_frames = max(ratio, block_frames - block_frames % ratio)  # CQT blocks align with STFT blocks
    blocks: list[dict[str, np.ndarray]] = []
    cqt_blocks: list[np.ndarray] = []
    for f0 in range(0, n_frames, block_frames):
        f1 = min(n_frames, f0 + block_frames)
        blocks.append(_stft_block_features(y, f0, f1, sr))
        c0, c1 = f0 // ratio, min(n_cqt_frames, -(-f1 // ratio))
        cqt_blocks.append(_cqt_block(y, c0, c1, n_cqt_frames, sr))
    joined = {k: np.concatenate([b[k] for b in blocks], axis=-1) for k in blocks[0]}
    cqt = np.concatenate(cqt_blocks, axis=1)
    return Spectra(sr=sr, hop=HOP, n_samples=len(y), cqt=cqt, chroma=chroma_of_cqt(cqt, sr), **joined)


def chroma_of_cqt(cqt: np.ndarray, sr: int = SR) -> np.ndarray:
    """The (12, T) chroma of the embedding from the CQT magnitude (each frame scaled to max 1)."""
    chroma = librosa.feature.chroma_cqt(
        C=cqt, sr=sr, hop_length=CQT_HOP, bins_per_octave=CQT_BINS_PER_OCTAVE, n_octaves=CQT_OCTAVES
    )
    return chroma.astype(np.float32)


def compute_chroma(y: np.ndarray, sr: int = SR, block_frames: int = BLOCK_FRAMES) -> np.ndarray:
    """The chroma ``compute_spectra`` gives, without its STFT (the same CQT blocks): for what needs
    only the harmony of a file (``music-pipeline key FILE``)."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    n_frames = 1 + len(y) // HOP
    n_cqt_frames = 1 + len(y) // CQT_HOP
    ratio = CQT_HOP // HOP
    block_frames = max(ratio, block_frames - block_frames % ratio)
    blocks = [
        _cqt_block(y, f0 // ratio, min(n_cqt_frames, -(-min(n_frames, f0 + block_frames) // ratio)), n_cqt_frames, sr)
        for f0 in range(0, n_frames, block_frames)
    ]
    return chroma_of_cqt(np.concatenate(blocks, axis=1), sr)

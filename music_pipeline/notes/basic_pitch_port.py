# Copyright 2022 Spotify AB
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
#
# Modified for music_pipeline (2026): ported from basic-pitch 0.4.0
# (basic_pitch/constants.py, inference.py, note_creation.py). Changes: no TensorFlow, pretty_midi or
# file I/O; windows are cut from given excerpts of a track instead of the whole file; frame times
# are computed from each window's sample position (basic-pitch approximates them with a fixed
# per-window offset); the "melodia trick" visits the cells above threshold in one sorted pass
# (the same order as repeated argmax, since cells are only ever set to zero); scipy's argrelmax
# is computed with numpy (same indices, no scipy import); pitch bends are not estimated.
# Basic Pitch's NOTICE: "This product includes software developed at Spotify AB
# (http://www.spotify.com/)."
"""The model-specific parts of basic-pitch: input windows, output unwrapping, note creation."""

from __future__ import annotations

import numpy as np

AUDIO_SAMPLE_RATE = 22_050
FFT_HOP = 256
AUDIO_WINDOW_LENGTH = 2  # seconds
ANNOT_N_FRAMES = (AUDIO_SAMPLE_RATE // FFT_HOP) * AUDIO_WINDOW_LENGTH  # 172 output frames per window
AUDIO_N_SAMPLES = AUDIO_SAMPLE_RATE * AUDIO_WINDOW_LENGTH - FFT_HOP  # 43,844 input samples per window
N_OVERLAPPING_FRAMES = 30
OVERLAP_LEN = N_OVERLAPPING_FRAMES * FFT_HOP  # 7,680 samples
WINDOW_HOP = AUDIO_N_SAMPLES - OVERLAP_LEN  # 36,164 samples (1.64 s) of new audio per window
KEPT_FRAMES = ANNOT_N_FRAMES - N_OVERLAPPING_FRAMES  # 142: frames 15..156 of each window are kept
MIDI_OFFSET = 21  # output bin 0 = A0
N_PITCHES = 88
MAX_FREQ_IDX = N_PITCHES - 1

INPUT_NAME = "serving_default_input_2:0"
NOTE_OUTPUT = "StatefulPartitionedCall:1"  # frame activations (windows, 172, 88)
ONSET_OUTPUT = "StatefulPartitionedCall:2"  # onset activations (windows, 172, 88)

# basic-pitch's defaults (predict()): onset 0.5, frame 0.3, minimum note 127.70 ms, energy tolerance 11
ONSET_THRESHOLD = 0.5
FRAME_THRESHOLD = 0.3
MIN_NOTE_MS = 127.70
ENERGY_TOL = 11


def min_note_frames(min_note_ms: float = MIN_NOTE_MS) -> int:
    return int(np.round(min_note_ms / 1000 * (AUDIO_SAMPLE_RATE / FFT_HOP)))


def excerpt_windows(y: np.ndarray, start: int, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Model input windows for the audio ``y[start : start + n_windows * WINDOW_HOP]``.

    Window i reads ``y[start + i*HOP − OVERLAP/2 : … + AUDIO_N_SAMPLES]`` (zeros outside ``y``),
    like basic-pitch's ``get_audio_input`` but with the track's real audio as context where it
    exists. Returns ((n_windows, AUDIO_N_SAMPLES, 1) float32, (n_windows × 142,) frame times in s):
    output frame k of a window is centred on its input sample k·FFT_HOP.
    """
    out = np.zeros((n_windows, AUDIO_N_SAMPLES, 1), np.float32)
    times = np.empty(n_windows * KEPT_FRAMES)
    half = OVERLAP_LEN // 2
    kept = np.arange(N_OVERLAPPING_FRAMES // 2, N_OVERLAPPING_FRAMES // 2 + KEPT_FRAMES)
    for i in range(n_windows):
        a = start + i * WINDOW_HOP - half
        lo, hi = max(a, 0), min(a + AUDIO_N_SAMPLES, len(y))
        if hi > lo:
            out[i, lo - a : hi - a, 0] = y[lo:hi]
        times[i * KEPT_FRAMES : (i + 1) * KEPT_FRAMES] = (a + kept * FFT_HOP) / AUDIO_SAMPLE_RATE
    return out, times


def unwrap(output: np.ndarray) -> np.ndarray:
    """(windows, 172, bins) → (windows × 142, bins): drop the overlapping 15 frames at each side."""
    half = N_OVERLAPPING_FRAMES // 2
    return output[:, half:-half, :].reshape(-1, output.shape[2])


def infer_onsets(onsets: np.ndarray, frames: np.ndarray, n_diff: int = 2) -> np.ndarray:
    """basic-pitch's ``get_infered_onsets``: add onsets where frame activations jump."""
    diffs = []
    for n in range(1, n_diff + 1):
        appended = np.concatenate([np.zeros((n, frames.shape[1]), frames.dtype), frames])
        diffs.append(appended[n:, :] - appended[:-n, :])
    frame_diff = np.min(diffs, axis=0)
    frame_diff[frame_diff < 0] = 0
    frame_diff[:n_diff, :] = 0
    peak = np.max(frame_diff) if frame_diff.size else 0.0
    if peak <= 0:  # no jump anywhere (silence): nothing to add (basic-pitch would divide by zero)
        return onsets
    frame_diff = np.max(onsets) * frame_diff / peak
    return np.maximum(onsets, frame_diff)


def argrelmax_rows(a: np.ndarray) -> tuple[np.ndarray, ...]:
    """``scipy.signal.argrelmax(a, axis=0)`` (order 1, mode "clip"): the cells strictly greater than
    the cells above and below them, first and last rows never. Same indices in the same order;
    here in numpy because importing scipy.signal costs ~0.7 s of CPU, more than a worker's whole
    start-up otherwise."""
    peak = np.zeros(a.shape, bool)
    peak[1:-1] = (a[1:-1] > a[:-2]) & (a[1:-1] > a[2:])
    return np.nonzero(peak)


def _clear(remaining: np.ndarray, rows: slice | int, freq: int) -> None:
    remaining[rows, freq] = 0
    if freq < MAX_FREQ_IDX:
        remaining[rows, freq + 1] = 0
    if freq > 0:
        remaining[rows, freq - 1] = 0


def output_to_notes_polyphonic(
    frames: np.ndarray,
    onsets: np.ndarray,
    onset_thresh: float = ONSET_THRESHOLD,
    frame_thresh: float = FRAME_THRESHOLD,
    min_note_len: int | None = None,
    infer: bool = True,
    melodia_trick: bool = True,
    energy_tol: int = ENERGY_TOL,
) -> list[tuple[int, int, int, float]]:
    """Decode frame/onset activations (frames × 88) to notes (start frame, end frame, MIDI pitch,
    amplitude): basic-pitch's ``output_to_notes_polyphonic`` without frequency limits."""
    min_note_len = min_note_frames() if min_note_len is None else min_note_len
    n_frames = frames.shape[0]
    if n_frames < 3:
        return []
    if infer:
        onsets = infer_onsets(onsets, frames)

    peak_thresh_mat = np.zeros(onsets.shape)
    peaks = argrelmax_rows(onsets)
    peak_thresh_mat[peaks] = onsets[peaks]
    onset_idx = np.where(peak_thresh_mat >= onset_thresh)
    onset_time_idx = onset_idx[0][::-1]  # backwards in time
    onset_freq_idx = onset_idx[1][::-1]

    remaining = np.array(frames, dtype=np.float64)
    notes: list[tuple[int, int, int, float]] = []
    for start, freq in zip(onset_time_idx.tolist(), onset_freq_idx.tolist(), strict=True):
        if start >= n_frames - 1:
            continue
        i, k = start + 1, 0  # k: frames since the energy dropped below the threshold
        column = remaining[:, freq]
        while i < n_frames - 1 and k < energy_tol:
            k = k + 1 if column[i] < frame_thresh else 0
            i += 1
        i -= k
        if i - start <= min_note_len:
            continue
        _clear(remaining, slice(start, i), freq)
        notes.append((start, i, freq + MIDI_OFFSET, float(np.mean(frames[start:i, freq]))))

    if melodia_trick:
        # repeated "argmax of what is left" == one pass over the cells in descending order,
        # skipping those already cleared (ties: lowest flat index first, as np.argmax)
        flat = remaining.ravel()
        candidates = np.flatnonzero(flat > frame_thresh)
        order = candidates[np.argsort(-flat[candidates], kind="stable")]
        n_bins = remaining.shape[1]
        for cell in order.tolist():
            if not flat[cell] > frame_thresh:
                continue
            i_mid, freq = divmod(cell, n_bins)
            remaining[i_mid, freq] = 0
            column = remaining[:, freq]

            i, k = i_mid + 1, 0
            while i < n_frames - 1 and k < energy_tol:
                k = k + 1 if column[i] < frame_thresh else 0
                _clear(remaining, i, freq)
                i += 1
            i_end = i - 1 - k

            i, k = i_mid - 1, 0
            while i > 0 and k < energy_tol:
                k = k + 1 if column[i] < frame_thresh else 0
                _clear(remaining, i, freq)
                i -= 1
            i_start = i + 1 + k

            if i_end - i_start <= min_note_len:
                continue
            notes.append((i_start, i_end, freq + MIDI_OFFSET, float(np.mean(frames[i_start:i_end, freq]))))
    return notes

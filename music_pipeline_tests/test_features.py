import numpy as np
import pytest

from music_pipeline.features.embedding import (
    EMBEDDING_DIM,
    FEATURE_GROUPS,
    FEATURE_NAMES,
    InvalidEmbedding,
    validate_embedding,
)
from music_pipeline.features.extract import features_from_signal
from music_pipeline.features.spectra import compute_spectra
from music_pipeline.synth import SR, clicks, noise, tone


def by_name(vec):
    return dict(zip(FEATURE_NAMES, vec, strict=True))


def test_names_are_641_unique_and_grouped():
    assert len(FEATURE_NAMES) == EMBEDDING_DIM == 641
    assert len(set(FEATURE_NAMES)) == 641
    assert set(FEATURE_GROUPS.values()) == {"timbre", "harmony", "rhythm", "energy", "spectrum"}


@pytest.mark.parametrize("freq, pitch_class", [(440.0, "A"), (261.63, "C"), (392.0, "G")])
def test_tone_peaks_at_its_pitch_class(freq, pitch_class):
    f = by_name(features_from_signal(tone(freq, 6)).embedding)
    chroma = {k.removeprefix("chroma_mean_"): v for k, v in f.items() if k.startswith("chroma_mean_")}
    assert max(chroma, key=chroma.get) == pitch_class


@pytest.mark.parametrize("bpm", [90, 120, 150])
def test_click_tempo(bpm):
    noisy = by_name(features_from_signal(clicks(bpm, 20) + noise(20, amp=0.01)).embedding)
    assert noisy["tempo_bpm"] == pytest.approx(bpm, rel=0.04)
    clean = by_name(features_from_signal(clicks(bpm, 20)).embedding)
    assert clean["tempo_bpm"] == pytest.approx(bpm, rel=0.04)
    assert clean["onset_rate_per_s"] == pytest.approx(bpm / 60, rel=0.1)
    assert clean["pulse_clarity"] > 0.3


def test_brightness_orders_tones_and_noise():
    low = by_name(features_from_signal(tone(200, 6)).embedding)
    high = by_name(features_from_signal(tone(4000, 6)).embedding)
    white = by_name(features_from_signal(noise(6)).embedding)
    assert low["spectral_centroid_mean"] < high["spectral_centroid_mean"]
    assert white["spectral_flatness_mean"] > 10 * low["spectral_flatness_mean"]
    assert white["zcr_mean"] > low["zcr_mean"]


def test_louder_has_more_rms():
    quiet = by_name(features_from_signal(tone(440, 5, amp=0.05)).embedding)
    loud = by_name(features_from_signal(tone(440, 5, amp=0.5)).embedding)
    assert loud["rms_mean"] == pytest.approx(10 * quiet["rms_mean"], rel=0.05)


def test_deterministic():
    y = tone(330, 5) + noise(5, amp=0.05, seed=3)
    a, b = features_from_signal(y), features_from_signal(y)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    np.testing.assert_array_equal(a.segments, b.segments)
    assert a.descriptors == b.descriptors


def test_block_processing_matches_whole_signal():
    """Long tracks are analysed in blocks of frames; the blocks must not change the result."""
    y = 0.5 * tone(220, 30) + 0.3 * clicks(110, 30) + noise(30, amp=0.02, seed=5)
    whole, blocked = compute_spectra(y), compute_spectra(y, block_frames=200)
    np.testing.assert_allclose(blocked.log_mel, whole.log_mel, atol=1e-3)
    np.testing.assert_allclose(blocked.mfcc, whole.mfcc, atol=1e-3)
    np.testing.assert_allclose(blocked.chroma, whole.chroma, atol=0.02)


def test_segments_shape_and_positions():
    y = np.concatenate([tone(200, 10), tone(800, 10), tone(3200, 10)])
    seg = features_from_signal(y).segments
    assert seg.shape == (3, 128, 128) and seg.dtype == np.float16
    # begin/middle/end: the loudest mel band moves up with the tone
    peaks = [int(np.argmax(s.astype(np.float32).mean(axis=1))) for s in seg]
    assert peaks[0] < peaks[1] < peaks[2]


def test_validate_rejects_bad_vectors():
    with pytest.raises(InvalidEmbedding, match="shape"):
        validate_embedding(np.zeros(640))
    v = np.zeros(641)
    v[FEATURE_NAMES.index("tempo_bpm")] = np.nan
    with pytest.raises(InvalidEmbedding, match="tempo_bpm"):
        validate_embedding(v)


def test_descriptors_finite_and_named():
    from music_pipeline.difficulty.audio_descriptors import DESCRIPTOR_NAMES

    d = features_from_signal(clicks(140, 8) + noise(8, amp=0.1)).descriptors
    assert list(d) == DESCRIPTOR_NAMES and len(d) >= 10
    assert all(np.isfinite(v) for v in d.values())
    assert d["tempo_bpm"] == pytest.approx(140, rel=0.05)


def test_fast_centroid_and_bandwidth_equal_librosa():
    import librosa

    from music_pipeline.features.spectra import N_FFT, centroid_and_bandwidth

    rng = np.random.default_rng(0)
    S = np.abs(rng.standard_normal((N_FFT // 2 + 1, 50))).astype(np.float32) ** 3
    S[:, 7] = 0.0  # a silent frame
    freqs = librosa.fft_frequencies(sr=SR, n_fft=N_FFT)
    c, b = centroid_and_bandwidth(S, freqs)
    np.testing.assert_allclose(c, librosa.feature.spectral_centroid(S=S, sr=SR)[0], rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(b, librosa.feature.spectral_bandwidth(S=S, sr=SR)[0], rtol=1e-3, atol=1e-1)


def test_spectral_entropy_bounds():
    white = compute_spectra(noise(5, seed=2)).spectral_entropy.mean()
    pure = compute_spectra(tone(1000, 5)).spectral_entropy.mean()
    assert 0.0 <= pure < 0.5 < white <= 1.0


def test_fast_rolloff_equals_librosa():
    import librosa

    from music_pipeline.features.spectra import N_FFT, rolloff

    rng = np.random.default_rng(1)
    S = np.abs(rng.standard_normal((N_FFT // 2 + 1, 40))).astype(np.float32) ** 4
    freqs = librosa.fft_frequencies(sr=SR, n_fft=N_FFT)
    np.testing.assert_allclose(rolloff(S, freqs), librosa.feature.spectral_rolloff(S=S, sr=SR)[0])


def test_chunked_tempogram_equals_full():
    import librosa

    from music_pipeline.features import rhythm

    env = librosa.onset.onset_strength(y=clicks(123, 40) + noise(40, amp=0.01), sr=SR)
    full = librosa.feature.tempogram(onset_envelope=env, sr=SR).mean(axis=1)
    old = rhythm._TEMPOGRAM_CHUNK
    rhythm._TEMPOGRAM_CHUNK = 300  # force several chunks on a short envelope
    try:
        chunked = rhythm.mean_tempogram(env, SR, 512)[:, 0]
    finally:
        rhythm._TEMPOGRAM_CHUNK = old
    np.testing.assert_allclose(chunked, full, atol=1e-12)


def test_shared_log_flatness_equals_librosa():
    import librosa

    from music_pipeline.features import spectra

    y = tone(300, 3) + noise(3, amp=0.05, seed=7)
    S = np.abs(librosa.stft(y, n_fft=spectra.N_FFT, hop_length=spectra.HOP)).astype(np.float32)
    S[:, 5] = 0.0  # a silent frame hits the amin floor
    power = S**2
    entropy, flatness = spectra.entropy_and_flatness(power, power.sum(axis=0) + 1e-12)
    np.testing.assert_allclose(flatness, librosa.feature.spectral_flatness(S=S)[0], rtol=1e-3, atol=1e-7)
    p = power / (power.sum(axis=0) + 1e-12)
    reference = -(p * np.log2(p + 1e-30)).sum(axis=0) / np.log2(power.shape[0])
    np.testing.assert_allclose(entropy, reference, atol=1e-3)


def test_cached_cqt_filters_give_librosas_cqt_exactly():
    """The per-process CQT filter bank is librosa's own: cached and uncached CQTs are identical,
    including the second call (librosa rescales the basis in place; the cache must hand out copies)."""
    import librosa
    from librosa.core import constantq

    from music_pipeline.features import spectra

    y = (0.5 * tone(220, 6) + 0.3 * clicks(100, 6) + noise(6, amp=0.02, seed=9)).astype(np.float32)
    kw = {
        "sr": SR,
        "hop_length": spectra.CQT_HOP,
        "fmin": spectra.CQT_FMIN,
        "n_bins": spectra.CQT_BINS_PER_OCTAVE * spectra.CQT_OCTAVES,
        "bins_per_octave": spectra.CQT_BINS_PER_OCTAVE,
        "tuning": 0.0,
    }
    cached = getattr(constantq, spectra._FILTER_FFT)
    assert getattr(cached, "_music_pipeline_cached", False), "the filter cache is not installed"
    first, second = librosa.cqt(y, **kw), librosa.cqt(y, **kw)
    setattr(constantq, spectra._FILTER_FFT, cached.__wrapped__)
    try:
        reference = librosa.cqt(y, **kw)
    finally:
        setattr(constantq, spectra._FILTER_FFT, cached)
    np.testing.assert_array_equal(first, reference)
    np.testing.assert_array_equal(second, reference)


def test_fast_spectral_contrast_equals_librosa():
    import librosa

    from music_pipeline.features.spectra import N_FFT, spectral_contrast

    rng = np.random.default_rng(2)
    S = np.abs(rng.standard_normal((N_FFT // 2 + 1, 60))).astype(np.float32) ** 3
    S[:, 11] = 0.0  # a silent frame
    S[:40, 20] = 0.0  # an empty low band
    np.testing.assert_allclose(
        spectral_contrast(S, SR), librosa.feature.spectral_contrast(S=S, sr=SR), rtol=1e-5, atol=1e-4
    )

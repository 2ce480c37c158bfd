"""musicnn (Pons & Serra, ISMIR 2019 LBD; ISC licence): its checkpoints, tags and log-mel front end.

The ``musicnn`` 0.1.0 wheel ships trained checkpoints but pins ``numpy<1.17`` and TF1-era code,
so we never install it: ``pretrained.ensure_files`` takes the checkpoint files out of the wheel
(SHA-256 of the wheel and of every member pinned) and ``network_variables`` reads them with
``checkpoint.py`` (standard library and numpy, no TensorFlow). The network of the wheel's
``musicnn/models.py`` (``build_musicnn``: musically motivated front end, dense mid end, temporal
pooling back end) is written from them as an ONNX graph and run on onnxruntime
(``onnx_graph.py``); ``musicnn_keras.py`` keeps the Keras 3 rebuild it is checked against.

Input, as in the wheel's ``extractor.batch_data``: mono audio at 16 kHz, mel power spectrogram
(n_fft 512, hop 256, 96 Slaney mel bands), ``log10(10000·mel + 1)``, cut into patches of 187
frames (3 s). The wheel casts the mel spectrogram to float16 before the logarithm; 10000·mel
overflows float16 (max 65504) on loud music, every loud frame becomes inf and the network's
outputs degenerate. Here the front end stays float32 throughout (tested against the overflow).
It is computed once per track and fed to both taggers.

Per track at most ``max_patches`` patches are analysed, spread evenly over the whole track, so the
cost is bounded (10 patches = 30 s) however long the file is; each patch's frames are exactly the
frames of a whole-track centred spectrogram.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from music_pipeline import pretrained
from music_pipeline.learned.checkpoint import read_checkpoint

SR = 16_000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, as the wheel's extractor computes it
PATCH_SECONDS = PATCH_FRAMES * HOP / SR
# 30 s of audio per track at most: against 20 patches, genre and same-source retrieval move by
# −0.02…+0.00 (every 95 % interval holds 0) at half the cost (docs/features.md)
DEFAULT_MAX_PATCHES = 10
PENULTIMATE_UNITS = 200

MSD_TAGS = [
    "rock",
    "pop",
    "alternative",
    "indie",
    "electronic",
    "female vocalists",
    "dance",
    "00s",
    "alternative rock",
    "jazz",
    "beautiful",
    "metal",
    "chillout",
    "male vocalists",
    "classic rock",
    "soul",
    "indie rock",
    "Mellow",
    "electronica",
    "80s",
    "folk",
    "90s",
    "chill",
    "instrumental",
    "punk",
    "oldies",
    "blues",
    "hard rock",
    "ambient",
    "acoustic",
    "experimental",
    "female vocalist",
    "guitar",
    "Hip-Hop",
    "70s",
    "party",
    "country",
    "easy listening",
    "sexy",
    "catchy",
    "funk",
    "electro",
    "heavy metal",
    "Progressive rock",
    "60s",
    "rnb",
    "indie pop",
    "sad",
    "House",
    "happy",
]
MTT_TAGS = [
    "guitar",
    "classical",
    "slow",
    "techno",
    "strings",
    "drums",
    "electronic",
    "rock",
    "fast",
    "piano",
    "ambient",
    "beat",
    "violin",
    "vocal",
    "synth",
    "female",
    "indian",
    "opera",
    "male",
    "singing",
    "vocals",
    "no vocals",
    "harpsichord",
    "loud",
    "quiet",
    "flute",
    "woman",
    "male vocal",
    "no vocal",
    "pop",
    "soft",
    "sitar",
    "solo",
    "man",
    "classic",
    "choir",
    "voice",
    "new age",
    "dance",
    "male voice",
    "female vocal",
    "beats",
    "harp",
    "cello",
    "no voice",
    "weird",
    "country",
    "metal",
    "female voice",
    "choral",
]


@dataclass(frozen=True)
class CheckpointSpec:
    name: str  # folder inside the wheel's package
    tags: tuple[str, ...]
    files: dict  # member path -> SHA-256 (index, data, graph)

    @property
    def folder(self) -> str:
        return f"musicnn/{self.name}"


MSD_MUSICNN = CheckpointSpec(
    "MSD_musicnn",
    tuple(MSD_TAGS),
    {
        "musicnn/MSD_musicnn/.index": "87f3e0f3550c8d3bafc840374003e5c8af5eeb5ecf6add61af09a7822d3282c8",
        "musicnn/MSD_musicnn/.data-00000-of-00001": "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6",
        "musicnn/MSD_musicnn/.meta": "046dc0f4f95374c3fc435a1c6619f6d1b9c82794ea2d2ef0a362a59630b5b1ec",
    },
)
MTT_MUSICNN = CheckpointSpec(
    "MTT_musicnn",
    tuple(MTT_TAGS),
    {
        "musicnn/MTT_musicnn/.index": "da2d7bb670b2b31e9bc441bb1bd75eca31b5b061f963cc1f9630c1aff3238f57",
        "musicnn/MTT_musicnn/.data-00000-of-00001": "041f3935e981a65cea739842d30c188d3a7d2adf4410955c8668eb3de4a5acab",
        "musicnn/MTT_musicnn/.meta": "48f2b91a234a1feaaae6b084bd49668428cdfc54912805617582aa585daabb25",
    },
)
CHECKPOINTS = {c.name: c for c in (MSD_MUSICNN, MTT_MUSICNN)}
LICENCE_FILE = (
    "musicnn-0.1.0.dist-info/LICENSE.md",
    "60c4194f702ddd969f969577743546327b4e9db560c07ec286be5cec27f55fcd",
)

# every member we take from the wheel, each with its pinned SHA-256
WEIGHTS = pretrained.with_files(
    pretrained.MUSICNN, {**MSD_MUSICNN.files, **MTT_MUSICNN.files, LICENCE_FILE[0]: LICENCE_FILE[1]}
)


def weights_folder(data_dir=None, log: Callable[[str], None] = lambda _m: None) -> Path:
    """The verified local copy of the wheel's checkpoint files (fetched with pip on first use)."""
    return pretrained.ensure_files(WEIGHTS, data_dir, log)


# ---------------------------------------------------------------- the front end (float32)


def _mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)  # Slaney, as librosa 0.6/0.7


def patch_starts(n_frames: int, max_patches: int = DEFAULT_MAX_PATCHES) -> np.ndarray:
    """First frame of each analysed patch: every non-overlapping patch when there are at most
    ``max_patches`` of them, else ``max_patches`` spread evenly from the first to the last."""
    full = max(1, (n_frames - PATCH_FRAMES) // PATCH_FRAMES + 1) if n_frames >= PATCH_FRAMES else 1
    if full <= max_patches:
        return np.arange(full) * PATCH_FRAMES
    last = n_frames - PATCH_FRAMES
    return np.round(np.linspace(0, last, max_patches)).astype(np.int64)


def log_mel_patches(y: np.ndarray, max_patches: int = DEFAULT_MAX_PATCHES) -> tuple[np.ndarray, np.ndarray]:
    """(patches (P, 187, 96) float32, start times in seconds) of 16 kHz mono audio.

    Each patch is computed from its own slice of the signal with the same framing as a centred
    whole-track STFT (reflect padding at the track's ends, as librosa 0.6/0.7 did), so the cost
    grows with the analysed seconds, not with the track's length. A track shorter than one patch
    is repeated to fill it (the ``repeat-pad`` of the training configuration).
    """
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or not len(y):
        raise ValueError("expected mono audio samples")
    n_frames = 1 + len(y) // HOP
    if n_frames < PATCH_FRAMES:
        y = np.tile(y, int(np.ceil(PATCH_FRAMES * HOP / len(y))) + 1)[: PATCH_FRAMES * HOP]
        n_frames = 1 + len(y) // HOP
    padded = np.pad(y, (N_FFT // 2, N_FFT // 2), mode="reflect")
    basis = _mel_basis()
    starts = patch_starts(n_frames, max_patches)
    span = (PATCH_FRAMES - 1) * HOP + N_FFT
    if len(padded) < int(starts[-1]) * HOP + span:
        padded = np.pad(padded, (0, int(starts[-1]) * HOP + span - len(padded)))
    slices = np.stack([padded[s * HOP : s * HOP + span] for s in starts])  # (P, span)
    power = np.abs(librosa.stft(slices, n_fft=N_FFT, hop_length=HOP, center=False)) ** 2  # (P, 257, 187) float32
    mel = np.matmul(basis, power)  # float32 throughout: 10000·mel cannot overflow as it did in float16
    return np.log10(10000.0 * mel + 1.0).transpose(0, 2, 1).astype(np.float32, copy=False), starts * HOP / SR


# ---------------------------------------------------------------- the checkpoint variables


def network_variables(folder: Path, spec: CheckpointSpec) -> dict[str, np.ndarray]:
    """The network's variables of one checkpoint as numpy arrays (Adam slots and the optimiser's
    beta powers left out), read without TensorFlow (``checkpoint.py``)."""
    variables = read_checkpoint(Path(folder) / spec.folder)
    return {n: v for n, v in variables.items() if "Adam" not in n and "power" not in n}

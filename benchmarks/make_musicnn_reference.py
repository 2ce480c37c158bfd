"""Write ``music_pipeline/learned/musicnn_reference.npz``: the reference the ONNX graph of musicnn
is verified against each time it is written (``learned/onnx_graph.py``).

    python benchmarks/make_musicnn_reference.py

Input: two log-mel patches (2, 187, 96) drawn from ``numpy.random.default_rng(20261204)``,
uniform in [0, 4) (the range of ``log10(10000·mel + 1)`` on music), stored as float16 to keep the
file small and fed to the networks as float32. Outputs: the Keras 3 rebuild's
(``learned/musicnn_keras.py``, the network the stored learned features were computed with)
penultimate layer and tag probabilities for each checkpoint (MSD_musicnn, MTT_musicnn), float32.
Saved with ``np.savez_compressed`` (no pickled objects). Run once; rerun only if the Keras
reference or the checkpoints change.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import common  # noqa: F401 - one BLAS thread and this checkout on sys.path
import numpy as np

SEED = 20261204
OUT = Path(__file__).resolve().parents[1] / "music_pipeline" / "learned" / "musicnn_reference.npz"


def main() -> None:
    from music_pipeline.learned.musicnn import CHECKPOINTS, N_MELS, PATCH_FRAMES
    from music_pipeline.learned.musicnn_keras import Musicnn

    patches16 = np.random.default_rng(SEED).uniform(0.0, 4.0, (2, PATCH_FRAMES, N_MELS)).astype(np.float16)
    out = Musicnn(list(CHECKPOINTS.values())).run(patches16.astype(np.float32))
    arrays = {"input": patches16, "seed": np.int64(SEED)}
    for name, (pen, tags) in out.items():
        arrays[f"{name}_penultimate"] = pen.astype(np.float32)
        arrays[f"{name}_tags"] = tags.astype(np.float32)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()

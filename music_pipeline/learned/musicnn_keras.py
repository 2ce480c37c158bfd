"""The Keras 3 rebuild of musicnn: the reference the ONNX graph (``onnx_graph.py``) is checked
against, and what the stored learned features were computed with before it. Never imported at run
time (it loads TensorFlow): the tests, ``benchmarks/make_musicnn_reference.py`` and
``benchmarks/bench_learned.py`` use it. Layer names are the TF1 variable scopes, so the checkpoint
(read by ``musicnn.network_variables``) maps by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from music_pipeline.learned.musicnn import (
    CHECKPOINTS,
    MSD_MUSICNN,
    N_MELS,
    PATCH_FRAMES,
    PENULTIMATE_UNITS,
    CheckpointSpec,
    network_variables,
    weights_folder,
)
from music_pipeline.quiet import load_tensorflow


def build_network(num_classes: int = 50, n_frames: int = PATCH_FRAMES, n_mels: int = N_MELS):
    """musicnn's ``build_musicnn`` (7774timbraltemporal front end, 64-filter mid end, 200-unit back
    end) in Keras 3. Layer names are the TF1 variable scopes, so the checkpoint maps by name.
    Outputs: [penultimate (batch-normalised dense layer, 200), tag probabilities (sigmoid, 50)]."""
    load_tensorflow()  # its import-time banner stays off the terminal
    import keras
    from keras import layers

    def bn(name):
        return layers.BatchNormalization(epsilon=1e-3, name=name)  # tf.compat.v1.layers defaults

    inp = keras.Input((n_frames, n_mels), name="log_mel")
    x = bn("batch_normalization")(layers.Reshape((n_frames, n_mels, 1))(inp))
    pad7 = layers.ZeroPadding2D(((3, 3), (0, 0)))(x)

    def pooled_over_frequency(t, filters):  # max over the whole frequency axis, then drop it
        return layers.Reshape((n_frames, filters))(layers.MaxPooling2D((1, t.shape[2]))(t))

    front = []
    for conv, norm, width in (
        ("conv2d", "batch_normalization_1", int(0.4 * n_mels)),
        ("conv2d_1", "batch_normalization_2", int(0.7 * n_mels)),
    ):
        t = bn(norm)(layers.Conv2D(204, (7, width), padding="valid", activation="relu", name=conv)(pad7))
        front.append(pooled_over_frequency(t, 204))
    for conv, norm, length in (
        ("conv2d_2", "batch_normalization_3", 128),
        ("conv2d_3", "batch_normalization_4", 64),
        ("conv2d_4", "batch_normalization_5", 32),
    ):
        t = bn(norm)(layers.Conv2D(51, (length, 1), padding="same", activation="relu", name=conv)(x))
        front.append(pooled_over_frequency(t, 51))
    front_features = layers.Concatenate(axis=2)(front)  # (frames, 561)
    width = front_features.shape[-1]

    def mid_conv(t, conv, norm):  # pad time by 3, a (7, all features) kernel, BN, back to (frames, 64, 1)
        c = layers.Conv2D(64, (7, t.shape[2]), padding="valid", activation="relu", name=conv)(
            layers.ZeroPadding2D(((3, 3), (0, 0)))(t)
        )
        return layers.Reshape((n_frames, 64, 1))(bn(norm)(c))

    front4 = layers.Reshape((n_frames, width, 1))(front_features)
    mid1 = mid_conv(front4, "conv2d_5", "batch_normalization_6")
    res2 = layers.Add()([mid_conv(mid1, "conv2d_6", "batch_normalization_7"), mid1])
    res3 = layers.Add()([mid_conv(res2, "conv2d_7", "batch_normalization_8"), res2])
    mid = layers.Reshape((n_frames, width + 3 * 64))(layers.Concatenate(axis=2)([front4, mid1, res2, res3]))

    # temporal pooling: TF1 concatenated [max, mean] on a last axis of 2 and flattened, so the
    # features interleave (max_0, mean_0, max_1, …): rebuilt in the same order
    feats = mid.shape[-1]
    mx = layers.Reshape((feats, 1))(layers.GlobalMaxPooling1D()(mid))
    mean = layers.Reshape((feats, 1))(layers.GlobalAveragePooling1D()(mid))
    pooled = layers.Flatten()(layers.Concatenate(axis=2)([mx, mean]))
    pooled = bn("batch_normalization_9")(pooled)
    dense = layers.Dense(PENULTIMATE_UNITS, activation="relu", name="dense")(pooled)
    penultimate = bn("batch_normalization_10")(dense)
    tags = layers.Activation("sigmoid", name="tags")(layers.Dense(num_classes, name="dense_1")(penultimate))
    return keras.Model(inp, [penultimate, tags], name="musicnn")


_WEIGHT_SUFFIXES = {
    "Conv2D": ("kernel", "bias"),
    "Dense": ("kernel", "bias"),
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
}


def load_weights(model, variables: dict[str, np.ndarray]) -> int:
    """Assign checkpoint variables to the layers of the same name; returns how many were set.
    Every checkpoint variable must be used and every layer weight set (else ValueError)."""
    used = set()
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in _WEIGHT_SUFFIXES:
            continue
        names = [f"{layer.name}/{s}" for s in _WEIGHT_SUFFIXES[kind]]
        missing = [n for n in names if n not in variables]
        if missing:
            raise ValueError(f"checkpoint lacks {missing} for layer {layer.name}")
        values = [variables[n] for n in names]
        for n, v, w in zip(names, values, layer.get_weights(), strict=True):
            if v.shape != w.shape:
                raise ValueError(f"{n}: checkpoint shape {v.shape}, layer expects {w.shape}")
        layer.set_weights(values)
        used.update(names)
    unused = sorted(set(variables) - used)
    if unused:
        raise ValueError(f"checkpoint variables not used by the rebuilt network: {unused[:5]}")
    return len(used)


class Musicnn:
    """One or more musicnn checkpoints, ready to run on log-mel patches."""

    def __init__(
        self,
        specs: Sequence[CheckpointSpec] = (MSD_MUSICNN,),
        data_dir=None,
        log: Callable[[str], None] = lambda _m: None,
    ):
        folder = weights_folder(data_dir, log)
        self.specs = list(specs)
        self.models = {}
        for spec in self.specs:
            model = build_network(len(spec.tags))
            load_weights(model, network_variables(folder, spec))
            self.models[spec.name] = model

    def run(self, patches: np.ndarray, batch: int = 32) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{checkpoint name: (penultimate (P, 200), tag probabilities (P, n_tags))} for (P, 187, 96) patches."""
        patches = np.asarray(patches, dtype=np.float32)
        out = {}
        for name, model in self.models.items():
            pen, tags = [], []
            for i in range(0, len(patches), batch):
                p, t = model(patches[i : i + batch], training=False)
                pen.append(np.asarray(p))
                tags.append(np.asarray(t))
            out[name] = (
                np.concatenate(pen) if pen else np.zeros((0, PENULTIMATE_UNITS), np.float32),
                np.concatenate(tags) if tags else np.zeros((0, len(CHECKPOINTS[name].tags)), np.float32),
            )
        return out

"""musicnn as an ONNX graph, written from the checkpoint's arrays and run on onnxruntime.

The graph is the network of the wheel's ``musicnn/models.py`` (``build_musicnn``) layer for layer,
in the channels-first layout ONNX convolutions take: input ``log_mel`` (batch, 187, 96) float32,
outputs ``penultimate`` (batch, 200) and ``tags`` (batch, n_tags); the batch dimension is dynamic.
It is written once per checkpoint with ``onnx.helper`` from the variables ``checkpoint.py`` reads
(no TensorFlow), checked against reference outputs (``musicnn_reference.npz`` beside this module:
the Keras rebuild's outputs on a fixed seeded input, made by ``benchmarks/make_musicnn_reference.py``)
and cached under ``settings.weights_dir`` as ``musicnn-onnx-v<GRAPH_VERSION>/<name>-<data sha>.onnx``
with a ``.sha256`` sidecar: a file that does not match its sidecar is rebuilt. Running it needs
onnxruntime only; building it also needs ``onnx``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

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

GRAPH_VERSION = "2"  # bump when the written graph changes: it is in the cache folder's name
OPSET = 18
BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization's default, as the checkpoints were trained
REFERENCE = Path(__file__).with_name("musicnn_reference.npz")
# the graph must reproduce the Keras rebuild's outputs on the reference input within these
# (float32 summation order differs between the two runtimes; measured max differences on synthetic
# music are ≤ 1.5e-5 and ≤ 5e-6; the tests pin the same tolerances against Keras)
PENULTIMATE_ATOL = 2e-4
TAGS_ATOL = 2e-5


class GraphMismatch(RuntimeError):
    """The written graph does not reproduce the reference outputs."""


# ---------------------------------------------------------------- writing the graph


def build_graph(variables: dict[str, np.ndarray], num_classes: int, name: str = "musicnn"):
    """The ``onnx.ModelProto`` of one checkpoint's network (see the module docstring)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    used: set[str] = set()
    counter = iter(range(10_000))

    def const(array: np.ndarray, label: str) -> str:
        tensor_name = f"{label}_{next(counter)}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), tensor_name))
        return tensor_name

    def var(key: str) -> np.ndarray:
        used.add(key)
        return np.asarray(variables[key], dtype=np.float32)

    def op(kind: str, inputs: list[str], **attrs) -> str:
        out = f"{kind.lower()}_{next(counter)}"
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def bn(x: str, scope: str) -> str:  # inference batch normalisation over axis 1
        params = [
            const(var(f"{scope}/{p}"), f"{scope}_{p}") for p in ("gamma", "beta", "moving_mean", "moving_variance")
        ]
        return op("BatchNormalization", [x, *params], epsilon=BN_EPSILON)

    def conv(x: str, scope: str, pads: list[int], kernel: np.ndarray) -> str:
        return op("Conv", [x, const(kernel, f"{scope}_w"), const(var(f"{scope}/bias"), f"{scope}_b")], pads=pads)

    def front_branch(x: str, scope: str, norm: str, pads: list[int]) -> str:
        """Conv2D, ReLU, BN, max over the whole frequency axis: (B, 1, frames, mels) -> (B, C, frames).

        Written as Conv, ReduceMax, ReLU, BN so that ReLU and BN run on the pooled tensor, not on
        the (B, C, frames, freq) one (measured ~20 % of the network's time). Exact, not an
        approximation: ReLU and BN (a·x + b per channel, a = gamma / sqrt(var + eps)) are monotone
        in each channel, so max over frequency commutes with them, reversed where a < 0. For those
        channels the convolution's weights and bias are negated (exact in floating point), so the
        ReduceMax yields -min z, and ReLU(-(-min z)) = min ReLU(z), which BN with a < 0 turns into
        the maximum."""
        sign = np.where(var(f"{norm}/gamma") < 0, -1.0, 1.0).astype(np.float32)
        kernel = (
            var(f"{scope}/kernel").transpose(3, 2, 0, 1) * sign[:, None, None, None]
        )  # TF (kh, kw, in, out) -> ONNX
        bias = var(f"{scope}/bias") * sign
        z = op("Conv", [x, const(kernel, f"{scope}_w"), const(bias, f"{scope}_b")], pads=pads)
        pooled = op("ReduceMax", [z, const(np.array([3], np.int64), "axes")], keepdims=0)  # (B, C, frames)
        return bn(op("Relu", [op("Mul", [pooled, const(sign[:, None], f"{scope}_sign")])]), norm)

    def conv_over_features(x: str, scope: str) -> str:
        """A (7, all features) kernel on (B, features, frames) as a 1-D convolution over time,
        zero-padded by 3 frames each side, ReLU then BN: (B, 64, frames)."""
        k = var(f"{scope}/kernel")  # (7, features, 1, 64)
        return op("Relu", [conv(x, scope, [3, 3], k[:, :, 0, :].transpose(2, 1, 0))])

    x = op("Unsqueeze", ["log_mel", const(np.array([1], np.int64), "axes")])  # (B, 1, frames, mels)
    x = bn(x, "batch_normalization")
    front = []
    for scope, norm, width in (
        ("conv2d", "batch_normalization_1", int(0.4 * N_MELS)),
        ("conv2d_1", "batch_normalization_2", int(0.7 * N_MELS)),
    ):
        if var(f"{scope}/kernel").shape[:2] != (7, width):
            raise ValueError(f"{scope}/kernel: expected a (7, {width}) kernel")
        front.append(front_branch(x, scope, norm, [3, 0, 3, 0]))  # time padded by 3, frequency valid
    for scope, norm, length in (
        ("conv2d_2", "batch_normalization_3", 128),
        ("conv2d_3", "batch_normalization_4", 64),
        ("conv2d_4", "batch_normalization_5", 32),
    ):
        before = (length - 1) // 2  # TF "same" padding: the extra row goes after
        front.append(front_branch(x, scope, norm, [before, 0, length - 1 - before, 0]))
    front_features = op("Concat", front, axis=1)  # (B, 561, frames)

    mid1 = bn(conv_over_features(front_features, "conv2d_5"), "batch_normalization_6")
    res2 = op("Add", [bn(conv_over_features(mid1, "conv2d_6"), "batch_normalization_7"), mid1])
    res3 = op("Add", [bn(conv_over_features(res2, "conv2d_7"), "batch_normalization_8"), res2])
    mid = op("Concat", [front_features, mid1, res2, res3], axis=1)  # (B, 753, frames)

    # temporal pooling: TF1 concatenated [max, mean] on a last axis of 2 and flattened, so the
    # features interleave (max_0, mean_0, max_1, …)
    time_axis = const(np.array([2], np.int64), "axes")
    mx = op("ReduceMax", [mid, time_axis], keepdims=1)
    mean = op("ReduceMean", [mid, time_axis], keepdims=1)
    pooled = op("Reshape", [op("Concat", [mx, mean], axis=2), const(np.array([0, -1], np.int64), "shape")])
    pooled = bn(pooled, "batch_normalization_9")
    dense = op(
        "Relu", [op("Gemm", [pooled, const(var("dense/kernel"), "dense_w"), const(var("dense/bias"), "dense_b")])]
    )
    penultimate = bn(dense, "batch_normalization_10")
    logits = op(
        "Gemm", [penultimate, const(var("dense_1/kernel"), "dense_1_w"), const(var("dense_1/bias"), "dense_1_b")]
    )
    nodes.append(helper.make_node("Identity", [penultimate], ["penultimate"]))
    nodes.append(helper.make_node("Sigmoid", [logits], ["tags"]))

    unused = sorted(set(variables) - used)
    if unused:
        raise ValueError(f"checkpoint variables not used by the graph: {unused[:5]}")
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("log_mel", TensorProto.FLOAT, ["batch", PATCH_FRAMES, N_MELS])],
        [
            helper.make_tensor_value_info("penultimate", TensorProto.FLOAT, ["batch", PENULTIMATE_UNITS]),
            helper.make_tensor_value_info("tags", TensorProto.FLOAT, ["batch", num_classes]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="music_pipeline")
    model.ir_version = 8  # IR 8 is what opset 18 came with
    return model


# ---------------------------------------------------------------- sessions and verification


def session(model: bytes | str | Path, threads: int = 1):
    """An onnxruntime session on the CPU with ``threads`` intra-op threads (1 in the build's
    workers: one worker per core) and no inter-op parallelism (the graph is a chain)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def reference_outputs(spec: CheckpointSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input patches, penultimate, tags) of the stored reference for one checkpoint."""
    with np.load(REFERENCE, allow_pickle=False) as z:
        return (
            z["input"].astype(np.float32),
            z[f"{spec.name}_penultimate"].astype(np.float32),
            z[f"{spec.name}_tags"].astype(np.float32),
        )


def verify(sess, spec: CheckpointSpec) -> tuple[float, float]:
    """Max abs differences (penultimate, tags) from the reference; GraphMismatch beyond the tolerance."""
    patches, ref_pen, ref_tags = reference_outputs(spec)
    pen, tags = sess.run(["penultimate", "tags"], {"log_mel": patches})
    d_pen, d_tags = float(np.abs(pen - ref_pen).max()), float(np.abs(tags - ref_tags).max())
    if not (d_pen <= PENULTIMATE_ATOL and d_tags <= TAGS_ATOL):
        raise GraphMismatch(
            f"{spec.name}: ONNX graph differs from the reference by {d_pen:.2e} (penultimate, "
            f"tolerance {PENULTIMATE_ATOL:.0e}) and {d_tags:.2e} (tags, tolerance {TAGS_ATOL:.0e})"
        )
    return d_pen, d_tags


# ---------------------------------------------------------------- the cache


def graph_path(spec: CheckpointSpec, data_dir=None) -> Path:
    from music_pipeline import settings

    data_sha = spec.files[f"{spec.folder}/.data-00000-of-00001"]
    return settings.weights_dir(data_dir) / f"musicnn-onnx-v{GRAPH_VERSION}" / f"{spec.name}-{data_sha[:12]}.onnx"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _cached(path: Path) -> bytes | None:
    """The cached graph's bytes if it matches its sidecar, else None."""
    try:
        data, digest = path.read_bytes(), _sidecar(path).read_text().strip()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == digest else None


def ensure_graph(spec: CheckpointSpec, data_dir=None, log: Callable[[str], None] = lambda _m: None) -> bytes:
    """The verified graph of one checkpoint: from the cache, or written, verified and cached now
    (once; a file lock keeps concurrent workers from building it twice)."""
    from filelock import FileLock

    from music_pipeline.artifacts import atomic_path

    path = graph_path(spec, data_dir)
    if (data := _cached(path)) is not None:
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_name(f".{path.name}.lock"))):
        if (data := _cached(path)) is not None:  # another process built it while we waited
            return data
        log(f"writing the ONNX graph of {spec.name} from its checkpoint (once) …")
        variables = network_variables(weights_folder(data_dir, log), spec)
        data = build_graph(variables, len(spec.tags), spec.name).SerializeToString()
        verify(session(data), spec)
        with atomic_path(path, suffix=".onnx") as tmp:
            tmp.write_bytes(data)
        with atomic_path(_sidecar(path)) as tmp:
            tmp.write_text(hashlib.sha256(data).hexdigest() + "\n")
        return data


# Patches per onnxruntime call. A call's activations take ~55 MB a patch (all 20 of a track: 1.2 GB
# in every worker), and larger calls cost more CPU, not less: 20 patches, one thread, median CPU s
# at 1 / 2 / 5 / 10 per call: 0.872 / 0.884 / 0.909 / 0.948 (all 20 at once: ~1.1).
BATCH_PATCHES = 2


class OnnxMusicnn:
    """musicnn checkpoints on onnxruntime, one session each; ``run`` takes a track's patches in
    calls of ``BATCH_PATCHES``. The same interface as the Keras reference."""

    def __init__(
        self,
        specs: Sequence[CheckpointSpec] = (MSD_MUSICNN,),
        data_dir=None,
        log: Callable[[str], None] = lambda _m: None,
        threads: int = 1,
    ):
        self.specs = list(specs)
        self.sessions = {s.name: session(ensure_graph(s, data_dir, log), threads) for s in self.specs}

    def run(self, patches: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{checkpoint name: (penultimate (P, 200), tag probabilities (P, n_tags))} for (P, 187, 96) patches."""
        patches = np.ascontiguousarray(patches, dtype=np.float32)
        out = {}
        for name, sess in self.sessions.items():
            if not len(patches):
                n = len(CHECKPOINTS[name].tags)
                out[name] = (np.zeros((0, PENULTIMATE_UNITS), np.float32), np.zeros((0, n), np.float32))
                continue
            calls = [
                sess.run(["penultimate", "tags"], {"log_mel": patches[i : i + BATCH_PATCHES]})
                for i in range(0, len(patches), BATCH_PATCHES)
            ]
            out[name] = (np.concatenate([c[0] for c in calls]), np.concatenate([c[1] for c in calls]))
        return out

"""The learned embedding's cost beside the hand-crafted extraction, per core, on the same tracks.

    python benchmarks/bench_learned.py [FILE ...] [--library DIR] [--limit N] [--max-patches 20]
        [--runtime onnx|keras] [--onednn 0|1]

Both run in this process, one file at a time and interleaved file by file (so both see the same
machine load), after a warm-up of each. ``--runtime onnx`` (the default, what the pipeline runs)
uses the ONNX graphs on onnxruntime with one intra-op thread; ``--runtime keras`` the Keras 3
rebuild they were checked against (``learned/musicnn_keras.py``), TensorFlow held to one intra-op
and one inter-op thread. So the figures are per core: audio seconds / CPU seconds of this process. For the learned
embedding two figures are printed: × real time of the *track* (the track's duration / cost, what a
library pays) and × real time of the *analysed audio* (at most max_patches × 3 s per track).
Also printed: the stages of the learned pass (decode at 16 kHz, front end, the two networks) and
the pooled statistics of the embedding over the tracks (mean, max).

``--onednn`` (Keras only) sets TF_ENABLE_ONEDNN_OPTS before TensorFlow loads (1 measured about
twice as fast as 0 here, see docs/features.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--library", default=None)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--max-patches", type=int, default=20)
    ap.add_argument("--runtime", choices=["onnx", "keras"], default="onnx")
    ap.add_argument("--onednn", choices=["0", "1"], default=None)
    args = ap.parse_args()
    if args.onednn is not None:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = args.onednn
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np
    from common import audio_files

    from music_pipeline.audio.decode import decode
    from music_pipeline.features.extract import extract_features, warm_up
    from music_pipeline.learned.musicnn import CHECKPOINTS, PATCH_SECONDS, SR, log_mel_patches

    if args.runtime == "keras":
        import tensorflow as tf

        from music_pipeline.learned.musicnn_keras import Musicnn

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        net = Musicnn(list(CHECKPOINTS.values()))
    else:
        from music_pipeline.learned.onnx_graph import OnnxMusicnn

        net = OnnxMusicnn(list(CHECKPOINTS.values()), threads=1)

    files = audio_files(args.files, args.library)[: args.limit]
    warm_up()
    net.run(np.zeros((2, 187, 96), np.float32))  # first call builds the graph
    hand, learned, dur, analysed, stages, pooled = (
        0.0,
        0.0,
        0.0,
        0.0,
        {"decode": 0.0, "front end": 0.0, "networks": 0.0},
        [],
    )
    for f in files:
        t0 = time.process_time()
        feats = extract_features(f)
        hand += time.process_time() - t0
        t0 = time.process_time()
        y = decode(f, SR).y
        t1 = time.process_time()
        patches, _ = log_mel_patches(y, args.max_patches)
        t2 = time.process_time()
        out = net.run(patches)
        t3 = time.process_time()
        stages["decode"] += t1 - t0
        stages["front end"] += t2 - t1
        stages["networks"] += t3 - t2
        learned += t3 - t0
        dur += feats.duration_s
        analysed += len(patches) * PATCH_SECONDS
        pen = out["MSD_musicnn"][0]
        pooled.append(np.concatenate([pen.mean(0), pen.max(0)]))
        print(f"  {f.name}: {feats.duration_s:6.1f} s, {len(patches)} patches", file=sys.stderr)
    pooled = np.array(pooled)
    print(
        f"{len(files)} tracks, {dur / 60:.1f} min of audio, {analysed / 60:.1f} min analysed by the network (≤ {args.max_patches} patches of {PATCH_SECONDS:.2f} s)"
    )
    print(f"hand-crafted extraction (641 dims + descriptors + segments): {dur / hand:7.1f}× real time per core")
    print(
        f"learned embedding ({args.runtime}: decode 16 kHz + front end + MSD and MTT networks): {dur / learned:7.1f}× real time of the track per core, "
        f"{analysed / learned:.1f}× real time of the analysed audio"
    )
    print(f"learned / hand-crafted cost per track: {learned / hand:.2f}")
    print("learned stages: " + ", ".join(f"{k} {100 * v / learned:.0f} %" for k, v in stages.items()))
    print(
        f"pooled embedding over tracks: mean-pool dims mean {pooled[:, :200].mean():.3f} (max {pooled[:, :200].max():.2f}), "
        f"max-pool dims mean {pooled[:, 200:].mean():.3f} (max {pooled[:, 200:].max():.2f}); all finite: {bool(np.isfinite(pooled).all())}"
    )


if __name__ == "__main__":
    main()

"""Learned listening: a pretrained music network's view of each track, beside the 641 hand-made dims.

* ``musicnn.py`` — the musicnn taggers (Pons & Serra 2019, ISC licence): the TF1 checkpoints inside
  the ``musicnn`` wheel (weights only; the package itself is never installed), read by
  ``checkpoint.py`` without TensorFlow, and the log-mel front end computed in float32.
* ``onnx_graph.py`` — the network written as an ONNX graph from the checkpoint, verified, cached and
  run on onnxruntime; ``musicnn_keras.py`` — the Keras 3 rebuild it is checked against (tests and
  benchmarks only).
* ``store.py`` — what is kept per track (pooled penultimate activations and tag scores), the column
  names of the library table, and the per-content-hash cache.

Nothing here imports TensorFlow at run time: only the Keras reference does.
"""

"""Learned listening: a pretrained music network's view of each track, beside the 641 hand-made dims.

* ``musicnn.py`` — the musicnn taggers (Pons & Serra 2019, ISC licence) rebuilt in Keras 3 from the
  TF1 checkpoints inside the ``musicnn`` wheel (weights only; the package itself is never installed),
  with the log-mel front end computed in float32.
* ``store.py`` — what is kept per track (pooled penultimate activations and tag scores), the column
  names of the library table, and the per-content-hash cache.

Importing this package does not import TensorFlow: only computing an embedding does.
"""

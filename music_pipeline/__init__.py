"""music_pipeline: a music library becomes per-track features, difficulty, genre models and search."""

import os as _os

# librosa's numba kernels are compiled once and cached. numba caches beside the installed package,
# which fails silently where site-packages is read-only (and every process then recompiles, for
# seconds). Keep the cache in a folder this program owns, before anything imports numba.
_os.environ.setdefault(
    "NUMBA_CACHE_DIR",
    _os.path.join(
        _os.environ.get("XDG_CACHE_HOME") or _os.path.join(_os.path.expanduser("~"), ".cache"),
        "music-pipeline",
        "numba",
    ),
)

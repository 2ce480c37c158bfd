"""Similarity search over the track embeddings: the index, MMR, radio walks, comparisons, maps.

Pure core: nothing here imports Dagster. ``library.Discovery`` is the one query API the CLI and
the assets use.
"""

"""Harmony: the key of a track (tonic, mode, confidence) from its chroma, Camelot codes and the
rules of harmonic mixing (which keys and tempi follow each other well).

Pure core: nothing here imports Dagster.
"""

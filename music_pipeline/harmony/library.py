"""Keys of the library's tracks, of audio files, and of a playlist's transitions.

A library track's key comes from what the extraction already stored: its 12 chroma means
(``chroma_mean_<pc>`` of the embeddings table); nothing is decoded again. A file outside the
library is decoded once and only its chroma is computed (``features.spectra.compute_chroma``, the
same chroma the extraction computes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from music_pipeline.features.embedding import FEATURE_NAMES, PITCH_CLASSES
from music_pipeline.harmony.key import KeyEstimate, estimate_key, estimate_keys
from music_pipeline.harmony.mix import MixTrack

CHROMA_MEAN_COLUMNS = [f"chroma_mean_{pc}" for pc in PITCH_CLASSES]
KEY_COLUMNS = ["music_key", "camelot", "key_confidence"]
TABLE_COLUMNS = ["key", "relpath", "tempo_bpm", "rms_mean", *CHROMA_MEAN_COLUMNS]


class KeysNotBuilt(FileNotFoundError):
    pass


def key_of_features(raw: np.ndarray) -> KeyEstimate:
    """The key of a track from its 641 features (the embedding's order): its chroma means."""
    return estimate_key(np.asarray(raw, dtype=np.float64)[_CHROMA_MEAN_INDEX])


_CHROMA_MEAN_INDEX = [FEATURE_NAMES.index(c) for c in CHROMA_MEAN_COLUMNS]


def keys_of_table(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (rows with the chroma means) with music_key ("A minor"), camelot ("8A") and
    key_confidence added; a row with a non-finite chroma gets None / NaN."""
    estimates = estimate_keys(table[CHROMA_MEAN_COLUMNS].to_numpy(dtype=np.float64))
    out = table.drop(columns=CHROMA_MEAN_COLUMNS).reset_index(drop=True).copy()
    out["music_key"] = [e.name if e else None for e in estimates]
    out["camelot"] = [e.camelot if e else None for e in estimates]
    out["key_confidence"] = [e.confidence if e else np.nan for e in estimates]
    out["tonic"] = [e.tonic if e else -1 for e in estimates]
    out["mode"] = [e.mode if e else None for e in estimates]
    return out


def library_keys(data_dir, tracks: list[str] | None = None) -> pd.DataFrame:
    """key, relpath, tempo_bpm, rms_mean and the key columns of every analysed track (``tracks``:
    of those track keys only)."""
    from music_pipeline.artifacts import read_table
    from music_pipeline.layout import DataLayout

    path = DataLayout(data_dir).embeddings_path
    if not path.is_file():
        raise KeysNotBuilt(f"no analysed tracks in {data_dir} ({path} is missing): run `music-pipeline build` first")
    filters = None if tracks is None else [("key", "in", list(tracks))]
    return keys_of_table(read_table(path, columns=TABLE_COLUMNS, filters=filters).to_pandas())


def file_key(path: str | Path) -> KeyEstimate:
    """The key of an audio file (raises ``AudioError`` naming the file when it cannot be analysed)."""
    from music_pipeline.audio.decode import decode
    from music_pipeline.features.spectra import compute_chroma

    audio = decode(path)
    return estimate_key(compute_chroma(audio.y, audio.sr).mean(axis=1))


def mix_tracks(files: list[str], data_dir=None) -> tuple[list, list[tuple[str, str]]]:
    """(MixTrack per file that could be analysed, [(file, reason)] for the others). A file whose
    content is a library track uses its stored analysis; any other is extracted once."""
    from music_pipeline.audio.decode import AudioError

    stored = {}
    if data_dir is not None:
        from music_pipeline.artifacts import read_table
        from music_pipeline.layout import DataLayout

        path = DataLayout(data_dir).embeddings_path
        if path.is_file():
            t = read_table(path, columns=["content_hash", *TABLE_COLUMNS[2:]]).to_pandas()
            stored = {h: row for h, row in zip(t["content_hash"], t.itertuples(index=False), strict=True)}
    tracks, failed = [], []
    for f in files:
        try:
            row = None
            if stored:
                from music_pipeline.audio.scan import content_hash

                row = stored.get(content_hash(Path(f)))
            if row is None:
                from music_pipeline.features.embedding import FEATURE_NAMES
                from music_pipeline.features.extract import extract_features

                vec = extract_features(f).embedding
                row = pd.Series(vec, index=FEATURE_NAMES)
                chroma, tempo, rms = row[CHROMA_MEAN_COLUMNS].to_numpy(float), row["tempo_bpm"], row["rms_mean"]
            else:
                chroma = np.array([getattr(row, c) for c in CHROMA_MEAN_COLUMNS], dtype=float)
                tempo, rms = row.tempo_bpm, row.rms_mean
            est = estimate_key(chroma) if np.isfinite(chroma).all() else None
            tracks.append(MixTrack(f, est.key if est else None, float(tempo), float(rms)))
        except (AudioError, OSError) as exc:
            failed.append((f, str(exc) if isinstance(exc, AudioError) else f"{f}: {exc}"))
    return tracks, failed

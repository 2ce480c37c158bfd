"""Recommendations of a data directory: what ``recommend``, the explorer and the asset call.

The content vectors are the similarity index's (``<data>/models/similarity/``): every track a
build added is in it at once, so it is recommendable from its content before anyone plays it.
The model (``<data>/models/listening/``) is brought up to date here when it is stale
(``ensure_model``): never trained, its code changed, the index's space was refitted, or more than
the retraining share of events arrived since it was trained (``models/staleness.py``). Between
retrainings a listener's own factors and content model are computed from the current log at
query time, so an import shows at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pandas as pd

from music_pipeline.layout import DataLayout
from music_pipeline.listening import recommender as rec
from music_pipeline.listening.history import EventLog, HistoryError, check_user, events_frame
from music_pipeline.search.radio import first_of_each, radio_walk


@dataclass
class Library:
    keys: np.ndarray
    relpaths: np.ndarray
    vectors: np.ndarray  # unit rows in the similarity index's space
    durations: dict[str, float]
    space: dict
    library_root: str | None

    def title(self, row: int) -> str:
        return PurePosixPath(str(self.relpaths[row])).stem

    def path(self, row: int) -> str:
        rel = str(self.relpaths[row])
        return str(PurePosixPath(self.library_root) / rel) if self.library_root else rel


def open_library(data_dir, index=None) -> Library:
    """The indexed tracks, their content vectors and durations (``index``: a loaded TrackIndex)."""
    from music_pipeline.artifacts import read_parquet
    from music_pipeline.search.index import TrackIndex

    layout = DataLayout(data_dir)
    index = index or TrackIndex.load(layout.similarity_dir)
    try:
        t = read_parquet(layout.embeddings_path, columns=["key", "duration_s"])
        durations = {str(k): float(d) for k, d in zip(t["key"], t["duration_s"], strict=True)}
    except (OSError, KeyError):
        durations = {}
    space = {
        "transform": index.transform.kind,
        "dim": int(index.index.dim),
        "fitted_at": index.info.get("built_at"),
        "fitted_rows": index.info.get("fitted_rows"),
    }
    return Library(
        index.tracks["key"].astype(str).to_numpy(),
        index.tracks["relpath"].astype(str).to_numpy(),
        np.asarray(index.index.vectors, dtype=np.float32),
        durations,
        space,
        index.info.get("library_root"),
    )


def current_interactions(data_dir, lib: Library, params: rec.Params) -> tuple[pd.DataFrame, int]:
    """(interactions of every listener from the log as it is now, events read)."""
    try:
        events = EventLog(data_dir).read().events
    except HistoryError:  # a remote data directory keeps no listening log: recommendations by popularity
        events = []
    return rec.interactions(events_frame(events), lib.durations, params), len(events)


def staleness(data_dir, lib: Library, model: rec.ListeningModel | None):
    """(stale, why) of the saved listening model."""
    from music_pipeline.models.staleness import verdict

    if model is None:
        return True, "no listening model yet"
    if model.space != lib.space:
        return True, "the similarity space was refitted since it was trained"
    v = verdict(DataLayout(data_dir), rec.MODEL_NAME, rec.MODEL_VERSION)
    return v.stale, v.why


def train(data_dir, lib: Library, params: rec.Params | None = None) -> rec.ListeningModel:
    """Train on the whole log, save, and record what it was trained on."""
    from music_pipeline.models.staleness import record_training

    params = params or rec.Params()
    layout = DataLayout(data_dir)
    inter, n_events = current_interactions(data_dir, lib, params)
    model = rec.ListeningModel.fit(inter, lib.keys, lib.vectors, params, lib.space)
    model.info["events"] = n_events
    model.save(layout.listening_model_dir)
    record_training(layout, rec.MODEL_NAME, rec.MODEL_VERSION)
    return model


def ensure_model(data_dir, lib: Library, force: bool = False) -> tuple[rec.ListeningModel, str]:
    """The saved model, retrained first when stale (or ``force``); (model, what happened)."""
    model = rec.ListeningModel.load(DataLayout(data_dir).listening_model_dir)
    stale, why = (True, "retraining asked for") if force else staleness(data_dir, lib, model)
    if not stale and model is not None:
        return model, f"up to date ({why})"
    return train(data_dir, lib), f"retrained: {why}"


def recommend(data_dir, user: str, n: int = 20, lib: Library | None = None) -> dict:
    """``{"user", "results": [{"track", "path", "score", "why"}], "model"}``: tracks the listener
    has not played, best first."""
    user, lib, scored, state = _scored(data_dir, user, lib)
    return {
        "user": user,
        "results": _results(lib, scored, _top(scored, n, _copies(data_dir, lib))),
        "evidence": {"positive_tracks": scored.evidence, "played_tracks": int(scored.played.sum())},
        "model": state,
    }


def listener_radio(data_dir, user: str, length: int = 20, pool: int = 5, lib: Library | None = None) -> dict:
    """A radio seeded by a listener: the walk of ``search.radio`` from the centre of what they
    played, over their ``pool × length`` best recommendations (smooth steps, their taste)."""
    user, lib, scored, state = _scored(data_dir, user, lib)
    same = _copies(data_dir, lib)
    best = _top(scored, pool * length, same)
    allowed = np.zeros(len(lib.keys), dtype=bool)
    allowed[best] = True
    anchor = scored.positives if len(scored.positives) else best[:1]
    seed = np.asarray(lib.vectors[anchor], dtype=np.float64).mean(axis=0)
    seed = (seed / (np.linalg.norm(seed) or 1.0)).astype(np.float32)
    rows, _ = radio_walk(lib.vectors, seed, length, allowed=allowed, same=same)
    return {"user": user, "results": _results(lib, scored, rows), "model": state}


def _copies(data_dir, lib: Library) -> np.ndarray:
    """The duplicate group of each track (-1: stored once), from the build's table."""
    from music_pipeline.identity.duplicates import group_per_track, read_duplicates

    return group_per_track(read_duplicates(data_dir), lib.keys)


def _top(scored, n: int, same: np.ndarray) -> np.ndarray:
    """``rec.top`` without a copy of a recording the listener played, and one copy of each other."""
    if not (same >= 0).any():
        return rec.top(scored, n)
    rows = rec.top(scored, len(same))
    heard = np.isin(same[rows], same[scored.played & (same >= 0)])
    rows = rows[~heard]
    return rows[first_of_each(same[rows])][:n]


def _scored(data_dir, user: str, lib: Library | None):
    """(user, library, every track scored for them, the model's state), the model brought up to date."""
    user = check_user(user)
    lib = lib or open_library(data_dir)
    model, state = ensure_model(data_dir, lib)
    inter, _ = current_interactions(data_dir, lib, model.params)
    return user, lib, rec.score_tracks(model, inter, user, lib.keys, lib.vectors), state


def _results(lib: Library, scored, rows) -> list[dict]:
    return [
        {
            "track": str(lib.keys[r]),
            "path": lib.path(r),
            "title": lib.title(r),
            "score": round(float(scored.score[r]), 4),
            "why": rec.why(scored, int(r), lib.vectors, lib.title),
        }
        for r in rows
    ]

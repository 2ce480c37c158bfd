"""Classifying audio with the saved genre model (used by ``classify`` and the web app).

``GenreService.open(data_dir)`` loads the live version; ``classify_file(path, explain=...)``
analyses one file (the 641 features, and the learned embedding and tags through the pretrained
network when the weights are available or the model needs them) and returns

    {"file", "label", "probabilities": {label: p}, "model", "feature_view",
     "tags": {tag: score} (the tagger's strongest sound tags), ["explanation": {...}]}

The probabilities are the deployed model's, and so is the explanation (see ``genre/explain.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from music_pipeline.artifacts import ArtifactPath, read_json, read_parquet, write_parquet
from music_pipeline.audio.decode import SharedDecode
from music_pipeline.features.extract import extract_features
from music_pipeline.genre import explain as ex
from music_pipeline.genre.candidates import GenreModel
from music_pipeline.genre.data import BLOCK_COLUMNS, HANDCRAFTED, LEARNED, TAGS
from music_pipeline.genre.persistence import ModelFileError, load_model
from music_pipeline.genre.versions import current_version
from music_pipeline.layout import DataLayout
from music_pipeline.learned.store import compute_learned
from music_pipeline.learned.table import read_learned_table, with_learned
from music_pipeline.pretrained import WeightsUnavailable
from music_pipeline.records import FilePath, Json


@dataclass
class GenreService:
    model: GenreModel
    version_dir: object
    tag_profiles: dict
    card: dict

    @classmethod
    def open(cls, data_dir) -> GenreService:
        root = DataLayout(data_dir).genre_dir
        vdir = current_version(root)
        if vdir is None or not vdir.is_dir():
            raise ModelFileError(
                f"no genre model saved yet under {root}; train one with `music-pipeline build --data {data_dir}` "
                "(asset genre_classifier; the library needs at least 2 labels)"
            )
        profiles = read_json(vdir / "tag_profiles.json") if (vdir / "tag_profiles.json").is_file() else {}
        card = read_json(vdir / "card.json") if (vdir / "card.json").is_file() else {}
        return cls(load_model(vdir / "deployed"), vdir, profiles, card)

    @property
    def needs_learned(self) -> bool:
        return LEARNED in self.model.needs or TAGS in self.model.needs

    def inputs_of_file(self, path: str | Path) -> tuple[dict[str, np.ndarray], str | None]:
        """({block: (1, width)}, note) for one file. Raises ``AudioError`` for a file that cannot be
        analysed. The learned block is computed when the model needs it, else when the pretrained
        weights can be had (for the tags); a note says why tags are missing. The file is read once."""
        audio = SharedDecode(path)
        blocks = {HANDCRAFTED: extract_features(path, audio=audio).embedding[None, :]}
        note = None
        try:
            lf = compute_learned(path, audio=audio)
            blocks[LEARNED], blocks[TAGS] = lf.embedding()[None, :], lf.tags()[None, :]
        except WeightsUnavailable as exc:
            if self.needs_learned:
                raise
            note = f"no tags: the pretrained tagger's weights are unavailable ({exc})"
        return blocks, note

    def classify_inputs(self, blocks: dict[str, np.ndarray], explain: bool = False, name: str = "") -> dict:
        proba = self.model.predict_proba(blocks)[0]
        probs = {c: float(p) for c, p in sorted(zip(self.model.classes, proba, strict=True), key=lambda t: -t[1])}
        out = {
            "file": name,
            "label": next(iter(probs)),
            "probabilities": probs,
            "model": self.model.candidate.name,
            "feature_view": self.model.candidate.features,
        }
        tags_row = blocks[TAGS][0] if TAGS in blocks else None
        if tags_row is not None:
            out["tags"] = ex.track_tags(tags_row)
        if explain:
            e = ex.explain_prediction(self.model, blocks, 0, proba, tags_row=tags_row, profiles=self.tag_profiles)
            out["explanation"] = {k: e[k] for k in ("model", "method", "text", "components") if k in e}
            if "neighbours" in e:
                out["explanation"]["neighbours"] = e["neighbours"]
        return out

    def classify_file(self, path: str | Path, explain: bool = False) -> dict:
        blocks, note = self.inputs_of_file(path)
        out = self.classify_inputs(blocks, explain, str(path))
        if note:
            out["note"] = note
        return out


def classify_library(service: GenreService, table) -> pd.DataFrame:
    """The deployed model's answer for every track of the library table (the embeddings table with
    the learned columns joined): key, relpath, label (given, may be empty), genre, probability,
    runner_up, p_runner_up, model, version. Tracks lacking an input the model reads (a learned
    embedding not computed yet) get no row."""
    blocks = {
        b: table[cols].to_numpy(dtype=np.float64)
        for b, cols in BLOCK_COLUMNS.items()
        if b in service.model.needs and all(c in table for c in cols)
    }
    ok = np.ones(len(table), dtype=bool)
    for b in service.model.needs:
        ok &= np.isfinite(blocks[b]).all(axis=1) if b in blocks else False
    rows = np.flatnonzero(ok)
    cols = ["key", "relpath", "label", "genre", "probability", "runner_up", "p_runner_up", "model", "version"]
    if not len(rows):
        return pd.DataFrame(columns=cols)
    proba = service.model.predict_proba({b: x[rows] for b, x in blocks.items()})
    order = np.argsort(-proba, axis=1, kind="stable")
    classes = np.asarray(service.model.classes)
    second = order[:, 1] if proba.shape[1] > 1 else order[:, 0]
    sub = table.iloc[rows]
    return pd.DataFrame(
        {
            "key": sub["key"].to_numpy(),
            "relpath": sub["relpath"].to_numpy(),
            "label": sub["label"].to_numpy(),
            "genre": classes[order[:, 0]],
            "probability": proba[np.arange(len(rows)), order[:, 0]],
            "runner_up": classes[second],
            "p_runner_up": proba[np.arange(len(rows)), second],
            "model": service.model.candidate.name,
            "version": service.version_dir.name,
        }
    )[cols]


def library_table(layout: DataLayout) -> pd.DataFrame:
    """The embeddings table with the learned columns joined (absent before the learned table exists)."""
    return with_learned(read_parquet(layout.embeddings_path), read_learned_table(layout.root))


@dataclass
class TrackGenres:
    """``track_genres.parquet`` as written by the deployed model (``genres``: one row per classified track)."""

    genres: pd.DataFrame
    version: str
    path: ArtifactPath
    n_tracks: int  # tracks of the library table, classified or not

    @property
    def metadata(self) -> dict:
        return {
            "path": FilePath(self.path),
            "dagster/row_count": len(self.genres),
            "classified": len(self.genres),
            "without_inputs": self.n_tracks - len(self.genres),
            "model_version": self.version,
            "genres": Json(self.genres["genre"].value_counts().to_dict()),
        }


def write_track_genres(layout: DataLayout, table: pd.DataFrame | None = None) -> TrackGenres | None:
    """Every track of the library classified by the deployed model, written to ``track_genres.parquet``
    (None when there is no model yet)."""
    try:
        service = GenreService.open(layout.root)
    except ModelFileError:
        return None
    table = library_table(layout) if table is None else table
    genres = classify_library(service, table)
    path = write_parquet(layout.track_genres_path, genres)
    return TrackGenres(genres, service.version_dir.name, path, len(table))

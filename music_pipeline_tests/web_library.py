"""A built library for the explorer's tests, and a real server for it on 127.0.0.1.

``explorer_library`` copies the session's styled library (4 styles × 6 synthesized tracks, already
analysed) and adds one AIFF track (synthesized here), then builds with the core what the explorer
reads: the tables, the similarity index, the PDI model and a small XGBoost genre model. No map is
drawn (the explorer then shows principal components; the tests add a map table where they need
one). ``ThreadServer`` runs the app with uvicorn in a thread of the test process.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Self

import soundfile as sf

from .system import free_port, wait_for_port

AIFF_RELPATH = "pulse/pulse_aiff_probe.aiff"


def explorer_library(styled_library: tuple[Path, Path], root: Path) -> tuple[Path, Path]:
    """(library, data) under ``root``, built once per root."""
    from music_pipeline.artifacts import write_parquet
    from music_pipeline.audio.scan import scan_library
    from music_pipeline.difficulty import pdi
    from music_pipeline.features.extract import ExtractJob, FeatureStore, extract_many
    from music_pipeline.features.tables import build_tables
    from music_pipeline.genre.candidates import Candidate, GenreModel
    from music_pipeline.genre.persistence import save_model
    from music_pipeline.genre.versions import publish_version
    from music_pipeline.layout import DataLayout
    from music_pipeline.search.index import TrackIndex
    from music_pipeline.synth import SR, styled_track

    library, data = root / "library", root / "data"
    if (DataLayout(data).similarity_dir / "index.json").is_file():
        return library, data
    shutil.copytree(styled_library[0], library)
    shutil.copytree(styled_library[1], data)
    # a second channel, 24-bit big-endian AIFF: what browsers cannot play and the server transcodes
    y = styled_track("pulse", 12.0, seed=99)
    sf.write(library / AIFF_RELPATH, [[v, 0.5 * v] for v in y], SR, format="AIFF", subtype="PCM_24")

    layout = DataLayout(data)
    scan = scan_library(library, layout.hash_cache_path)
    store = FeatureStore(data)
    jobs = [
        ExtractJob(t.key, t.path, t.relpath, t.content_hash, str(data))
        for t in scan.tracks
        if not store.has(t.content_hash)
    ]
    outcomes = extract_many(jobs, workers=1)
    assert len(jobs) == 1 and all(o.ok for o in outcomes), [o.reason for o in outcomes]
    tables = build_tables(scan, store)
    write_parquet(layout.embeddings_path, tables.embeddings)
    write_parquet(layout.descriptors_table_path, tables.descriptors)

    TrackIndex.build(tables.embeddings, library_root=str(library)).save(DataLayout(data).similarity_dir)
    # the PDI reads the notes: transcribe the tracks as the difficulty asset would
    from music_pipeline.notes.store import NotesJob, NotesStore, note_table, transcribe_many

    notes_store = NotesStore(data)
    transcribe_many([NotesJob(t.key, t.path, t.relpath, t.content_hash, str(data)) for t in scan.tracks], workers=1)
    notes, missing = note_table(tables.descriptors[["key", "relpath", "content_hash"]], notes_store)
    assert missing.empty, missing
    write_parquet(layout.note_descriptors_table_path, notes)
    scores, model = pdi.score_library(pdi.merge_descriptors(tables.descriptors, notes))
    write_parquet(layout.difficulty_table_path, scores)
    model.save(layout.difficulty_dir)

    from music_pipeline.features.embedding import FEATURE_NAMES

    emb = tables.embeddings
    genre = GenreModel.fit(
        Candidate("xgb", "full", pca=5), emb[FEATURE_NAMES].to_numpy(dtype="float64"), emb["label"].astype(str).tolist()
    )
    publish_version(layout.genre_dir, lambda vdir: save_model(genre, vdir / "deployed"))
    return library, data


class ThreadServer:
    """uvicorn serving ``app`` on 127.0.0.1 from a thread (uvicorn installs no signal handlers there)."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        wait_for_port(self.port, 30)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)

"""Library-level tables assembled from the per-track feature store.

The current scan decides which tracks exist, so a deleted file disappears from every table
(no ghosts) and a renamed one keeps its features (same content hash). A refresh reuses the rows
of the previous tables by content hash and reads only the feature files of new content, so adding
one track to a large library (or one on an object store) costs one read, not one per track.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from music_pipeline.artifacts import ArtifactPath, read_parquet, read_parquet_metadata, write_parquet
from music_pipeline.audio.scan import LibraryScan
from music_pipeline.difficulty.audio_descriptors import DESCRIPTOR_NAMES
from music_pipeline.features.embedding import EMBEDDING_DIM, FEATURE_NAMES
from music_pipeline.features.extract import FeatureStore
from music_pipeline.layout import DataLayout

FEATURE_VERSION_KEY = "music_pipeline.feature_version"

ID_COLUMNS = ["key", "relpath", "label", "group", "duration_s", "source_sr", "content_hash"]
SKIPPED_COLUMNS = ["key", "relpath", "content_hash", "reason"]
NOT_EXTRACTED = "not extracted yet (run a build or wait for the sensor)"


@dataclass
class LibraryTables:
    embeddings: pd.DataFrame  # ID_COLUMNS + FEATURE_NAMES
    descriptors: pd.DataFrame  # ID_COLUMNS + DESCRIPTOR_NAMES
    skipped: pd.DataFrame  # SKIPPED_COLUMNS
    segment_keys: list[str]  # keys whose segments are available, embedding-table order
    files_read: int = 0  # feature files loaded from the store (the rest reused from the previous tables)


def build_tables(scan: LibraryScan, store: FeatureStore, previous: LibraryTables | None = None) -> LibraryTables:
    """The library tables for ``scan``; ``previous`` (from ``read_previous_tables``) supplies the
    values of content already in them, so only new content is read from the store."""
    rows, emb, desc, skipped = [], [], [], []
    first_of_hash: dict[str, str] = {}
    available = store.feature_hashes()  # one listing instead of a file check per track
    reuse = _values_by_hash(previous) if previous is not None else {}
    files_read = 0
    for t in scan.tracks:
        if t.scan_error or not t.content_hash:
            skipped.append((t.key, t.relpath, t.content_hash, t.scan_error or "no content hash"))
            continue
        if t.content_hash in first_of_hash:
            skipped.append(
                (t.key, t.relpath, t.content_hash, f"duplicate: identical content to {first_of_hash[t.content_hash]}")
            )
            continue
        if t.content_hash not in available:
            reason = store.failure(t.content_hash) or NOT_EXTRACTED
            skipped.append((t.key, t.relpath, t.content_hash, reason))
            continue
        if t.content_hash in reuse:
            duration_s, source_sr, embedding, descriptors = reuse[t.content_hash]
        else:
            try:
                f = store.load(t.content_hash)
            except Exception as exc:  # noqa: BLE001 - a damaged cache file costs this track a re-extraction, not the table
                store.forget(t.content_hash)
                skipped.append(
                    (
                        t.key,
                        t.relpath,
                        t.content_hash,
                        f"stored features unreadable ({exc}): removed, extracted again by the next build",
                    )
                )
                continue
            files_read += 1
            duration_s, source_sr, embedding = f.duration_s, f.source_sr, f.embedding
            descriptors = [f.descriptors[n] for n in DESCRIPTOR_NAMES]
        first_of_hash[t.content_hash] = t.relpath
        # key, path, label and group come from the scan: a renamed or relabelled file is current
        rows.append((t.key, t.relpath, t.label, t.group, duration_s, source_sr, t.content_hash))
        emb.append(embedding)
        desc.append(descriptors)
    ids = pd.DataFrame(rows, columns=ID_COLUMNS).astype({"duration_s": "float64", "source_sr": "int64"})
    emb_arr = np.vstack(emb) if emb else np.zeros((0, EMBEDDING_DIM))
    desc_arr = np.array(desc, dtype=np.float64).reshape(len(desc), len(DESCRIPTOR_NAMES))
    embeddings = pd.concat([ids, pd.DataFrame(emb_arr, columns=FEATURE_NAMES)], axis=1)
    descriptors = pd.concat([ids, pd.DataFrame(desc_arr, columns=DESCRIPTOR_NAMES)], axis=1)
    return LibraryTables(
        embeddings, descriptors, pd.DataFrame(skipped, columns=SKIPPED_COLUMNS), list(ids["key"]), files_read
    )


def _values_by_hash(previous: LibraryTables) -> dict[str, tuple]:
    """content hash -> (duration_s, source_sr, embedding, descriptors) of the previous tables."""
    e, d = previous.embeddings, previous.descriptors
    if e.empty or d.empty or list(e["content_hash"]) != list(d["content_hash"]):
        return {}  # written by different refreshes: trust neither
    emb = e[FEATURE_NAMES].to_numpy(dtype=np.float64)
    desc = d[DESCRIPTOR_NAMES].to_numpy(dtype=np.float64)
    return {
        h: (float(dur), int(sr), emb[i], desc[i].tolist())
        for i, (h, dur, sr) in enumerate(zip(e["content_hash"], e["duration_s"], e["source_sr"], strict=True))
    }


def table_metadata(store: FeatureStore) -> dict[str, str]:
    """Stored in both tables' parquet footers: which extraction version their values come from."""
    return {FEATURE_VERSION_KEY: store.version}


def read_previous_tables(
    embeddings_path: ArtifactPath, descriptors_path: ArtifactPath, store: FeatureStore
) -> LibraryTables | None:
    """The last written tables when they come from this store's extraction version, else None
    (missing, unreadable, or values of other extraction code: then everything is re-read)."""
    try:
        for p in (embeddings_path, descriptors_path):
            if read_parquet_metadata(p).get(FEATURE_VERSION_KEY) != store.version:
                return None
        embeddings, descriptors = read_parquet(embeddings_path), read_parquet(descriptors_path)
    except (OSError, ValueError):
        return None
    if validate_embedding_table(embeddings) or any(c not in descriptors for c in DESCRIPTOR_NAMES + ["content_hash"]):
        return None
    return LibraryTables(embeddings, descriptors, pd.DataFrame(columns=SKIPPED_COLUMNS), list(embeddings["key"]))


class InvalidTable(ValueError):
    """The assembled embedding table is unusable; nothing was written."""


def refresh_tables(
    scan: LibraryScan, store: FeatureStore, layout: DataLayout, max_rounds: int = 5
) -> tuple[LibraryTables, int]:
    """Build and write the library tables for ``scan``; returns (tables, rounds written).

    Several runs may refresh at once (concurrent ingest runs, workers on other hosts), and the
    last writer wins. So after writing, the store is listed again: if features of scanned tracks
    appeared that the written table lacks, it is rebuilt and rewritten. The last writer therefore
    always writes a table containing every feature file that existed when it checked, and any
    file written after that check belongs to a run whose own refresh comes later.
    """
    descriptors_path = layout.descriptors_table_path
    previous = read_previous_tables(layout.embeddings_path, descriptors_path, store)
    scanned = {t.content_hash for t in scan.tracks if t.content_hash and not t.scan_error}
    for rounds in range(1, max_rounds + 1):  # noqa: B007 - returned after the loop: how many rounds it took
        tables = build_tables(scan, store, previous)
        problems = validate_embedding_table(tables.embeddings)
        if problems:  # never store an invalid table: downstream models would train on it
            raise InvalidTable(f"embedding table is invalid: {problems}")
        write_parquet(layout.embeddings_path, tables.embeddings, table_metadata(store))
        write_parquet(descriptors_path, tables.descriptors, table_metadata(store))
        write_parquet(layout.skipped_path, tables.skipped)
        missing = (scanned & store.feature_hashes()) - set(tables.embeddings["content_hash"]) - _settled_skips(tables)
        if not missing:
            break
        previous = tables
    return tables, rounds


def _settled_skips(tables: LibraryTables) -> set[str]:
    """Hashes skipped for reasons a rebuild would not change (duplicates, unreadable files)."""
    return {
        h
        for h, r in zip(tables.skipped["content_hash"], tables.skipped["reason"], strict=True)
        if isinstance(h, str) and r != NOT_EXTRACTED
    }


def validate_embedding_table(df: pd.DataFrame) -> list[str]:
    """Problems that make the table unusable (empty list = valid)."""
    problems = []
    missing = [c for c in FEATURE_NAMES if c not in df.columns]
    if missing:
        problems.append(f"{len(missing)} feature columns missing (first: {missing[0]})")
    extra = [c for c in df.columns if c not in FEATURE_NAMES and c not in ID_COLUMNS]
    if extra:
        problems.append(f"unexpected columns: {extra[:5]}")
    if not missing:
        values = df[FEATURE_NAMES].to_numpy(dtype=np.float64)
        bad_rows = ~np.isfinite(values).all(axis=1)
        if bad_rows.any():
            problems.append(
                f"{int(bad_rows.sum())} rows with non-finite values: {df.loc[bad_rows, 'key'].tolist()[:5]}"
            )
    dupes = df["key"][df["key"].duplicated()].tolist() if "key" in df else []
    if dupes:
        problems.append(f"duplicate keys: {dupes[:5]}")
    return problems

"""Library-level tables assembled from the per-track feature store.

The current scan decides which tracks exist, so a deleted file disappears from every table
(no ghosts) and a renamed one keeps its features (same content hash).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from music_pipeline.audio.library import LibraryScan
from music_pipeline.features.difficulty import DESCRIPTOR_NAMES
from music_pipeline.features.embedding import EMBEDDING_DIM, FEATURE_NAMES
from music_pipeline.features.extract import FeatureStore

ID_COLUMNS = ["key", "relpath", "label", "group", "duration_s", "source_sr", "content_hash"]
SKIPPED_COLUMNS = ["key", "relpath", "content_hash", "reason"]


@dataclass
class LibraryTables:
    embeddings: pd.DataFrame  # ID_COLUMNS + FEATURE_NAMES
    descriptors: pd.DataFrame  # ID_COLUMNS + DESCRIPTOR_NAMES
    skipped: pd.DataFrame  # SKIPPED_COLUMNS
    segment_keys: list[str]  # keys whose segments are available, embedding-table order


def build_tables(scan: LibraryScan, store: FeatureStore) -> LibraryTables:
    rows, emb, desc, skipped = [], [], [], []
    first_of_hash: dict[str, str] = {}
    for t in scan.tracks:
        if t.scan_error or not t.content_hash:
            skipped.append((t.key, t.relpath, t.content_hash, t.scan_error or "no content hash"))
            continue
        if t.content_hash in first_of_hash:
            skipped.append((t.key, t.relpath, t.content_hash, f"duplicate: identical content to {first_of_hash[t.content_hash]}"))
            continue
        if not store.has(t.content_hash):
            reason = store.failure(t.content_hash) or "not extracted yet (run a build or wait for the sensor)"
            skipped.append((t.key, t.relpath, t.content_hash, reason))
            continue
        try:
            f = store.load(t.content_hash)
        except Exception as exc:  # a damaged cache file costs this track a re-extraction, not the table
            skipped.append((t.key, t.relpath, t.content_hash, f"stored features unreadable ({exc}); rebuild to re-extract"))
            continue
        first_of_hash[t.content_hash] = t.relpath
        rows.append((t.key, t.relpath, t.label, t.group, f.duration_s, f.source_sr, t.content_hash))
        emb.append(f.embedding)
        desc.append([f.descriptors[n] for n in DESCRIPTOR_NAMES])
    ids = pd.DataFrame(rows, columns=ID_COLUMNS).astype({"duration_s": "float64", "source_sr": "int64"})
    emb_arr = np.vstack(emb) if emb else np.zeros((0, EMBEDDING_DIM))
    desc_arr = np.array(desc, dtype=np.float64).reshape(len(desc), len(DESCRIPTOR_NAMES))
    embeddings = pd.concat([ids, pd.DataFrame(emb_arr, columns=FEATURE_NAMES)], axis=1)
    descriptors = pd.concat([ids, pd.DataFrame(desc_arr, columns=DESCRIPTOR_NAMES)], axis=1)
    return LibraryTables(embeddings, descriptors, pd.DataFrame(skipped, columns=SKIPPED_COLUMNS), list(ids["key"]))


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
            problems.append(f"{int(bad_rows.sum())} rows with non-finite values: {df.loc[bad_rows, 'key'].tolist()[:5]}")
    dupes = df["key"][df["key"].duplicated()].tolist() if "key" in df else []
    if dupes:
        problems.append(f"duplicate keys: {dupes[:5]}")
    return problems

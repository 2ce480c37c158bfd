"""The similarity index: unit vectors + exact search, and a faiss IVF index above a size.

``VectorIndex`` holds L2-normalised float32 vectors (row position = id) and answers top-k by
cosine. Up to ``approximate_above`` vectors it is exact (``exact.exact_topk``: chunked float32
products, bounded memory; single queries on large sets via ``exact.PrunedExact``). Above, it adds
a faiss ``IndexIVFScalarQuantizer`` (8-bit codes, inner product) over the leading ``ann_dims``
dimensions — in the energy-rotated space (``space.energy_rotation``) they carry almost all of each
vector's norm, so codes are 5× smaller and scans 5× faster than over all 641 — when they hold at
least ``ann_min_energy`` of it (else over all dimensions). The IVF lists propose ``rerank × k``
candidates and the kept float32 vectors re-rank them exactly, so the scores returned are exact
cosines. ``nprobe`` is tuned on a sample of the indexed vectors until recall@10 against exact
search reaches ``target_recall``; the measured recall is stored.

``TrackIndex`` is what the pipeline saves: the fitted ``space.Transform`` (mean/std and optional
PCA), the ``VectorIndex`` and a small table of the indexed tracks (key, relpath, label, group,
content hash, tempo and energy), in row order. New tracks are added with the saved transform
(``add_tracks``) without rebuilding; ``sync_track_index`` decides between that and a rebuild.

On disk (``<data>/models/similarity/``), nothing pickled: ``vectors.npy`` (float32, memory-mapped
on load), ``transform.npz``, ``pair_quantiles.npz``, ``tracks.parquet``, ``index.json`` (params,
measurements, the transform choice) and ``ivf.faiss`` (faiss.write_index) when approximate.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from music_pipeline.features.embedding import FEATURE_GROUPS, FEATURE_NAMES
from music_pipeline.search.exact import DEFAULT_BLOCK_ELEMENTS, PrunedExact, exact_topk, normalise, recall_at_k
from music_pipeline.search.space import GROUPS, Transform, choose_transform, energy_rotation, retrieval_bases
from music_pipeline.storage import (
    ArtifactPath,
    artifact_path,
    atomic_path,
    ensure_dir,
    local_copy,
    read_json,
    read_npy,
    read_npz,
    read_parquet,
    remove,
    write_json,
    write_npy,
    write_npz,
    write_parquet,
)

INDEX_FORMAT = 1
TRACK_COLUMNS = ["key", "relpath", "label", "group", "content_hash", "tempo_bpm", "rms_mean"]


class IndexNotBuilt(FileNotFoundError):
    pass


@dataclass
class IndexParams:
    approximate_above: int = 50_000  # exact search up to this many vectors, faiss IVF above
    block_elements: int = DEFAULT_BLOCK_ELEMENTS  # largest score block held at once (float32 values)
    nlist: int = 0  # IVF lists; 0 = about 2·sqrt(n)
    train_rows: int = 0  # k-means training rows; 0 = min(n, 40·nlist)
    target_recall: float = 0.97  # nprobe grows until recall@10 on the sample reaches this
    max_nprobe: int = 256
    rerank: int = 10  # IVF candidates per wanted result, re-ranked with the exact vectors
    ann_dims: int = 128  # leading dimensions the IVF codes cover (all when fewer)
    ann_min_energy: float = 0.9  # ... if they hold this share of the squared norm on average
    recall_sample: int = 500
    prune_above: int = 20_000  # exact single queries use the head/tail bound (exact.PrunedExact) above this
    head_dims: int = 64
    seed: int = 0


@dataclass
class AnnState:
    nlist: int
    nprobe: int
    recall_at_10: float
    recall_sample: int
    recall_by_nprobe: dict = field(default_factory=dict)
    build_seconds: float = 0.0
    dims: int = 0  # leading dimensions in the IVF codes (0 = all)


class VectorIndex:
    def __init__(self, vectors: np.ndarray, params: IndexParams | None = None, ann=None, ann_state: AnnState | None = None):
        self.vectors = vectors
        self.params = params or IndexParams()
        self.ann = ann
        self.ann_state = ann_state
        self._pruned: PrunedExact | None = None

    @classmethod
    def build(cls, vectors: np.ndarray, params: IndexParams | None = None) -> "VectorIndex":
        index = cls(normalise(vectors), params)
        if len(index) > index.params.approximate_above:
            index.build_ann()
        return index

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def approximate(self) -> bool:
        return self.ann is not None

    @property
    def memory_bytes(self) -> int:
        """Bytes of the float32 vectors plus the faiss index's codes, lists and centroids, and the
        pruning arrays of exact search once built."""
        size = int(self.vectors.nbytes)
        if self._pruned is not None:
            size += int(self._pruned.head.nbytes + self._pruned.tail_norm.nbytes)
        if self.ann is not None:
            import faiss

            size += int(faiss.serialize_index(self.ann).nbytes)
        return size

    # -- search ---------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Positions and cosine scores (m, k), best first; ``exclude`` = one position per query to skip."""
        queries = normalise(np.atleast_2d(queries))
        if self.ann is None or exact:
            return self.search_exact(queries, k, exclude)
        return self._search_ann(queries, k, exclude, self.ann_state.nprobe)

    def search_exact(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        if len(queries) <= 16 and len(self) >= p.prune_above and self.dim >= 2 * p.head_dims:
            if self._pruned is None:
                self._pruned = PrunedExact(self.vectors, p.head_dims)
            return self._pruned.search(queries, k, exclude)
        return exact_topk(self.vectors, queries, k, p.block_elements, exclude)

    def _search_ann(self, queries: np.ndarray, k: int, exclude, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        want = k + (exclude is not None)
        self.ann.nprobe = nprobe
        dims = self.ann_state.dims or self.dim
        _, cand = self.ann.search(np.ascontiguousarray(queries[:, :dims]), max(want, self.params.rerank * want))
        out_i = np.full((len(queries), k), -1, dtype=np.int64)
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for r, (q, row) in enumerate(zip(queries, cand)):
            row = np.unique(row[row >= 0])  # sorted: ties resolve by position, as in exact search
            if exclude is not None:
                row = row[row != exclude[r]]
            if not len(row):
                continue
            s = np.asarray(self.vectors[row], dtype=np.float32) @ q
            order = np.lexsort((row, -s))[:k]
            out_i[r, : len(order)], out_s[r, : len(order)] = row[order], s[order]
        return out_i, out_s

    # -- the approximate index ------------------------------------------------------------------
    def build_ann(self) -> None:
        import faiss

        t0 = time.perf_counter()
        p, n, d = self.params, len(self), self.dim
        nlist = p.nlist or int(np.clip(round(2 * np.sqrt(n)), 16, 4096))
        train_rows = min(n, p.train_rows or 40 * nlist)
        rng = np.random.default_rng(p.seed)
        train = np.asarray(self.vectors[np.sort(rng.choice(n, train_rows, replace=False))], dtype=np.float32)
        dims = min(d, p.ann_dims)
        if dims < d and float((train[:, :dims] ** 2).sum(axis=1).mean()) < p.ann_min_energy:
            dims = d  # the leading dimensions do not summarise these vectors (not energy-rotated)
        quantizer = faiss.IndexFlatIP(dims)
        ann = faiss.IndexIVFScalarQuantizer(quantizer, dims, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        ann.cp.seed = p.seed
        ann.train(np.ascontiguousarray(train[:, :dims]))
        step = 100_000  # add in slices: no second full-size float32 copy
        for s in range(0, n, step):
            ann.add_with_ids(np.ascontiguousarray(self.vectors[s : s + step, :dims], dtype=np.float32), np.arange(s, min(n, s + step), dtype=np.int64))
        self.ann = ann
        self.ann_state = AnnState(nlist=nlist, nprobe=1, recall_at_10=0.0, recall_sample=0, dims=dims)
        self.tune_nprobe()
        self.ann_state.build_seconds = time.perf_counter() - t0

    def tune_nprobe(self) -> float:
        """Smallest nprobe (1, 2, 3, 4, 6, 8, 12, …) whose recall@10 on a sample reaches the target."""
        p, st = self.params, self.ann_state
        rng = np.random.default_rng(p.seed + 1)
        sample = np.sort(rng.choice(len(self), min(len(self), p.recall_sample), replace=False))
        queries = np.asarray(self.vectors[sample], dtype=np.float32)
        exact_i, _ = exact_topk(self.vectors, queries, 10, p.block_elements, exclude=sample)
        limit = min(st.nlist, p.max_nprobe)
        grid = sorted({min(limit, int(b * 2**e)) for e in range(16) for b in (1, 1.5)} | {limit})
        st.recall_by_nprobe = {}
        for nprobe in grid:
            approx_i, _ = self._search_ann(queries, 10, sample, nprobe)
            st.recall_by_nprobe[nprobe] = recall_at_k(approx_i, exact_i)
            if st.recall_by_nprobe[nprobe] >= p.target_recall:
                break
        st.nprobe, st.recall_at_10, st.recall_sample = nprobe, st.recall_by_nprobe[nprobe], len(sample)
        return st.recall_at_10

    def measure_recall(self, queries: np.ndarray, k: int = 10) -> float:
        """Recall@k of the approximate search against exact search for these (outside) queries."""
        queries = normalise(queries)
        exact_i, _ = exact_topk(self.vectors, queries, k, self.params.block_elements)
        approx_i, _ = self.search(queries, k)
        return recall_at_k(approx_i, exact_i)

    # -- growth ---------------------------------------------------------------------------------
    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append vectors (normalised here); returns their positions. No retraining: new vectors
        go to the nearest existing IVF list. Crossing ``approximate_above`` builds the IVF index."""
        v = normalise(np.atleast_2d(vectors))
        if v.shape[1] != self.dim:
            raise ValueError(f"vectors have width {v.shape[1]}, the index has {self.dim}")
        start = len(self)
        self.vectors = np.concatenate([np.asarray(self.vectors, dtype=np.float32), v])
        positions = np.arange(start, len(self), dtype=np.int64)
        self._pruned = None
        if self.ann is not None:
            self.ann.add_with_ids(np.ascontiguousarray(v[:, : self.ann_state.dims or self.dim]), positions)
        elif len(self) > self.params.approximate_above:
            self.build_ann()
        return positions

    # -- storage --------------------------------------------------------------------------------
    def save(self, directory: ArtifactPath) -> dict:
        directory = artifact_path(directory)
        write_npy(directory / "vectors.npy", np.asarray(self.vectors, dtype=np.float32))
        ann_path = directory / "ivf.faiss"
        if self.ann is not None:
            import faiss

            with atomic_path(ann_path) as tmp:
                faiss.write_index(self.ann, str(tmp))
        else:
            remove(ann_path)
        return {"params": asdict(self.params), "ann": asdict(self.ann_state) if self.ann_state else None}

    @classmethod
    def load(cls, directory: ArtifactPath, state: dict, mmap: bool = True) -> "VectorIndex":
        directory = artifact_path(directory)
        vectors = read_npy(directory / "vectors.npy", mmap=mmap)
        params = IndexParams(**state["params"])
        ann, ann_state = None, None
        if state.get("ann"):
            import faiss

            with local_copy(directory / "ivf.faiss") as local:
                ann = faiss.read_index(str(local))
            st = dict(state["ann"])
            st["recall_by_nprobe"] = {int(k): v for k, v in st.get("recall_by_nprobe", {}).items()}
            ann_state = AnnState(**st)
            if ann.ntotal != len(vectors):
                raise ValueError(f"{directory}: faiss index has {ann.ntotal} vectors, vectors.npy {len(vectors)}")
        return cls(vectors, params, ann, ann_state)


def _track_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df[TRACK_COLUMNS].copy().reset_index(drop=True)
    for c in ("label", "group"):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out


def learned_block(table: pd.DataFrame) -> np.ndarray | None:
    """The (n, 400) learned embeddings of a table's rows, or None unless every row has one."""
    from music_pipeline.learned.store import LEARNED_NAMES

    if not all(c in table for c in LEARNED_NAMES):
        return None
    values = table[LEARNED_NAMES].to_numpy(dtype=np.float64)
    return values if len(values) and np.isfinite(values).all() else None


def _learned_version() -> str:
    from music_pipeline.learned.store import learned_version

    return learned_version()


def features_fingerprint() -> str:
    return hashlib.sha1("\n".join(FEATURE_NAMES).encode()).hexdigest()[:12]


class TrackIndex:
    """Transform + vectors + the indexed tracks, in one directory."""

    def __init__(self, transform: Transform, vectors: VectorIndex, tracks: pd.DataFrame, info: dict | None = None, pair_quantiles: np.ndarray | None = None):
        self.transform = transform
        self.index = vectors
        self.tracks = tracks.reset_index(drop=True)
        self.info = info or {}
        self.pair_quantiles = pair_quantiles  # (1 + len(GROUPS), 101): cosine quantiles of random library pairs
        self._pos = {k: i for i, k in enumerate(self.tracks["key"])}

    def __len__(self) -> int:
        return len(self.index)

    def position(self, key: str) -> int | None:
        return self._pos.get(key)

    @classmethod
    def build(cls, embeddings: pd.DataFrame, params: IndexParams | None = None, library_root: str | None = None, transform: str | None = None) -> "TrackIndex":
        """Fit the space on this table (choosing the transform unless one is named) and index it.
        ``embeddings`` may carry the learned columns (``learned.table.with_learned``): then the
        learned and fusion spaces are candidates too."""
        params = params or IndexParams()
        raw = embeddings[FEATURE_NAMES].to_numpy(dtype=np.float64)
        learned = learned_block(embeddings)
        tracks = _track_frame(embeddings)
        bases = retrieval_bases(tracks["label"], tracks["group"], tracks["key"])
        if transform:
            from music_pipeline.search.space import fit_transform

            t, choice = fit_transform(transform, raw, params.seed, learned), {"chosen": transform, "reason": "named by the caller", "scores": {}}
        else:
            t, choice = choose_transform(raw, bases, seed=params.seed, learned=learned)
        if t.dim >= 2 * params.head_dims:  # exact single queries can then skip most rows
            t.rotation = energy_rotation(t.project(raw, learned), seed=params.seed)
        t0 = time.perf_counter()
        vectors = VectorIndex.build(t.project(raw, learned), params)
        info = {
            "format": INDEX_FORMAT,
            "features": features_fingerprint(),
            "learned_version": _learned_version() if t.needs_learned else None,
            "learned_available": learned is not None,
            "transform": t.kind,
            "transform_info": t.info,
            "selection": choice,
            "fitted_rows": len(raw),
            "library_root": library_root,
            "built_at": time.time(),
            "build_seconds": time.perf_counter() - t0,
        }
        return cls(t, vectors, tracks, info, pair_quantiles(t, raw, vectors.vectors, params.seed))

    def add_tracks(self, rows: pd.DataFrame) -> np.ndarray:
        """Index new tracks with the saved transform (no refit); returns their positions."""
        dupes = [k for k in rows["key"] if k in self._pos]
        if dupes:
            raise ValueError(f"already indexed: {dupes[:5]}")
        learned = learned_block(rows) if self.transform.needs_learned else None
        if self.transform.needs_learned and learned is None:
            raise ValueError("the index space uses the learned embedding, which the new tracks lack")
        positions = self.index.add(self.transform.project(rows[FEATURE_NAMES].to_numpy(dtype=np.float64), learned))
        self.tracks = pd.concat([self.tracks, _track_frame(rows)], ignore_index=True)
        self._pos = {k: i for i, k in enumerate(self.tracks["key"])}
        self.info["added_since_fit"] = int(self.info.get("added_since_fit", 0)) + len(rows)
        return positions

    def vector(self, position: int) -> np.ndarray:
        return np.asarray(self.index.vectors[position], dtype=np.float32)

    # -- storage --------------------------------------------------------------------------------
    def save(self, directory: ArtifactPath) -> ArtifactPath:
        directory = ensure_dir(directory)
        state = self.index.save(directory)
        write_npz(directory / "transform.npz", self.transform.arrays())
        if self.pair_quantiles is not None:
            write_npz(directory / "pair_quantiles.npz", {"quantiles": self.pair_quantiles, "rows": np.array(["overall", *GROUPS])})
        write_parquet(directory / "tracks.parquet", self.tracks)
        # written last: a reader that finds index.json finds a complete set of files
        write_json(directory / "index.json", {**self.info, **state, "size": len(self), "dim": self.index.dim})
        return directory

    @classmethod
    def load(cls, directory: ArtifactPath, mmap: bool = True) -> "TrackIndex":
        directory = artifact_path(directory)
        if not (directory / "index.json").is_file():
            raise IndexNotBuilt(f"no similarity index in {directory}: build it first (`music-pipeline build`, or materialize the similarity_index asset)")
        state = read_json(directory / "index.json")
        if state.get("format") != INDEX_FORMAT or state.get("features") != features_fingerprint():
            raise IndexNotBuilt(f"the similarity index in {directory} was built by another version: rebuild it")
        if state.get("learned_version") not in (None, _learned_version()):
            raise IndexNotBuilt(f"the similarity index in {directory} uses another version of the learned embedding: rebuild it")
        vectors = VectorIndex.load(directory, state, mmap)
        transform = Transform.from_arrays(state["transform"], read_npz(directory / "transform.npz"), state.get("transform_info"))
        tracks = read_parquet(directory / "tracks.parquet")
        for c in ("label", "group"):
            tracks[c] = tracks[c].astype(object).where(tracks[c].notna(), None)
        pq_path = directory / "pair_quantiles.npz"
        quantiles = read_npz(pq_path)["quantiles"] if pq_path.is_file() else None
        info = {k: v for k, v in state.items() if k not in ("params", "ann", "size", "dim")}
        if len(tracks) != len(vectors):
            raise ValueError(f"{directory}: {len(tracks)} tracks but {len(vectors)} vectors")
        return cls(transform, vectors, tracks, info, quantiles)


def pair_quantiles(t: Transform, raw: np.ndarray, vectors: np.ndarray, seed: int = 0, max_pairs: int = 5_000) -> np.ndarray:
    """Percentiles 0..100 of the cosine between random library pairs: overall (index space) and per
    feature group (standardised features). ``compare`` places a pair of tracks on these scales."""
    n = len(raw)
    if n < 2:
        return np.zeros((1 + len(GROUPS), 101))
    if n * (n - 1) // 2 <= max_pairs:
        a, b = np.triu_indices(n, 1)
    else:
        rng = np.random.default_rng(seed)
        a, b = rng.integers(0, n, max_pairs), rng.integers(0, n, max_pairs)
        a, b = a[a != b], b[a != b]
    z = t.standardise(raw)
    rows = [np.einsum("ij,ij->i", np.asarray(vectors[a]), np.asarray(vectors[b]))]
    for g in GROUPS:
        cols = np.array([FEATURE_GROUPS[f] == g for f in FEATURE_NAMES])
        rows.append(np.einsum("ij,ij->i", normalise(z[a][:, cols]), normalise(z[b][:, cols])))
    return np.array([np.percentile(r, np.arange(101)) for r in rows])


def sync_track_index(existing: TrackIndex | None, embeddings: pd.DataFrame, params: IndexParams | None = None, library_root: str | None = None, refit_fraction: float = 0.25) -> tuple[TrackIndex, str]:
    """Bring the index up to date with the embeddings table: ``("incremental", …)`` when tracks were
    only added (and the additions since the last fit stay under ``refit_fraction``), else rebuild.
    Label/path changes of indexed tracks are applied in place. Returns (index, mode)."""
    table = embeddings.reset_index(drop=True)
    if existing is not None:
        old = existing.tracks.set_index("key")
        new_keys = [k for k in table["key"] if k not in existing._pos]
        kept = table[table["key"].isin(old.index)].set_index("key")
        same_tracks = len(kept) == len(old) and (kept.loc[old.index, "content_hash"] == old["content_hash"]).all()
        added = int(existing.info.get("added_since_fit", 0)) + len(new_keys)
        fitted = int(existing.info.get("fitted_rows", len(existing)))
        same_params = params is None or asdict(params) == asdict(existing.index.params)
        # the learned embedding appearing (or going) changes which spaces can be chosen: refit
        same_inputs = (learned_block(table) is not None) == bool(existing.info.get("learned_available", False))
        if same_tracks and same_params and same_inputs and added <= refit_fraction * max(1, fitted):
            for col in ("relpath", "label", "group"):
                existing.tracks[col] = kept.loc[existing.tracks["key"], col].astype(object).where(lambda s: s.notna(), None).to_numpy()
            if library_root:
                existing.info["library_root"] = library_root
            if not new_keys:
                return existing, "unchanged"
            existing.add_tracks(table[table["key"].isin(new_keys)])
            return existing, "incremental"
    return TrackIndex.build(table, params, library_root), "rebuilt"

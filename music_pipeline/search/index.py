"""The similarity index: unit vectors + exact search, and a compressed faiss IVF index above a size.

``VectorIndex`` holds L2-normalised float32 vectors (row position = id) and answers top-k by
cosine. Up to ``approximate_above`` vectors it is exact (``exact.exact_topk``: chunked float32
products, bounded memory; single queries on large sets via ``exact.PrunedExact``).

Above, a query process does not need the float32 vectors in memory (4·d bytes a track: 2.6 GB at
1M tracks × 641 dims, 4.2 GB for the 1041-dim fusion space). It searches compact structures fitted
on the vectors (``ann.Codes``):

1. a projection on the vectors' principal directions (eigenvectors of the uncentred second
   moment, ``space.energy_rotation``: most of each vector's norm lies in the first few);
2. a faiss ``IndexIVFScalarQuantizer`` (8-bit codes, inner product) over the first ``ann_dims``
   projected dimensions proposes ``rerank × k`` candidates from ``nprobe`` lists;
3. re-rank codes of the first ``R`` projected dimensions, float16 or 8-bit (per-dimension range),
   score the candidates; the best ``k`` are then scored exactly on the float32 rows (k reads from
   the memory-mapped ``vectors.npy``), so the scores returned are exact cosines.

The re-rank codes are chosen by measurement, cheapest first within ``rerank_max_bytes`` a track:
on a sample of indexed vectors as queries, each candidate (precision, R) re-ranks the exact top
``rerank × 10`` and the first whose recall@10 reaches half-way between ``target_recall`` and 1 is
kept. Then ``nprobe`` grows until recall@10 of the whole search against exact search on the
full-precision vectors reaches ``target_recall`` (the next codes are tried when it cannot). Both
measurements are stored. ``rerank_codes="float32"`` re-ranks with the float32 vectors instead
(the layout before format 2: exact re-rank, the vectors must stay in memory).

``TrackIndex`` is what the pipeline saves: the fitted ``space.Transform`` (mean/std and optional
PCA), the ``VectorIndex`` and a small table of the indexed tracks (key, relpath, label, group,
content hash, tempo and energy), in row order. New tracks are added with the saved transform
(``add_tracks``) without rebuilding; ``sync_track_index`` decides between that and a rebuild.

On disk (``<data>/models/similarity/``), nothing pickled: ``vectors.npy`` (float32, memory-mapped
on load), ``transform.npz``, ``pair_quantiles.npz``, ``tracks.parquet``, ``index.json`` (params,
measurements, the transform choice) and, when approximate, ``ivf.faiss`` (faiss.write_index, over
the projected dimensions), ``ann.npz`` (``projection`` (d, P) float32; for 8-bit codes ``low`` and
``step`` (R,)) and ``codes.npy`` ((n, R) float16 or uint8; absent with float32 re-rank).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd

from music_pipeline.artifacts import (
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
from music_pipeline.features.embedding import FEATURE_GROUPS, FEATURE_NAMES
from music_pipeline.search.ann import CODE_KINDS, Codes, choose_codes, code_candidates
from music_pipeline.search.exact import DEFAULT_BLOCK_ELEMENTS, PrunedExact, exact_topk, normalise, recall_at_k
from music_pipeline.search.rows import NpyRows
from music_pipeline.search.space import (
    GROUPS,
    PCA_FIT_ROWS,
    Transform,
    choose_transform,
    energy_rotation,
    retrieval_bases,
)

INDEX_FORMAT = 2  # 2: compressed re-rank codes (ann.npz, codes.npy); the IVF over projected dimensions
EXACT_COMPATIBLE_FORMATS = (1,)  # exact indexes of these formats have the same files: they still load
TRACK_COLUMNS = ["key", "relpath", "label", "group", "content_hash", "tempo_bpm", "rms_mean"]
CHUNK_ROWS = 100_000  # rows projected/encoded at once: no second full-size float32 copy


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
    rerank: int = 10  # IVF candidates per wanted result, re-ranked with the codes
    ann_dims: int = 128  # leading projected dimensions the IVF codes cover (all when fewer)
    rerank_codes: str = "auto"  # "auto": float16/8-bit codes chosen by recall; "float32": the vectors themselves
    rerank_max_bytes: int = 512  # largest re-rank code a track may get (auto)
    recall_sample: int = 500
    prune_above: int = 20_000  # exact single queries use the head/tail bound (exact.PrunedExact) above this
    head_dims: int = 64
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> IndexParams:
        """From a stored ``asdict``: keys of older versions that no longer exist are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class AnnState:
    nlist: int
    nprobe: int
    recall_at_10: float
    recall_sample: int
    recall_by_nprobe: dict = field(default_factory=dict)
    build_seconds: float = 0.0
    dims: int = 0  # leading projected dimensions in the IVF codes
    codes: str = "float32"  # re-rank codes: "fp16", "sq8" or "float32" (the vectors)
    code_dims: int = 0  # projected dimensions in the re-rank codes (0 = float32 vectors)
    code_recall: float = 1.0  # recall@10 of the codes re-ranking the exact top rerank·10
    codes_tried: dict = field(default_factory=dict)  # "fp16:64" -> that recall, cheapest first
    target_met: bool = True


class VectorIndex:
    def __init__(
        self,
        vectors: np.ndarray,
        params: IndexParams | None = None,
        ann=None,
        ann_state: AnnState | None = None,
        projection: np.ndarray | None = None,
        codes: Codes | None = None,
    ):
        self.vectors = vectors
        self.params = params or IndexParams()
        self.ann = ann
        self.ann_state = ann_state
        self.projection = projection  # (d, P) float32: principal directions, largest first
        self.codes = codes
        self._pruned: PrunedExact | None = None

    @classmethod
    def build(cls, vectors: np.ndarray, params: IndexParams | None = None, normalised: bool = False) -> VectorIndex:
        """``normalised``: the rows are unit float32 already (no copy is made)."""
        index = cls(vectors if normalised else normalise(vectors), params)
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
    def vectors_in_memory(self) -> bool:
        """Whether searching reads every float32 vector (exact search, float32 re-rank). The
        compressed search reads only the k rows it returns."""
        return self.ann is None or self.codes is None

    @property
    def memory_bytes(self) -> int:
        """What a query process holds to search: the faiss index (codes, lists, centroids), the
        re-rank codes and projection, and the float32 vectors when searching reads them all (exact
        search, float32 re-rank; plus exact search's pruning arrays once built)."""
        size = 0
        if self.vectors_in_memory:
            size += int(self.vectors.nbytes)
        if self._pruned is not None:
            size += int(self._pruned.head.nbytes + self._pruned.tail_norm.nbytes)
        if self.ann is not None:
            import faiss

            size += int(faiss.serialize_index(self.ann).nbytes)
        if self.projection is not None:
            size += int(self.projection.nbytes)
        if self.codes is not None:
            size += self.codes.nbytes
        return size

    # -- search ---------------------------------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None, exact: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positions and cosine scores (m, k), best first; ``exclude`` = one position per query to skip."""
        queries = normalise(np.atleast_2d(queries))
        if self.ann is None or exact:
            return self.search_exact(queries, k, exclude)
        return self._search_ann(queries, k, exclude, self.ann_state.nprobe)

    def search_exact(
        self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        if len(queries) <= 16 and len(self) >= p.prune_above and self.dim >= 2 * p.head_dims:
            if self._pruned is None:
                self._pruned = PrunedExact(self.vectors, p.head_dims)
            return self._pruned.search(queries, k, exclude)
        return exact_topk(self.vectors, queries, k, p.block_elements, exclude)

    def _candidates(self, projected: np.ndarray, want: int, nprobe: int) -> np.ndarray:
        self.ann.nprobe = nprobe
        _, cand = self.ann.search(
            np.ascontiguousarray(projected[:, : self.ann_state.dims]), max(want, self.params.rerank * want)
        )
        return cand

    def _search_ann(
        self, queries: np.ndarray, k: int, exclude, nprobe: int, codes: Codes | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        codes = codes if codes is not None else self.codes
        want = k + (exclude is not None)
        projected = queries @ self.projection
        cand = self._candidates(projected, want, nprobe)
        out_i = np.full((len(queries), k), -1, dtype=np.int64)
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for r, (q, row) in enumerate(zip(queries, cand, strict=True)):
            row = np.unique(row[row >= 0])  # sorted: ties resolve by position, as in exact search
            if exclude is not None:
                row = row[row != exclude[r]]
            if not len(row):
                continue
            if codes is not None:  # the codes pick the k best; those k are scored exactly
                approx = codes.scores(row, projected[r])
                if len(row) > k:
                    row = np.sort(row[np.argpartition(-approx, k - 1)[:k]])
            s = np.asarray(self.vectors[row], dtype=np.float32) @ q
            order = np.lexsort((row, -s))[:k]
            out_i[r, : len(order)], out_s[r, : len(order)] = row[order], s[order]
        return out_i, out_s

    # -- the approximate index ------------------------------------------------------------------
    def build_ann(self) -> None:
        """Projection, IVF lists, re-rank codes and nprobe, all measured on this index's vectors.
        Memory beyond the vectors: the training rows, one chunk of projected rows, the codes."""
        import faiss

        t0 = time.perf_counter()
        p, n, d = self.params, len(self), self.dim
        if p.rerank_codes not in ("auto", "float32"):
            raise ValueError(f"rerank_codes must be 'auto' or 'float32', not {p.rerank_codes!r}")
        nlist = p.nlist or int(np.clip(round(2 * np.sqrt(n)), 16, 4096))
        train_rows = min(n, p.train_rows or 40 * nlist)
        rng = np.random.default_rng(p.seed)
        train = np.asarray(self.vectors[np.sort(rng.choice(n, train_rows, replace=False))], dtype=np.float32)
        rotation = energy_rotation(train, PCA_FIT_ROWS, p.seed)  # (d, d), largest energy first
        dims = min(d, p.ann_dims)
        coarse_train = train @ rotation[:, :dims]  # k-means rows
        fit_rows = (
            train[np.sort(rng.choice(len(train), min(len(train), PCA_FIT_ROWS), replace=False))] @ rotation
        )  # 8-bit ranges
        del train

        # the sample the codes and nprobe are measured on, with its exact neighbours (own row excluded)
        sample = np.sort(np.random.default_rng(p.seed + 1).choice(n, min(n, p.recall_sample), replace=False))
        queries = np.asarray(self.vectors[sample], dtype=np.float32)
        pool, _ = exact_topk(
            self.vectors, queries, min(n - 1, max(10, p.rerank * 10)), p.block_elements, exclude=sample
        )
        candidates, tried = [], {}
        if p.rerank_codes == "auto":
            candidates = code_candidates(d, p.rerank_max_bytes)
            first, tried = choose_codes(
                candidates,
                rotation,
                fit_rows,
                self.vectors,
                queries,
                pool,
                p.target_recall + (1.0 - p.target_recall) / 2,
            )
            candidates = candidates[first:]
        self.projection = np.ascontiguousarray(rotation[:, : max([dims] + [r for _, r in candidates])])

        quantizer = faiss.IndexFlatIP(dims)
        ann = faiss.IndexIVFScalarQuantizer(
            quantizer, dims, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        ann.cp.seed = p.seed
        ann.train(np.ascontiguousarray(coarse_train))
        del coarse_train
        for s in range(0, n, CHUNK_ROWS):
            y = np.asarray(self.vectors[s : s + CHUNK_ROWS], dtype=np.float32) @ self.projection[:, :dims]
            ann.add_with_ids(np.ascontiguousarray(y), np.arange(s, s + len(y), dtype=np.int64))
        self.ann = ann
        self.ann_state = AnnState(
            nlist=nlist, nprobe=1, recall_at_10=0.0, recall_sample=0, dims=dims, codes_tried=tried
        )
        truth = pool[:, :10]
        self.codes = None
        if not candidates:  # float32 re-rank
            self.tune_nprobe(sample, queries, truth)
        for kind, r in candidates:  # the chosen codes; richer ones only when nprobe cannot reach the target
            self.codes = Codes.fit(kind, fit_rows[:, :r])
            self.codes.encode_all(self.vectors, self.projection[:, :r], CHUNK_ROWS)
            st = self.ann_state
            st.codes, st.code_dims, st.code_recall = kind, r, tried.get(f"{kind}:{r}", float("nan"))
            if self.tune_nprobe(sample, queries, truth) >= p.target_recall:
                break
        if self.codes is not None:
            self.projection = np.ascontiguousarray(self.projection[:, : max(dims, self.codes.dims)])
        self.ann_state.target_met = self.ann_state.recall_at_10 >= p.target_recall
        self.ann_state.build_seconds = time.perf_counter() - t0

    def tune_nprobe(
        self, sample: np.ndarray | None = None, queries: np.ndarray | None = None, truth: np.ndarray | None = None
    ) -> float:
        """Smallest nprobe (1, 2, 3, 4, 6, 8, 12, …) whose recall@10 on a sample reaches the target."""
        p, st = self.params, self.ann_state
        if sample is None:
            rng = np.random.default_rng(p.seed + 1)
            sample = np.sort(rng.choice(len(self), min(len(self), p.recall_sample), replace=False))
            queries = np.asarray(self.vectors[sample], dtype=np.float32)
            truth, _ = exact_topk(self.vectors, queries, 10, p.block_elements, exclude=sample)
        limit = min(st.nlist, p.max_nprobe)
        grid = sorted({min(limit, int(b * 2**e)) for e in range(16) for b in (1, 1.5)} | {limit})
        st.recall_by_nprobe = {}
        for nprobe in grid:
            approx_i, _ = self._search_ann(queries, 10, sample, nprobe)
            st.recall_by_nprobe[nprobe] = recall_at_k(approx_i, truth)
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
        go to the nearest existing IVF list and are encoded with the fitted codes. Crossing
        ``approximate_above`` builds the IVF index."""
        v = normalise(np.atleast_2d(vectors))
        if v.shape[1] != self.dim:
            raise ValueError(f"vectors have width {v.shape[1]}, the index has {self.dim}")
        start = len(self)
        self.vectors = np.concatenate([np.asarray(self.vectors, dtype=np.float32), v])
        positions = np.arange(start, len(self), dtype=np.int64)
        self._pruned = None
        if self.ann is not None:
            y = v @ self.projection
            self.ann.add_with_ids(np.ascontiguousarray(y[:, : self.ann_state.dims]), positions)
            if self.codes is not None:
                self.codes.append(y[:, : self.codes.dims])
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
            write_npz(
                directory / "ann.npz",
                {"projection": self.projection, **(self.codes.arrays() if self.codes is not None else {})},
                compress=False,
            )
            if self.codes is not None:
                write_npy(directory / "codes.npy", self.codes.data)
            else:
                remove(directory / "codes.npy")
        else:
            for name in ("ivf.faiss", "ann.npz", "codes.npy"):
                remove(directory / name)
        return {"params": asdict(self.params), "ann": asdict(self.ann_state) if self.ann_state else None}

    @classmethod
    def load(cls, directory: ArtifactPath, state: dict, mmap: bool = True) -> VectorIndex:
        """The search structures (faiss index, codes, projection) are read into memory. The
        float32 vectors too unless ``mmap``: then a compressed index reads rows on demand
        (``rows.NpyRows``: its search reads k rows a query), any other is memory-mapped (its
        search reads every vector; a remote file is read whole)."""
        directory = artifact_path(directory)
        compressed = bool(state.get("ann")) and state["ann"].get("codes") in CODE_KINDS
        if mmap and compressed:
            vectors = NpyRows.open(directory / "vectors.npy")
        else:
            vectors = read_npy(directory / "vectors.npy", mmap=mmap)
        params = IndexParams.from_dict(state["params"])
        ann, ann_state, projection, codes = None, None, None, None
        if state.get("ann"):
            import faiss

            with local_copy(directory / "ivf.faiss") as local:
                ann = faiss.read_index(str(local))
            st = dict(state["ann"])
            st["recall_by_nprobe"] = {int(k): v for k, v in st.get("recall_by_nprobe", {}).items()}
            ann_state = AnnState(**st)
            arrays = read_npz(directory / "ann.npz")
            projection = arrays["projection"]
            if ann_state.codes in CODE_KINDS:
                codes = Codes.from_arrays(ann_state.codes, read_npy(directory / "codes.npy"), arrays)
            if ann.ntotal != len(vectors) or (codes is not None and len(codes) != len(vectors)):
                raise ValueError(
                    f"{directory}: faiss index has {ann.ntotal} vectors, codes {len(codes) if codes is not None else '-'}, vectors.npy {len(vectors)}"
                )
        return cls(vectors, params, ann, ann_state, projection, codes)


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

    def __init__(
        self,
        transform: Transform,
        vectors: VectorIndex,
        tracks: pd.DataFrame,
        info: dict | None = None,
        pair_quantiles: np.ndarray | None = None,
    ):
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
    def build(
        cls,
        embeddings: pd.DataFrame,
        params: IndexParams | None = None,
        library_root: str | None = None,
        transform: str | None = None,
    ) -> TrackIndex:
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

            t, choice = (
                fit_transform(transform, raw, params.seed, learned),
                {"chosen": transform, "reason": "named by the caller", "scores": {}},
            )
        else:
            t, choice = choose_transform(raw, bases, seed=params.seed, learned=learned)
        if t.dim >= 2 * params.head_dims:  # exact single queries can then skip most rows
            rows = _sample_rows(len(raw), PCA_FIT_ROWS, params.seed)  # the rotation is fitted on these anyway
            t.rotation = energy_rotation(
                t.project(raw[rows], None if learned is None else learned[rows]), seed=params.seed
            )
        t0 = time.perf_counter()
        vectors = VectorIndex.build(project_rows(t, raw, learned), params, normalised=True)
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
            write_npz(
                directory / "pair_quantiles.npz",
                {"quantiles": self.pair_quantiles, "rows": np.array(["overall", *GROUPS])},
            )
        write_parquet(directory / "tracks.parquet", self.tracks)
        # written last: a reader that finds index.json finds a complete set of files
        write_json(
            directory / "index.json",
            {**self.info, **state, "format": INDEX_FORMAT, "size": len(self), "dim": self.index.dim},
        )
        return directory

    @classmethod
    def load(cls, directory: ArtifactPath, mmap: bool = True) -> TrackIndex:
        directory = artifact_path(directory)
        if not (directory / "index.json").is_file():
            raise IndexNotBuilt(
                f"no similarity index in {directory}: build it first (`music-pipeline build`, or materialize the similarity_index asset)"
            )
        state = read_json(directory / "index.json")
        fmt = state.get("format")
        readable = fmt == INDEX_FORMAT or (fmt in EXACT_COMPATIBLE_FORMATS and not state.get("ann"))
        if not readable or state.get("features") != features_fingerprint():
            raise IndexNotBuilt(
                f"the similarity index in {directory} was built by another version (format {fmt}, this version reads {INDEX_FORMAT}): rebuild it "
                "(`music-pipeline build`, or materialize the similarity_index asset)"
            )
        if state.get("learned_version") not in (None, _learned_version()):
            raise IndexNotBuilt(
                f"the similarity index in {directory} uses another version of the learned embedding: rebuild it"
            )
        vectors = VectorIndex.load(directory, state, mmap)
        transform = Transform.from_arrays(
            state["transform"], read_npz(directory / "transform.npz"), state.get("transform_info")
        )
        tracks = read_parquet(directory / "tracks.parquet")
        for c in ("label", "group"):
            tracks[c] = tracks[c].astype(object).where(tracks[c].notna(), None)
        pq_path = directory / "pair_quantiles.npz"
        quantiles = read_npz(pq_path)["quantiles"] if pq_path.is_file() else None
        info = {k: v for k, v in state.items() if k not in ("params", "ann", "size", "dim")}
        if len(tracks) != len(vectors):
            raise ValueError(f"{directory}: {len(tracks)} tracks but {len(vectors)} vectors")
        return cls(transform, vectors, tracks, info, quantiles)


def _sample_rows(n: int, limit: int, seed: int) -> np.ndarray:
    """All rows up to ``limit``, else a seeded sorted sample of ``limit`` (as energy_rotation takes)."""
    return np.arange(n) if n <= limit else np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def project_rows(
    t: Transform, raw: np.ndarray, learned: np.ndarray | None = None, chunk: int = CHUNK_ROWS
) -> np.ndarray:
    """``t.project`` a chunk at a time into one float32 array: the float64 intermediates of a
    projection stay chunk-sized instead of library-sized."""
    out = np.empty((len(raw), t.dim), dtype=np.float32)
    for s in range(0, len(raw), chunk):
        out[s : s + chunk] = t.project(raw[s : s + chunk], None if learned is None else learned[s : s + chunk])
    return out


def pair_quantiles(
    t: Transform, raw: np.ndarray, vectors: np.ndarray, seed: int = 0, max_pairs: int = 5_000
) -> np.ndarray:
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


def sync_track_index(
    existing: TrackIndex | None,
    embeddings: pd.DataFrame,
    params: IndexParams | None = None,
    library_root: str | None = None,
    refit_fraction: float = 0.25,
) -> tuple[TrackIndex, str]:
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
                existing.tracks[col] = (
                    kept.loc[existing.tracks["key"], col].astype(object).where(lambda s: s.notna(), None).to_numpy()
                )
            if library_root:
                existing.info["library_root"] = library_root
            if not new_keys:
                return existing, "unchanged"
            existing.add_tracks(table[table["key"].isin(new_keys)])
            return existing, "incremental"
    return TrackIndex.build(table, params, library_root), "rebuilt"

"""Compact re-rank codes for the approximate index, and how they are chosen.

A code stores the first ``R`` coordinates of a vector projected on its principal directions
(``space.energy_rotation``: largest energy first), either as float16 (2 bytes a dimension, ~3
significant digits) or as 8 bits a dimension over that dimension's range in a fitting sample
(1 byte; values outside the range are clipped). The score of a candidate is its decoded code ·
the projected query: the tail beyond ``R`` and the rounding are what it loses against the exact
cosine.

``choose_codes`` measures that loss where it matters: on sample queries, each candidate code
re-ranks the queries' exact top-``rerank·10`` neighbours, and its recall@10 against the exact
top 10 is the number kept. Candidates are tried cheapest first (bytes per vector); the first that
reaches the target wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from music_pipeline.search.exact import recall_at_k

CODE_KINDS = ("fp16", "sq8")
CODE_BYTES = {"fp16": 2, "sq8": 1}
DIM_GRID = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)


def code_candidates(d: int, max_bytes: int) -> list[tuple[str, int]]:
    """(kind, dims) pairs within ``max_bytes`` a vector, cheapest first (float16 first at equal
    cost); the single cheapest when none fits."""
    dims = sorted({r for r in DIM_GRID if r < d} | {d})
    every = sorted(
        ((k, r) for r in dims for k in CODE_KINDS), key=lambda c: (CODE_BYTES[c[0]] * c[1], CODE_KINDS.index(c[0]))
    )
    fitting = [c for c in every if CODE_BYTES[c[0]] * c[1] <= max_bytes]
    return fitting or every[:1]


@dataclass
class Codes:
    kind: str  # "fp16" or "sq8"
    data: np.ndarray  # (n, dims) float16 or uint8
    low: np.ndarray | None = None  # (dims,) float32, sq8: value of code 0
    step: np.ndarray | None = None  # (dims,) float32, sq8: value of one code step

    @classmethod
    def fit(cls, kind: str, sample: np.ndarray) -> Codes:
        """Empty codes of ``sample``'s width; 8-bit codes take each dimension's range from it."""
        if kind not in CODE_KINDS:
            raise ValueError(f"unknown code kind {kind!r} (choose from {CODE_KINDS})")
        dims = sample.shape[1]
        if kind == "fp16":
            return cls(kind, np.empty((0, dims), dtype=np.float16))
        low = sample.min(axis=0).astype(np.float32)
        span = sample.max(axis=0).astype(np.float32) - low
        return cls(
            kind, np.empty((0, dims), dtype=np.uint8), low, np.where(span > 0, span / 255, 1.0).astype(np.float32)
        )

    @classmethod
    def from_arrays(cls, kind: str, data: np.ndarray, arrays: dict[str, np.ndarray]) -> Codes:
        expected = np.float16 if kind == "fp16" else np.uint8
        if data.dtype != expected or data.ndim != 2:
            raise ValueError(
                f"{kind} codes must be a 2-D {np.dtype(expected).name} array, not {data.ndim}-D {data.dtype}"
            )
        return cls(kind, np.asarray(data), arrays.get("low"), arrays.get("step"))

    def arrays(self) -> dict[str, np.ndarray]:
        return {} if self.kind == "fp16" else {"low": self.low, "step": self.step}

    def __len__(self) -> int:
        return len(self.data)

    @property
    def dims(self) -> int:
        return self.data.shape[1]

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes) + sum(int(a.nbytes) for a in self.arrays().values())

    def encode(self, y: np.ndarray) -> np.ndarray:
        """Codes of projected rows ``y`` (m, dims)."""
        if self.kind == "fp16":
            return np.asarray(y, dtype=np.float16)
        return np.clip(np.rint((y - self.low) / self.step), 0, 255).astype(np.uint8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        if self.kind == "fp16":
            return codes.astype(np.float32)
        return codes.astype(np.float32) * self.step + self.low

    def encode_all(self, vectors: np.ndarray, projection: np.ndarray, chunk: int) -> None:
        """Encode every row of ``vectors`` (n, d) projected on ``projection`` (d, dims), a chunk at a time."""
        n = len(vectors)
        self.data = np.empty((n, self.dims), dtype=self.data.dtype)
        for s in range(0, n, chunk):
            self.data[s : s + chunk] = self.encode(np.asarray(vectors[s : s + chunk], dtype=np.float32) @ projection)

    def append(self, y: np.ndarray) -> None:
        self.data = np.concatenate([self.data, self.encode(y)])

    def scores(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Approximate dot products of the coded ``rows`` with a projected query (its first dims)."""
        q = np.asarray(query[: self.dims], dtype=np.float32)
        if self.kind == "fp16":
            return self.data[rows].astype(np.float32) @ q
        return self.data[rows].astype(np.float32) @ (q * self.step) + np.float32(self.low @ q)


def choose_codes(
    candidates: list[tuple[str, int]],
    rotation: np.ndarray,
    fit_rows: np.ndarray,
    vectors: np.ndarray,
    queries: np.ndarray,
    pool: np.ndarray,
    target: float,
) -> tuple[int, dict[str, float]]:
    """Index of the first candidate whose recall@10 re-ranking ``pool`` reaches ``target`` (the
    last, most precise one when none does), and every measured recall ("fp16:64" -> recall).

    ``rotation`` (d, ≥ max dims): the projection; ``fit_rows``: projected rows to fit 8-bit ranges
    on; ``queries`` (m, d) unit vectors; ``pool`` (m, p): each query's exact top p positions, best
    first (-1 = none), whose first 10 are the truth.
    """
    widest = max(r for _, r in candidates)
    p = rotation[:, :widest]
    valid = pool >= 0
    rows = np.unique(pool[valid])
    y_rows = np.asarray(vectors[rows], dtype=np.float32) @ p
    at = np.searchsorted(rows, np.where(valid, pool, rows[0] if len(rows) else 0))
    qy = np.asarray(queries, dtype=np.float32) @ p
    truth = pool[:, :10]
    tried = {}
    for i, (kind, r) in enumerate(candidates):
        codes = Codes.fit(kind, fit_rows[:, :r])
        decoded = codes.decode(codes.encode(y_rows[:, :r]))
        found = np.full(truth.shape, -1, dtype=np.int64)
        for j in range(len(pool)):
            s = np.where(valid[j], decoded[at[j]] @ qy[j, :r], -np.inf)
            order = np.lexsort((pool[j], -s))[: truth.shape[1]]
            found[j] = np.where(np.isfinite(s[order]), pool[j][order], -1)
        tried[f"{kind}:{r}"] = recall_at_k(found, truth)
        if tried[f"{kind}:{r}"] >= target:
            return i, tried
    return len(candidates) - 1, tried

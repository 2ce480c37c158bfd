"""How good the similarity index is: retrieval precision, recall against exact search, latency.

Measured on every build of the ``similarity_index`` asset and by its checks; ``docs/discovery.md``
has the method and the figures. Nothing here imports Dagster.
"""

from __future__ import annotations

import time

import numpy as np

from music_pipeline.search.exact import exact_topk, recall_at_k
from music_pipeline.search.index import TrackIndex
from music_pipeline.search.space import precision_at_k, precision_ci

# recall@10 of the saved index against exact search that the index must reach
RECALL_THRESHOLD = 0.95


def retrieval_metrics(index: TrackIndex) -> dict:
    """Leave-one-out precision@5 of same-label and same-group neighbours, each with a 95 % CI from
    a bootstrap over groups (a track without a group is its own)."""
    t = index.tracks
    out = {}
    vectors = np.asarray(index.index.vectors)
    lab = np.array([x if isinstance(x, str) and x else None for x in t["label"]], dtype=object)
    grp = np.array(
        [g if isinstance(g, str) and g else k for g, k in zip(t["group"], t["key"], strict=True)], dtype=object
    )
    for name, classes in (("label", lab), ("group", grp)):
        r = precision_at_k(vectors, classes, 5, per_query=True)
        r["ci95"] = precision_ci(r, grp)
        out[name] = {k: v for k, v in r.items() if k not in ("query_rows", "query_precision")}
    return out


def index_card(index: TrackIndex, metrics: dict) -> dict:
    """The similarity index's model card (``models`` command): same-group precision@5 when the
    library has groups, else same-label."""
    basis = (
        "group"
        if metrics["group"]["queries"] and any(isinstance(g, str) and g for g in index.tracks["group"])
        else "label"
    )
    m = metrics[basis]
    sel = index.info.get("selection", {})
    built = index.info.get("built_at") or time.time()
    return {
        "name": "similarity_index",
        "version": time.strftime("v%Y%m%dT%H%M%S", time.gmtime(built)),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(built)),
        "model": f"cosine over the {index.transform.kind} space, {'approximate (faiss IVF)' if index.index.approximate else 'exact'} search",
        "feature_view": index.transform.kind,
        "training_size": int(index.info.get("fitted_rows", len(index))),
        "estimate": {
            f"same_{basis}_precision_at_5": m["precision"],
            "ci95": m.get("ci95"),
            "method": f"leave-one-out precision@5 over {m['queries']} queries, CI: bootstrap over groups; the space was chosen among "
            f"{len(sel.get('scores', {})) or 1} on the same library by {', '.join(sel.get('measured_on', [])) or 'no'} neighbours (slightly optimistic)",
        },
        "baseline": {f"same_{basis}_precision_at_5": m["baseline"], "method": "5 random other tracks"},
        "other": {f"same_{b}_precision_at_5": metrics[b]["precision"] for b in metrics},
    }


def latency_ms(index: TrackIndex, n: int = 50) -> float:
    rng = np.random.default_rng(0)
    pos = rng.choice(len(index), min(n, len(index)), replace=False)
    times = []
    for p in pos:
        t0 = time.perf_counter()
        index.index.search(index.vector(p), 10, exclude=np.array([p]))
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000) if times else 0.0


def search_kind(index: TrackIndex) -> str:
    st = index.index.ann_state
    if st is None:
        return "exact (chunked float32 products)"
    if index.index.codes is None:
        return "approximate (faiss IVF-SQ8 + float32 re-rank)"
    return f"approximate (faiss IVF-SQ8 over {st.dims} dims + {st.codes} re-rank codes over {st.code_dims} dims, results scored exactly)"


RECALL_CHECK_SEED = 20_261  # not the tuning sample's seed: the check measures on other queries


def measure_index_recall(index: TrackIndex, sample: int = 500, seed: int = RECALL_CHECK_SEED) -> tuple[float, int]:
    """Recall@10 of the saved index's own search (approximate as loaded: its lists, its nprobe)
    against exact search, on a seeded sample of the indexed tracks as queries (each query's own
    row excluded on both sides). Returns (recall, queries)."""
    vi = index.index
    n = len(vi)
    rows = np.sort(np.random.default_rng(seed).choice(n, min(n, sample), replace=False))
    queries = np.asarray(vi.vectors[rows], dtype=np.float32)
    exact_i, _ = exact_topk(vi.vectors, queries, min(10, n - 1), vi.params.block_elements, exclude=rows)
    approx_i, _ = vi.search(queries, min(10, n - 1), exclude=rows)
    return recall_at_k(approx_i, exact_i), len(rows)

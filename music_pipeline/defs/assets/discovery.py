"""group discovery: the similarity index, label similarity statistics and maps of the library."""

import dagster as dg

from music_pipeline.artifacts import read_json, read_parquet, write_parquet
from music_pipeline.defs.metadata import png_md, table_md
from music_pipeline.defs.resources import MusicPipelineResource
from music_pipeline.defs.retraining import record_trained, retraining_metadata
from music_pipeline.search.discovery import Discovery
from music_pipeline.search.evaluation import (
    RECALL_THRESHOLD,
    index_card,
    latency_ms,
    measure_index_recall,
    retrieval_metrics,
    search_kind,
)
from music_pipeline.search.index import IndexNotBuilt, IndexParams, TrackIndex, sync_track_index
from music_pipeline.search.maps import draw_library_map

EMBEDDINGS = dg.AssetKey("embeddings")
LEARNED_EMBEDDINGS = dg.AssetKey("learned_embeddings")
SIMILARITY_INDEX = dg.AssetKey("similarity_index")

_COMMON = {"group_name": "discovery", "owners": ["team:music-pipeline"], "code_version": "1"}


_INDEX_DEFAULTS = IndexParams()  # every default lives in the core


class SimilarityIndexConfig(dg.Config):
    approximate_above: int = _INDEX_DEFAULTS.approximate_above  # exact search up to this many tracks, faiss IVF above
    target_recall: float = _INDEX_DEFAULTS.target_recall  # nprobe is tuned until recall@10 on a sample reaches this
    block_elements: int = _INDEX_DEFAULTS.block_elements  # largest block of scores held at once (float32 values)


def _load_existing(directory):
    try:
        return TrackIndex.load(directory, mmap=False)
    except (IndexNotBuilt, ValueError, OSError, KeyError):  # absent or unusable: rebuilt from scratch
        return None


def _explorer_link(data_dir):
    """A link to the running explorer (`music-pipeline serve`) of this data dir, or how to start one."""
    from music_pipeline.web.status import running_explorer

    url = running_explorer(data_dir)
    return (
        dg.MetadataValue.url(url)
        if url
        else f"not running: `music-pipeline serve --data {data_dir}` to search and play the library"
    )


def _fmt(x):
    return "n/a" if x is None else round(float(x), 3)


@dg.asset(
    deps=[EMBEDDINGS, LEARNED_EMBEDDINGS],
    kinds={"python", "numpy", "faiss"},
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Cosine-similarity index over the embedding table joined with the learned embedding, standardised "
        "on the library (mean/std saved) with the space (standardised / group-balanced / PCA / whitened "
        "641 dims, the learned embedding, or their fusion) that gives the best leave-one-out precision@5 "
        "of same-label and same-group neighbours. Exact chunked search up to `approximate_above` "
        "tracks, compressed above: faiss IVF (8-bit codes over the leading principal dimensions) proposes "
        "candidates, float16/8-bit re-rank codes chosen by measured recall rank them, the results are scored "
        "exactly; recall@10 vs exact measured on a sample. New tracks are added without a rebuild. Files in "
        "`<data>/models/similarity/`: vectors.npy, transform.npz, pair_quantiles.npz, tracks.parquet, index.json, "
        "ivf.faiss, ann.npz, codes.npy. "
        "While `music-pipeline serve` runs on this data dir, the materialization links to it (`explorer`)."
    ),
    **_COMMON,
)
def similarity_index(
    context: dg.AssetExecutionContext, config: SimilarityIndexConfig, pipeline: MusicPipelineResource
) -> dg.MaterializeResult:
    from music_pipeline.learned.table import read_learned_table, with_learned

    layout = pipeline.layout
    df = with_learned(read_parquet(layout.embeddings_path), read_learned_table(pipeline.settings.data_dir))
    if df.empty:
        raise dg.Failure("the embedding table is empty: nothing to index")
    params = IndexParams(
        approximate_above=config.approximate_above,
        target_recall=config.target_recall,
        block_elements=config.block_elements,
    )
    directory = layout.similarity_dir
    index, mode = sync_track_index(_load_existing(directory), df, params, str(pipeline.settings.require_library()))
    metrics = retrieval_metrics(index)
    index.info["retrieval"] = metrics
    index.info["card"] = index_card(index, metrics)
    index.save(directory)
    context.log.info(f"similarity index {mode}: {len(index)} tracks, transform {index.transform.kind}")
    st = index.index.ann_state
    sel = index.info.get("selection", {})
    lab, grp = metrics["label"], metrics["group"]
    md = {
        "path": dg.MetadataValue.path(str(directory)),
        "size": len(index),
        "dim": index.index.dim,
        "update": mode,
        "search": search_kind(index),
        "index_memory_bytes": index.index.memory_bytes,
        "query_ms_p50": latency_ms(index),
        "transform": index.transform.kind,
        "transform_selection": dg.MetadataValue.json(sel),
        "label_precision_at_5": _fmt(lab["precision"]),
        "label_precision_at_5_random": _fmt(lab["baseline"]),
        "label_queries": lab["queries"],
        "group_precision_at_5": _fmt(grp["precision"]),
        "group_precision_at_5_random": _fmt(grp["baseline"]),
        "group_queries": grp["queries"],
        "label_precision_at_5_ci95": dg.MetadataValue.json(lab.get("ci95")),
        "group_precision_at_5_ci95": dg.MetadataValue.json(grp.get("ci95")),
        "model_card": dg.MetadataValue.json(index.info["card"]),
    }
    md["explorer"] = _explorer_link(layout.root)
    if st is not None:
        md.update(
            {
                "recall_at_10": st.recall_at_10,
                "recall_sample": st.recall_sample,
                "nprobe": st.nprobe,
                "nlist": st.nlist,
                "recall_by_nprobe": dg.MetadataValue.json({str(k): v for k, v in st.recall_by_nprobe.items()}),
                "rerank_codes": f"{st.codes} × {st.code_dims}" if st.code_dims else st.codes,
                "codes_tried": dg.MetadataValue.json(st.codes_tried),
            }
        )
        if not st.target_met:
            context.log.warning(
                f"similarity index: recall@10 {st.recall_at_10:.3f} on the sample is below the target {params.target_recall} "
                f"within rerank_max_bytes={params.rerank_max_bytes}"
            )
    return dg.MaterializeResult(metadata=md)


@dg.asset_check(
    asset=similarity_index,
    description=f"The saved index, loaded as a query would load it, reaches recall@10 ≥ {RECALL_THRESHOLD} against exact search, measured here on a seeded sample of its tracks (not the number stored at build time); exact search passes by construction.",
)
def similarity_index_recall(pipeline: MusicPipelineResource) -> dg.AssetCheckResult:
    index = TrackIndex.load(
        pipeline.layout.similarity_dir
    )  # as a query process loads it; exact search streams the vectors
    ann = index.index.ann_state
    if index.index.ann is None or ann is None:
        return dg.AssetCheckResult(passed=True, metadata={"search": "exact", "recall_at_10": 1.0})
    recall, queries = measure_index_recall(index)
    return dg.AssetCheckResult(
        passed=recall >= RECALL_THRESHOLD,
        metadata={
            "search": "approximate",
            "recall_at_10": recall,
            "threshold": RECALL_THRESHOLD,
            "queries": queries,
            "nprobe": ann.nprobe,
            "recall_at_10_at_build": ann.recall_at_10,
        },
    )


@dg.asset_check(
    asset=similarity_index,
    blocking=True,
    description="The index holds exactly the tracks of the embedding table (same count, same keys).",
)
def similarity_index_size(pipeline: MusicPipelineResource) -> dg.AssetCheckResult:
    layout = pipeline.layout
    keys = read_parquet(layout.embeddings_path, columns=["key"])["key"]
    indexed = read_parquet(layout.similarity_dir / "tracks.parquet", columns=["key"])["key"]
    state = read_json(layout.similarity_dir / "index.json")
    missing, extra = set(keys) - set(indexed), set(indexed) - set(keys)
    return dg.AssetCheckResult(
        passed=len(indexed) == len(keys) == state["size"] and not missing and not extra,
        metadata={
            "embedding_rows": len(keys),
            "index_size": int(state["size"]),
            "missing": len(missing),
            "extra": len(extra),
        },
    )


@dg.asset(
    deps=[SIMILARITY_INDEX],
    kinds={"python", "parquet"},
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Mean cosine similarity within each label and between every pair of labels in the "
        "similarity space: `<data>/tables/label_similarity.parquet` (label_a, label_b, kind, n_a, "
        "n_b, mean_cosine) and the heatmap `<data>/plots/label_similarity.png`."
    ),
    **_COMMON,
)
def label_similarity(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    from music_pipeline.search.labels import heatmap_png, similarity_matrix, summary
    from music_pipeline.search.labels import label_similarity as compute

    layout = pipeline.layout
    index = TrackIndex.load(layout.similarity_dir)
    table = compute(index.index.vectors, index.tracks["label"])
    path = write_parquet(layout.label_similarity_path, table)
    md = {
        "path": dg.MetadataValue.path(str(path)),
        **{k: _fmt(v) if k != "labels" else v for k, v in summary(table).items()},
    }
    md["unlabelled_tracks"] = int(index.tracks["label"].isna().sum())
    if len(table):
        png = layout.plots_dir / "label_similarity.png"
        heatmap_png(table, png)
        md["heatmap"] = png_md(png, "label similarity")
        md["matrix"] = table_md(similarity_matrix(table).reset_index(), floatfmt=".3f")
    else:
        context.log.warning("no labelled tracks: nothing to compare")
    return dg.MaterializeResult(metadata=md)


@dg.asset(
    deps=[EMBEDDINGS, LEARNED_EMBEDDINGS, dg.AssetKey("difficulty")],
    kinds={"python", "parquet"},
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Playlists from the audio alone: the learned embedding and the 641 dims fused, PCA, Ward's clustering with "
        "k the smallest number of groups explaining half the variance; each named from its tags, tempo and "
        "difficulty level, ordered neighbour to neighbour, saved as `<data>/playlists/` (playlists.json, "
        "M3U8 and XSPF per playlist) and `<data>/tables/playlists.parquet` (docs/playlists.md)."
    ),
    **_COMMON,
)
def library_playlists(context: dg.AssetExecutionContext, pipeline: MusicPipelineResource) -> dg.MaterializeResult:
    from music_pipeline.playlists.library import build_playlists

    result = build_playlists(pipeline.layout.root, pipeline.settings.library_dir)
    for t in result.left_out:
        context.log.warning(f"not in a playlist: {t['relpath']}: {t['reason']}")
    rows = [f"| {p['name']} | {len(p['tracks'])} | {p['why']} |" for p in result.playlists]
    return dg.MaterializeResult(
        metadata={
            "playlists": len(result.playlists),
            "tracks": sum(len(p["tracks"]) for p in result.playlists),
            "left_out": len(result.left_out),
            "clustering": dg.MetadataValue.json(result.clustering),
            "names": dg.MetadataValue.md("| playlist | tracks | why |\n|---|---|---|\n" + "\n".join(rows)),
            "path": dg.MetadataValue.path(str(pipeline.layout.playlists_dir)),
        }
    )


class EmbeddingMapConfig(dg.Config):
    journey_track: str = ""  # key, library path or title substring; empty = the most typical track
    seed: int = 0
    max_points: int = 50_000  # larger libraries are mapped on a seeded random sample


@dg.asset(
    # difficulty only for the PDI levels in the hover text (read when present): the dep orders a build
    deps=[SIMILARITY_INDEX, dg.AssetKey("difficulty"), dg.AssetKey("library_playlists")],
    kinds={"python", "plotly"},
    description="UMAP maps of the similarity space (2-D and 3-D HTML, coloured by label, PDI level or playlist), their "
    "coordinates, a PNG preview and the embedding-journey figure of one track (docs/discovery.md).",
    **_COMMON,
)
def embedding_map(
    context: dg.AssetExecutionContext, config: EmbeddingMapConfig, pipeline: MusicPipelineResource
) -> dg.MaterializeResult:
    layout = pipeline.layout
    why = retraining_metadata(context, layout)
    drawn = draw_library_map(Discovery.open(layout.root), layout, config.seed, config.max_points, config.journey_track)
    if drawn.reason:
        context.log.warning(f"embedding map not drawn: {drawn.reason}")
        return dg.MaterializeResult(metadata={"drawn": False, "reason": drawn.reason})
    context.log.info(f"UMAP of {drawn.tracks_mapped} tracks in {drawn.seconds:.1f} s")
    record_trained(context, layout)
    md = {
        **why,
        "tracks_mapped": drawn.tracks_mapped,
        "html_2d": dg.MetadataValue.path(str(drawn.html_2d)),
        "html_3d": dg.MetadataValue.path(str(drawn.html_3d)),
        "coordinates": dg.MetadataValue.path(str(drawn.coordinates)),
        "pdi_levels": "from difficulty.parquet" if drawn.with_levels else "difficulty.parquet not built yet",
        "preview": png_md(drawn.preview, "UMAP 2-D"),
    }
    if drawn.journey is None:
        exc = drawn.journey_skipped
        context.log.warning(f"embedding journey skipped: {type(exc).__name__}: {exc}")
        md["journey_track"] = f"skipped: {exc}"
    else:
        md["journey_track"] = drawn.journey_track
        md["journey"] = png_md(drawn.journey, "embedding journey")
        md["journey_path"] = dg.MetadataValue.path(str(drawn.journey))
    return dg.MaterializeResult(metadata=md)


__all__ = [
    "embedding_map",
    "label_similarity",
    "library_playlists",
    "similarity_index",
    "similarity_index_recall",
    "similarity_index_size",
]

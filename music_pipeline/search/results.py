"""The JSON objects of query answers: one builder per query, shared by the CLI's ``--json`` and the
web explorer's API, so both always carry the same fields."""

from __future__ import annotations

from music_pipeline.search.compare import Comparison
from music_pipeline.search.discovery import Hit, ResolvedTrack


def similar_json(q: ResolvedTrack, hits: list[Hit], diverse: float | None) -> dict:
    """``{"query": {...}, "diverse": λ|null, "results": [{track, path, relpath, label, score, ...}]}``"""
    return {"query": q.as_dict(), "diverse": diverse, "results": [h.as_dict() for h in hits]}


def compare_json(qa: ResolvedTrack, qb: ResolvedTrack, c: Comparison) -> dict:
    """``{"a": {...}, "b": {...}, cosine, percentile, groups, agree, differ, differences}``"""
    return {"a": qa.as_dict(), "b": qb.as_dict(), **c.as_dict()}


def radio_json(q: ResolvedTrack, hits: list[Hit], filters: dict) -> dict:
    """``{"query": {...}, "filters": {...}, "results": [{..., tempo_bpm, energy, seed_similarity}]}``"""
    return {"query": q.as_dict(), "filters": filters, "results": [h.as_dict() for h in hits]}


def path_json(qa: ResolvedTrack, qb: ResolvedTrack, hits: list[Hit], length: int) -> dict:
    """``{"from": {...}, "to": {...}, "length": n, "cosine": cos(A, B), "results": [{..., t, from_similarity, to_similarity}]}``
    (the tracks between A and B; A and B themselves are not in ``results``)."""
    return {
        "from": qa.as_dict(),
        "to": qb.as_dict(),
        "length": length,
        "cosine": float(qa.vector @ qb.vector),
        "results": [h.as_dict() for h in hits],
    }

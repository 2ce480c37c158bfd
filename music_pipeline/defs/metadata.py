"""Metadata helpers shared by every asset: plots embedded in markdown, tables, paths."""

import base64

import dagster as dg
import pandas as pd

from music_pipeline import records
from music_pipeline.artifacts import ArtifactPath, read_bytes


def png_md(png: ArtifactPath | str | bytes, alt: str = "plot") -> dg.MetadataValue:
    """A PNG shown inline in the materialization's metadata (markdown with a data: URI)."""
    data = png if isinstance(png, bytes) else read_bytes(png)
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode()})")


def table_md(df: pd.DataFrame, floatfmt: str = ".3g", max_rows: int = 50) -> dg.MetadataValue:
    if df.empty:
        return dg.MetadataValue.md("_none_")
    return dg.MetadataValue.md(df.head(max_rows).to_markdown(index=False, floatfmt=floatfmt))


def to_metadata(facts: dict) -> dict:
    """A core record's metadata (``music_pipeline.records``) as Dagster metadata, in the same order."""
    return {key: _metadata_value(v) for key, v in facts.items()}


def _metadata_value(v):
    if isinstance(v, records.Markdown):
        return dg.MetadataValue.md(v.text)
    if isinstance(v, records.Table):
        return table_md(v.frame, floatfmt=v.floatfmt)
    if isinstance(v, records.Json):
        return dg.MetadataValue.json(v.value)
    if isinstance(v, records.FilePath):
        return dg.MetadataValue.path(str(v.path))
    if isinstance(v, records.Plot):
        return png_md(v.path, v.alt)
    return v

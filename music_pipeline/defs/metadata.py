"""Metadata helpers shared by every asset: plots embedded in markdown, tables, paths."""

import base64
from pathlib import Path

import dagster as dg
import pandas as pd


def png_md(png: Path | bytes, alt: str = "plot") -> dg.MetadataValue:
    """A PNG shown inline in the materialization's metadata (markdown with a data: URI)."""
    data = Path(png).read_bytes() if isinstance(png, (str, Path)) else png
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode()})")


def table_md(df: pd.DataFrame, floatfmt: str = ".3g", max_rows: int = 50) -> dg.MetadataValue:
    if df.empty:
        return dg.MetadataValue.md("_none_")
    return dg.MetadataValue.md(df.head(max_rows).to_markdown(index=False, floatfmt=floatfmt))

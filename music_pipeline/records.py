"""Plain records the core returns to the assets: a value's facts, typed for display (no Dagster).

An asset adapts a record's ``metadata`` (``defs/metadata.to_metadata``): plain values stay as they
are, ``Markdown`` is shown as Markdown, ``Table`` as a Markdown table, ``Json`` as JSON, ``FilePath``
as a path and ``Plot`` as an inline PNG.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from music_pipeline.artifacts import ArtifactPath


@dataclass(frozen=True)
class Markdown:
    text: str


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    floatfmt: str = ".3g"


@dataclass(frozen=True)
class Json:
    value: object


@dataclass(frozen=True)
class FilePath:
    path: ArtifactPath | str


@dataclass(frozen=True)
class Plot:
    path: ArtifactPath
    alt: str = "plot"

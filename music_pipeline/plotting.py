"""Matplotlib without a display, saving figures atomically as PNG. Core: no Dagster."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from music_pipeline.storage import write_bytes  # noqa: E402


def save_png(fig, dest: Path, dpi: int = 100) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return write_bytes(Path(dest), buf.getvalue())

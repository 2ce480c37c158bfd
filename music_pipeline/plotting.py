"""Matplotlib without a display, saving figures atomically as PNG. Core: no Dagster."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from music_pipeline.artifacts import ArtifactPath, write_bytes


def save_png(fig, dest: ArtifactPath, dpi: int = 100) -> ArtifactPath:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return write_bytes(dest, buf.getvalue())

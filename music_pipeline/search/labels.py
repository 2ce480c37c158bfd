"""Mean cosine similarity within and between labels, without an N×N matrix.

For unit vectors, the mean cosine between labels A and B is ``s_A·s_B / (n_A·n_B)`` with ``s``
the sum of a label's vectors; within A (distinct pairs only) it is
``(|s_A|² − Σ|v|²) / (n_A·(n_A − 1))``. Unlabelled tracks are left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["label_a", "label_b", "kind", "n_a", "n_b", "mean_cosine"]


def label_similarity(vectors: np.ndarray, labels) -> pd.DataFrame:
    """Long table: one row per ordered label pair (``kind`` within/between), labels sorted."""
    labels = np.array([x if isinstance(x, str) and x else None for x in labels], dtype=object)
    names = sorted({x for x in labels if x is not None})
    sums, counts, sq = [], [], []
    for name in names:
        v = np.asarray(vectors[labels == name], dtype=np.float64)
        sums.append(v.sum(axis=0))
        counts.append(len(v))
        sq.append(float((v * v).sum()))
    rows = []
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i == j:
                n = counts[i]
                value = (sums[i] @ sums[i] - sq[i]) / (n * (n - 1)) if n > 1 else np.nan
            else:
                value = sums[i] @ sums[j] / (counts[i] * counts[j])
            rows.append((a, b, "within" if i == j else "between", counts[i], counts[j], float(value)))
    return pd.DataFrame(rows, columns=COLUMNS)


def similarity_matrix(table: pd.DataFrame) -> pd.DataFrame:
    return table.pivot(index="label_a", columns="label_b", values="mean_cosine")


def summary(table: pd.DataFrame) -> dict:
    """Mean within-label and between-label cosine (each label / label pair weighted once)."""
    within = table.loc[table["kind"] == "within", "mean_cosine"].dropna()
    between = table.loc[table["kind"] == "between", "mean_cosine"]
    w = float(within.mean()) if len(within) else None
    b = float(between.mean()) if len(between) else None
    return {
        "labels": int(table["label_a"].nunique()),
        "mean_within": w,
        "mean_between": b,
        "separation": (w - b) if w is not None and b is not None else None,
    }


def heatmap_png(table: pd.DataFrame, dest) -> None:
    from music_pipeline.plotting import plt, save_png

    m = similarity_matrix(table)
    n = len(m)
    fig, ax = plt.subplots(figsize=(2.5 + 0.6 * n, 2 + 0.5 * n))
    im = ax.imshow(m.to_numpy(), cmap="viridis")
    ax.set_xticks(range(n), m.columns, rotation=45, ha="right")
    ax.set_yticks(range(n), m.index)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                val = m.iat[i, j]
                if np.isfinite(val):
                    ax.text(
                        j,
                        i,
                        f"{val:.2f}",
                        ha="center",
                        va="center",
                        color="w" if val < np.nanmean(m.to_numpy()) else "k",
                        fontsize=8,
                    )
    fig.colorbar(im, ax=ax, label="mean cosine")
    ax.set_title("Mean cosine similarity within (diagonal) and between labels")
    save_png(fig, dest)

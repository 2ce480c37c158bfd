"""Pictures of the PDI: histogram with thresholds, subscore scatter, descriptor PCA, a piano roll
of one example track per level, a spectrogram gallery per level, and the CNN's training curves and
confusion matrix. Every function writes one PNG (atomically) and returns its path; ``pdi_figures``
draws the five of a PDI run and returns them as metadata. Core: no Dagster."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from music_pipeline.difficulty.pdi import LEVELS, NORM_COLUMNS, DifficultyModel, DifficultyRecord, explain
from music_pipeline.plotting import plt, save_png
from music_pipeline.records import FilePath, Plot

LEVEL_COLOURS = {"Easy": "#2a9d8f", "Medium": "#e9c46a", "Hard": "#e76f51"}


def pdi_histogram(scores: pd.DataFrame, model: DifficultyModel, dest: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0.0, 1.0, 41) if len(scores) > 40 else 20
    for level in model.levels:
        ax.hist(
            scores.loc[scores["level"] == level, "pdi"],
            bins=bins,
            color=LEVEL_COLOURS.get(level),
            label=level,
            alpha=0.85,
        )
    for i, t in enumerate(model.thresholds):
        ax.axvline(t, color="black", ls="--", lw=1)
        # staggered so close thresholds stay readable
        ax.annotate(
            f"t{i + 1} = {t:.3f}",
            (t, ax.get_ylim()[1]),
            xytext=(3, -12 * (i + 1)),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set(xlabel="PDI", ylabel="tracks", title=f"PDI of {len(scores)} tracks ({model.threshold_rule})")
    ax.legend()
    return save_png(fig, dest)


def subscore_scatter(scores: pd.DataFrame, dest: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 5))
    for level in LEVELS:
        part = scores[scores["level"] == level]
        ax.scatter(
            part["structural"],
            part["intensity"],
            s=22,
            color=LEVEL_COLOURS[level],
            label=f"{level} ({len(part)})",
            edgecolor="k",
            lw=0.3,
        )
    ax.set(
        xlabel="structural S (notes: the PDI)",
        ylabel="intensity I (loudness, brightness, tempo)",
        title="Subscores by level",
    )
    ax.legend()
    return save_png(fig, dest)


def descriptor_pca(scores: pd.DataFrame, dest: Path, arrows: int = 5) -> Path:
    """PCA of the normalised descriptors, tracks coloured by level, the strongest loadings drawn."""
    from sklearn.decomposition import PCA

    columns = [c for c in NORM_COLUMNS if c in scores.columns]
    X = scores[columns].to_numpy(dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7, 5.5))
    if len(X) < 3:
        ax.text(0.5, 0.5, "PCA needs at least 3 tracks", ha="center", transform=ax.transAxes)
        return save_png(fig, dest)
    pca = PCA(n_components=2, random_state=0)
    Z = pca.fit_transform(X)
    for level in LEVELS:
        mask = (scores["level"] == level).to_numpy()
        ax.scatter(Z[mask, 0], Z[mask, 1], s=22, color=LEVEL_COLOURS[level], label=level, edgecolor="k", lw=0.3)
    loadings = pca.components_.T  # (descriptors, 2)
    scale = 0.9 * np.abs(Z).max() / max(1e-9, np.abs(loadings).max())
    for i in np.argsort(-np.linalg.norm(loadings, axis=1))[:arrows]:
        dx, dy = loadings[i] * scale
        ax.arrow(0, 0, dx, dy, color="grey", width=0.002 * scale, alpha=0.7, length_includes_head=True)
        ax.annotate(columns[i].removeprefix("norm_"), (dx, dy), fontsize=7, color="dimgray")
    ev = pca.explained_variance_ratio_
    ax.set(xlabel=f"PC1 ({ev[0]:.0%})", ylabel=f"PC2 ({ev[1]:.0%})", title="Descriptors (normalised), PCA")
    ax.legend()
    return save_png(fig, dest)


def level_examples(scores: pd.DataFrame) -> pd.DataFrame:
    """Per level, the track at the level's median PDI (ties broken by key)."""
    picks = []
    for level in LEVELS:
        part = scores[scores["level"] == level].sort_values(["pdi", "key"], kind="mergesort")
        if len(part):
            picks.append(part.iloc[[(len(part) - 1) // 2]])
    return pd.concat(picks, ignore_index=True) if picks else scores.iloc[:0]


def piano_roll_examples(
    scores: pd.DataFrame,
    descriptors: pd.DataFrame,
    load_notes: Callable[[str], object],
    dest: Path,
    seconds: float = 12.0,
) -> Path:
    """One piano roll per level (its median track): the first ``seconds`` of the first transcribed
    excerpt, notes as bars (pitch ↑, time →, shade = model confidence), titled with the
    musical explanation of its level. ``load_notes(content_hash)`` returns ``NoteEvents``."""
    examples = level_examples(scores)
    values = descriptors.set_index("key")
    fig, axes = plt.subplots(len(LEVELS), 1, figsize=(10, 2.6 * len(LEVELS)), squeeze=False)
    for ax, level in zip(axes[:, 0], LEVELS, strict=True):
        row = examples[examples["level"] == level]
        if row.empty:
            ax.axis("off")
            ax.set_title(f"{level}: no track", loc="left", fontsize=9)
            continue
        r = row.iloc[0]
        notes = load_notes(r["content_hash"])
        a = float(notes.spans[0, 0]) if len(notes.spans) else 0.0
        keep = (notes.onset >= a) & (notes.onset < a + seconds)
        for on, off, p, c in zip(
            notes.onset[keep], notes.offset[keep], notes.pitch[keep], notes.confidence[keep], strict=True
        ):
            ax.broken_barh(
                [(on - a, max(off - on, 0.02))],
                (p - 0.4, 0.8),
                color=LEVEL_COLOURS[level],
                alpha=float(0.35 + 0.65 * c),
            )
        if keep.any():
            lo, hi = int(notes.pitch[keep].min()), int(notes.pitch[keep].max())
            ax.set_ylim(lo - 2, hi + 2)
        ax.set_xlim(0, seconds)
        ax.set_ylabel("MIDI pitch")
        normalised = {c.removeprefix("norm_"): r[c] for c in r.index if str(c).startswith("norm_")}
        why = explain(values.loc[r["key"]], level, normalised) if r["key"] in values.index else level
        ax.set_title(f"{Path(str(r['relpath'])).name[:50]} (PDI {r['pdi']:.3f}): {why}", loc="left", fontsize=9)
    axes[-1, 0].set_xlabel("seconds from the start of the first transcribed excerpt")
    fig.suptitle("Transcribed notes of one example track per level")
    fig.subplots_adjust(hspace=0.6)
    return save_png(fig, dest)


def gallery_examples(scores: pd.DataFrame, per_level: int = 3) -> pd.DataFrame:
    """Per level, tracks at evenly spaced PDI ranks within the level (its easiest … its hardest)."""
    picks = []
    for level in LEVELS:
        part = scores[scores["level"] == level].sort_values(["pdi", "key"], kind="mergesort")
        if part.empty:
            continue
        idx = np.unique(np.round(np.linspace(0, len(part) - 1, min(per_level, len(part)))).astype(int))
        picks.append(part.iloc[idx])
    return pd.concat(picks, ignore_index=True) if picks else scores.iloc[:0]


def spectrogram_gallery(
    scores: pd.DataFrame,
    load_segments: Callable[[str], np.ndarray],
    dest: Path,
    per_level: int = 3,
    segment: int | None = None,
) -> Path:
    """One row per level, ``per_level`` tracks each, showing one stored log-mel segment (the middle
    one by default). ``load_segments(content_hash)`` returns the (n, 128, 128) segments."""
    examples = gallery_examples(scores, per_level)
    fig, axes = plt.subplots(len(LEVELS), per_level, figsize=(3.1 * per_level, 2.9 * len(LEVELS)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, level in enumerate(LEVELS):
        rows = examples[examples["level"] == level]
        axes[r, 0].set_title(level, loc="left", fontsize=11, fontweight="bold")
        for c, row in enumerate(rows.itertuples()):
            segs = load_segments(row.content_hash)
            k = len(segs) // 2 if segment is None else segment
            ax = axes[r, c]
            ax.imshow(segs[k].astype(np.float32), origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"{level}: {Path(row.relpath).name[:28]}\nPDI {row.pdi:.3f}", fontsize=8)
    fig.suptitle("Log-mel segments per level (mel bin ↑, frame →)")
    return save_png(fig, dest)


def training_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], dest: Path) -> Path:
    """Loss and accuracy per epoch for each run (one per fold + the final fit)."""
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.get_cmap("tab10")
    for i, (name, h) in enumerate(histories.items()):
        col = colours(i % 10)
        for key, ax, style in (
            ("loss", ax_l, "-"),
            ("val_loss", ax_l, "--"),
            ("accuracy", ax_a, "-"),
            ("val_accuracy", ax_a, "--"),
        ):
            if h.get(key):
                ax.plot(range(1, len(h[key]) + 1), h[key], style, color=col, label=f"{name} {key}", lw=1.2)
    ax_l.set(xlabel="epoch", ylabel="cross-entropy", title="Loss (solid: train, dashed: validation)")
    ax_a.set(xlabel="epoch", ylabel="segment accuracy", title="Accuracy", ylim=(0, 1))
    ax_a.legend(fontsize=6, ncol=2)
    return save_png(fig, dest)


def confusion_plot(
    matrix: Sequence[Sequence[int]], dest: Path, labels: Sequence[str] = LEVELS, title: str = "Track-level confusion"
) -> Path:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return save_png(fig, dest)


def pdi_figures(
    record: DifficultyRecord, pdir: Path, load_segments: Callable[[str], np.ndarray], per_level: int = 3
) -> dict:
    """The PDI run's figures under ``pdir`` (histogram, subscores, descriptor PCA, piano rolls, the
    spectrogram gallery) as metadata (``music_pipeline.records`` values)."""
    scores, notes = record.scores, record.notes
    hist = pdi_histogram(scores, record.model, pdir / "pdi_histogram.png")
    scatter = subscore_scatter(scores, pdir / "subscores.png")
    pca = descriptor_pca(scores, pdir / "descriptor_pca.png")
    examples = piano_roll_examples(scores, record.descriptors, lambda h: notes.load(h).notes, pdir / "piano_rolls.png")
    gallery = spectrogram_gallery(scores, load_segments, pdir / "gallery.png", per_level)
    return {
        "piano_rolls": Plot(examples, "piano roll of one example track per level"),
        "piano_roll_path": FilePath(examples),
        "pdi_histogram": Plot(hist, "PDI histogram"),
        "structural_vs_intensity": Plot(scatter, "subscores"),
        "descriptor_pca": Plot(pca, "PCA"),
        "gallery": Plot(gallery, "spectrograms per level"),
        "gallery_path": FilePath(gallery),
    }

"""The genre model's figures: the confusion matrix of the estimate and the SHAP plots (global bar,
beeswarm, dependence of the top component, one track's waterfall). Each function writes one PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from music_pipeline.genre.explain import ShapResult
from music_pipeline.plotting import plt, save_png


def plot_global_bar(res: ShapResult, dest: Path, max_display: int = 12) -> Path:
    imp = np.abs(res.values).mean(axis=0)  # (components, classes)
    order = np.argsort(-imp.sum(axis=1))[:max_display][::-1]
    labels = res.labels()
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(order) + 1.5))
    left = np.zeros(len(order))
    for c, name in enumerate(res.classes):
        ax.barh(np.arange(len(order)), imp[order, c], left=left, label=name)
        left += imp[order, c]
    ax.set_yticks(np.arange(len(order)), [labels[k] for k in order], fontsize=8)
    ax.set_xlabel("mean |SHAP value| (log-odds), stacked by class")
    ax.set_title("Which PCA components drive the genre model")
    ax.legend(fontsize=7, loc="lower right")
    return save_png(fig, dest)


def _explanation_for_predicted(res: ShapResult, proba: np.ndarray):
    import shap

    pred = proba.argmax(axis=1)
    vals = res.values[np.arange(len(pred)), :, pred]
    return shap.Explanation(values=vals, base_values=res.base[pred], data=res.data, feature_names=res.labels(40))


def plot_beeswarm(res: ShapResult, proba: np.ndarray, dest: Path, max_display: int = 12) -> Path:
    import shap

    shap.plots.beeswarm(_explanation_for_predicted(res, proba), max_display=max_display, show=False)
    fig = plt.gcf()
    fig.suptitle("SHAP values toward each track's predicted genre (colour: component value)", fontsize=9)
    return save_png(fig, dest)


def plot_dependence(res: ShapResult, dest: Path) -> tuple[Path, str]:
    """Dependence plot of the most important component, for the class it moves most."""
    imp = np.abs(res.values).mean(axis=0)
    k = int(imp.sum(axis=1).argmax())
    c = int(imp[k].argmax())
    fig, ax = plt.subplots(figsize=(6, 4))
    sc = ax.scatter(res.data[:, k], res.values[:, k, c], c=res.values[:, :, c].sum(axis=1), cmap="coolwarm", s=18)
    fig.colorbar(sc, ax=ax, label=f"total SHAP toward {res.classes[c]}")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(f"{res.component_names[k]} value — {res.component_text[k]}", fontsize=8)
    ax.set_ylabel(f"SHAP toward {res.classes[c]}")
    ax.set_title(f"Dependence: {res.component_names[k]} → {res.classes[c]}", fontsize=9)
    return save_png(fig, dest), res.component_names[k]


def plot_waterfall(res: ShapResult, i: int, dest: Path, class_index: int | None = None, title: str = "") -> Path:
    import shap

    c = int(class_index if class_index is not None else (res.base + res.values[i].sum(axis=0)).argmax())
    exp = shap.Explanation(
        values=res.values[i, :, c], base_values=res.base[c], data=res.data[i], feature_names=res.labels(40)
    )
    shap.plots.waterfall(exp, max_display=10, show=False)
    fig = plt.gcf()
    fig.suptitle(title or f"Why toward {res.classes[c]} (log-odds)", fontsize=9)
    return save_png(fig, dest)


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], dest: Path, title: str) -> Path:
    cm = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(classes), 0.8 + 0.55 * len(classes)))
    ax.imshow(cm, cmap="Blues")
    for (r, c), v in np.ndenumerate(cm):
        ax.text(c, r, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black", fontsize=8)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return save_png(fig, dest)

"""The training report: the CV report (``cv_report.json``), the model card (``card.json``), the
Markdown report and its plots.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from music_pipeline.artifacts import ArtifactPath
from music_pipeline.genre.cv import Evaluation, headline
from music_pipeline.genre.versions import MODEL_NAME


def candidate_json(r) -> dict:
    c = r.candidate
    return {
        "name": c.name,
        "kind": c.kind,
        "family": c.family,
        "features": c.features,
        "grouped": headline(r.grouped),
        "shuffled": headline(r.shuffled),
        "seconds": round(r.seconds, 2),
    }


def build_report(data, ev: Evaluation, deployed_name: str, seconds: float) -> dict:
    """Everything the CV measured, as JSON (``cv_report.json``)."""
    est = ev.estimate
    return {
        "classes": data.classes,
        "n_labelled": data.n,
        "n_over_budget": data.n_over_budget,
        "n_unlabelled": data.n_unlabelled,
        "n_with_group": data.n_with_group,
        "n_groups": len(set(data.groups)),
        "fold_note": ev.plan.note,
        "fold_method": ev.plan.method,
        "n_splits": ev.plan.n_splits,
        "cv_possible": ev.plan.possible,
        "candidates": [candidate_json(r) for r in ev.results],
        "skipped_candidates": ev.skipped,
        "selected": ev.selected.name if ev.selected else None,
        "deployed": deployed_name,
        "feature_view": ev.selected.features if ev.selected else None,
        "estimate_kind": est.method,
        "estimate": {
            **headline(ev.nested),
            "balanced_accuracy": est.balanced_accuracy,
            "ci95": list(est.ci95) if est.ci95 else None,
            "uncorrected": est.uncorrected,
        }
        if est.balanced_accuracy is not None
        else {},
        "estimate_per_group": est.per_group,
        "nested_choices": ev.nested_choices,
        "per_class": (ev.nested or {}).get("per_class"),
        "confusion": (ev.nested or {}).get("confusion"),
        "baseline_grouped": headline(ev.baseline_grouped),
        "baseline_shuffled": headline(ev.baseline_shuffled),
        "selected_shuffled": headline(ev.result(ev.selected).shuffled) if ev.results else {},
        "selected_grouped_flat": headline(ev.result(ev.selected).grouped) if ev.results else {},
        "seconds": round(seconds, 1),
    }


def model_card(report: dict, version: str, trained_at: float) -> dict:
    """The card ``music-pipeline models`` shows (``card.json`` in the version folder)."""
    est = report.get("estimate") or {}
    return {
        "name": MODEL_NAME,
        "version": version,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(trained_at)),
        "model": report["deployed"],
        "feature_view": report.get("feature_view"),
        "training_size": report["n_labelled"],
        "labelled_left_out_by_budget": report.get("n_over_budget", 0),
        "groups": report.get("n_groups"),
        "labels": report["classes"],
        "estimate": {
            "balanced_accuracy": est.get("balanced_accuracy"),
            "ci95": est.get("ci95"),
            "method": report["estimate_kind"],
            "before_learning_curve_step": est.get("uncorrected"),
            "what": "balanced accuracy expected on tracks from sources (groups) the model has not seen",
        },
        "baseline": {
            "balanced_accuracy": 1 / len(report["classes"]),
            "method": "one label for every track (balanced accuracy 1/labels); the majority label of each training fold "
            f"scored {(report.get('baseline_grouped') or {}).get('balanced_accuracy', float('nan')):.3f} on the same folds",
        },
        "note": report["fold_note"],
    }


def _fmt(m: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in m.items() if isinstance(v, float)) if m else "n/a"


def report_markdown(
    report: dict, cand_table: pd.DataFrame, boundary: pd.DataFrame, explanations: list[tuple[str, str]]
) -> str:
    est = report.get("estimate") or {}
    ci = est.get("ci95")
    lines = [
        "# Genre classifier",
        "",
        f"- deployed: **{report['deployed']}** (view: {report.get('feature_view')}), the best candidate on the grouped folds",
        f"- tracks: {report['n_labelled']} labelled ({report['n_with_group']} with a group, {report.get('n_groups')} groups), "
        f"{report['n_unlabelled']} unlabelled (predicted, not trained on)"
        + (
            f"; {report['n_over_budget']} more labelled tracks left out by the training budget (a seeded subsample, each label's share kept)"
            if report.get("n_over_budget")
            else ""
        ),
        f"- folds: {report['fold_note']}",
        f"- **estimate** ({report['estimate_kind']}): balanced accuracy {est.get('balanced_accuracy', float('nan')):.3f}"
        + (f", 95 % CI {ci[0]:.3f}–{ci[1]:.3f} (bootstrap over groups)" if ci else "")
        + (f"; before the learning-curve step {est['uncorrected']:.3f}" if est.get("uncorrected") is not None else ""),
        (
            f"- chance (one label for every track): balanced accuracy {1 / len(report['classes']):.3f}; majority label of each training fold "
            f"(grouped): {_fmt(report['baseline_grouped'])} (below chance when holding a source out changes the training majority)"
        ),
        f"- deployed candidate, flat grouped CV (optimistic: it was chosen on these folds): {_fmt(report['selected_grouped_flat'])}; shuffled CV: {_fmt(report['selected_shuffled'])}",
        f"- choice per outer fold: {', '.join(report['nested_choices']) or 'not run'}",
    ]
    if report.get("skipped_candidates"):
        lines.append(f"- not scored (inputs missing): {'; '.join(report['skipped_candidates'])}")
    lines += [
        "",
        "## Candidates (same folds)",
        "",
        cand_table.to_markdown(index=False, floatfmt=".3f") if len(cand_table) else "_none_",
        "",
    ]
    if report.get("estimate_per_group") and report.get("n_with_group"):
        per = pd.DataFrame(
            sorted(report["estimate_per_group"].items()), columns=["group", "accuracy (nested, held out)"]
        )
        lines += ["## Held-out accuracy per group", "", per.to_markdown(index=False, floatfmt=".2f"), ""]
    lines += [
        "## Boundary songs",
        "",
        boundary.to_markdown(index=False, floatfmt=".2f") if len(boundary) else "_none_",
        "",
        "## Explanations",
        "",
    ]
    lines += [f"- `{path}`: {text}" for path, text in explanations]
    return "\n".join(lines) + "\n"


def write_plots(result, plots_dir: ArtifactPath, waterfall_track: str = "") -> dict[str, ArtifactPath]:
    """Confusion matrix of the estimate and, when the deployed model has exact SHAP values,
    the global bar, beeswarm, top dependence and one waterfall plot. Returns {name: path}."""
    # genre.plots imports matplotlib at its top level: only a training run draws
    from music_pipeline.genre import plots

    out = {}
    ev, preds = result.ev, result.predictions
    if ev.nested:
        out["confusion_matrix"] = plots.plot_confusion(
            ev.nested["confusion"],
            result.data.classes,
            plots_dir / "confusion_grouped_cv.png",
            f"{ev.estimate.method.split(' (')[0]}: {result.deployed.candidate.name}",
        )
    res = result.shap
    if res is None:
        return out
    rows = result.shap_rows
    proba = preds[[f"p_{c}" for c in result.deployed.classes]].to_numpy()[rows]
    out["shap_bar"] = plots.plot_global_bar(res, plots_dir / "shap_bar.png")
    out["shap_beeswarm"] = plots.plot_beeswarm(res, proba, plots_dir / "shap_beeswarm.png")
    out["shap_dependence"], out["dependence_component"] = plots.plot_dependence(
        res, plots_dir / "shap_dependence_top.png"
    )
    local = 0
    if waterfall_track:
        hits = np.flatnonzero(
            (preds["key"].iloc[rows] == waterfall_track).to_numpy()
            | preds["relpath"].iloc[rows].str.contains(waterfall_track, regex=False).to_numpy()
        )
        local = int(hits[0]) if len(hits) else 0
    elif len(result.boundary):
        first = int(result.boundary["row"].iloc[0])
        local = int(np.flatnonzero(rows == first)[0]) if first in rows else 0
    r = int(rows[local])
    out["shap_waterfall"] = plots.plot_waterfall(
        res,
        local,
        plots_dir / "shap_waterfall.png",
        title=f"{preds['relpath'].iloc[r]}: toward {preds['predicted'].iloc[r]} (log-odds)",
    )
    return out

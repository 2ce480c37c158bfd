"""models: a card for every trained model (what, when, on what, how good, measured how)."""

from __future__ import annotations

import json

from music_pipeline.settings import Settings


def register(sub, parent) -> None:
    p = sub.add_parser(
        "models",
        parents=[parent],
        help="model cards: version, training data, estimate with its CI and how it was measured",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON object: {"models": [{name, version, trained_at, training_size, feature_view, estimate: {…, ci95, method}, …}]}',
    )
    p.set_defaults(handler=cmd_models)


def _estimate_text(est: dict) -> str:
    metric = next((k for k in est if k not in ("ci95", "method", "what")), None)
    value = est.get(metric) if metric else None
    if value is None:
        return est.get("method", "no estimate")
    ci = est.get("ci95")
    ci_text = f" (95 % CI {ci[0]:.2f}–{ci[1]:.2f})" if ci else ""
    return f"{metric.replace('_', ' ')} {value:.3f}{ci_text} — {est.get('method', '')}"


def cmd_models(args) -> int:
    # the cards read the genre version store, which imports scikit-learn and librosa: `--help` stays fast
    from music_pipeline.models.cards import collect_cards

    cards = collect_cards(Settings.resolve(args.data).data_dir)
    if args.json:
        print(json.dumps({"models": cards}))
        return 0
    for c in cards:
        if not c.get("built"):
            print(f"{c['name']}: not built ({c.get('reason')})")
            continue
        print(f"{c['name']}  version {c.get('version')}  trained {c.get('trained_at') or '-'}")
        print(f"  model: {c.get('model')}; inputs: {c.get('feature_view')}; training size: {c.get('training_size')}")
        if c.get("role"):
            print(f"  role: {c['role']}")
        print(f"  estimate: {_estimate_text(c.get('estimate') or {})}")
        if c.get("baseline"):
            b = c["baseline"]
            metric = next((k for k in b if k != "method"), None)
            if metric and b.get(metric) is not None:
                print(f"  baseline: {metric.replace('_', ' ')} {b[metric]:.3f} ({b.get('method')})")
    return 0

"""classify: genre probabilities of audio files with the saved model (no retraining)."""

from __future__ import annotations

import json
import sys

from music_pipeline.settings import Settings


def register(sub, parent) -> None:
    p = sub.add_parser("classify", parents=[parent], help="genre probabilities of audio files with the saved genre model")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per file: {file, label, probabilities: {label: p}}")
    p.add_argument("--explain", action="store_true", help="add a plain-language SHAP explanation of the prediction")
    p.set_defaults(handler=cmd_classify)


def _load(settings: Settings):
    """(deployed model, explainer model or None, version dir) or raises ModelFileError."""
    from music_pipeline.models.genre import GenreModel, ModelFileError, current_version
    from music_pipeline.storage import DataLayout

    root = DataLayout(settings.data_dir).models_dir / "genre"
    vdir = current_version(root)
    if vdir is None or not vdir.is_dir():
        raise ModelFileError(
            f"no genre model saved yet under {root}; train one with `music-pipeline build --data {settings.data_dir}` "
            "(asset genre_classifier; the library needs at least 2 labels)"
        )
    deployed = GenreModel.load(vdir / "deployed")
    explainer = GenreModel.load(vdir / "explainer") if (vdir / "explainer").is_dir() else None
    return deployed, explainer, vdir


def _stale_warning(settings: Settings) -> str | None:
    from music_pipeline.storage import DataLayout, read_json

    p = DataLayout(settings.data_dir).models_dir / "genre" / "status.json"
    try:
        st = read_json(p)
    except Exception:
        return None
    return None if st.get("trained") else f"the last genre_classifier run trained nothing ({st.get('reason')}); using the previous model"


def cmd_classify(args) -> int:
    from music_pipeline.commands.per_file import PerFile
    from music_pipeline.models.genre import ModelFileError

    settings = Settings.resolve(args.data)
    try:
        deployed, explainer, vdir = _load(settings)
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if warning := _stale_warning(settings):
        print(f"warning: {warning}", file=sys.stderr)
    if args.explain:
        from music_pipeline.models import explain as ex

    loop = PerFile(args.json)
    for f, feats in loop.features(args.files):
        x = feats.embedding[None, :]
        proba = deployed.predict_proba(x)[0]
        probs = {c: float(p) for c, p in sorted(zip(deployed.classes, proba), key=lambda t: -t[1])}
        label = next(iter(probs))
        out = {"file": f, "label": label, "probabilities": probs}
        if args.explain and not (explainer or deployed).is_xgb:
            out["explanation"] = {"model": None, "text": "no XGBoost explainer saved with this model: rebuild genre_classifier", "components": []}
        elif args.explain:
            model = explainer or deployed
            shap_res = ex.tree_shap(model, x)
            e = ex.explain_track(model, shap_res, 0, model.predict_proba(x)[0])
            if model is not deployed and model.candidate != deployed.candidate:
                e["text"] = f"[explained with {model.candidate.name}; the deployed {deployed.candidate.name} says {label}] " + e["text"]
            out["explanation"] = {"model": model.candidate.name, "text": e["text"], "components": e["components"]}
        if args.json:
            print(json.dumps(out))
        else:
            rest = ", ".join(f"{c} {p:.2f}" for c, p in list(probs.items())[1:4])
            print(f"{f}: {label} ({probs[label]:.2f}; {rest})")
            if args.explain:
                print(f"  {out['explanation']['text']}")
    return loop.exit_code

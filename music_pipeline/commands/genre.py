"""classify: genre probabilities of audio files with the saved model (no retraining)."""

from __future__ import annotations

import json
import sys

from music_pipeline.artifacts import read_json
from music_pipeline.audio.decode import AudioError
from music_pipeline.commands.per_file import PerFile
from music_pipeline.layout import DataLayout
from music_pipeline.pretrained import WeightsUnavailable
from music_pipeline.settings import Settings


def register(sub, parent) -> None:
    p = sub.add_parser(
        "classify", parents=[parent], help="genre probabilities of audio files with the saved genre model"
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per file: {file, label, probabilities: {label: p}, model, feature_view, tags: {tag: score}}",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="add why the deployed model predicts this label, and what the pretrained tagger hears",
    )
    p.set_defaults(handler=cmd_classify)


def _stale_warning(settings: Settings) -> str | None:
    p = DataLayout(settings.data_dir).genre_status_path
    try:
        st = read_json(p)
    except Exception:  # noqa: BLE001 - a missing or unreadable status file only means no warning
        return None
    return (
        None
        if st.get("trained")
        else f"the last genre_classifier run trained nothing ({st.get('reason')}); using the previous model"
    )


def cmd_classify(args) -> int:
    # the genre modules import scikit-learn and librosa at their top level: `--help` stays fast
    from music_pipeline.genre.persistence import ModelFileError
    from music_pipeline.genre.serving import GenreService

    settings = Settings.resolve(args.data)
    try:
        service = GenreService.open(settings.data_dir)
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if warning := _stale_warning(settings):
        print(f"warning: {warning}", file=sys.stderr)
    loop = PerFile(args.json)
    for f in args.files:
        try:
            out = service.classify_file(f, explain=args.explain)
        except AudioError as exc:
            loop.fail(f, exc)
            continue
        except WeightsUnavailable as exc:  # the deployed model reads the learned embedding: nothing to fall back on
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(out))
            continue
        probs = out["probabilities"]
        rest = ", ".join(f"{c} {p:.2f}" for c, p in list(probs.items())[1:4])
        print(f"{f}: {out['label']} ({probs[out['label']]:.2f}; {rest})")
        if out.get("tags"):
            print("  tags: " + ", ".join(f"{t} {v:.2f}" for t, v in list(out["tags"].items())[:5]))
        if args.explain:
            print(f"  {out['explanation']['text']}")
        if out.get("note"):
            print(f"  note: {out['note']}")
    return loop.exit_code

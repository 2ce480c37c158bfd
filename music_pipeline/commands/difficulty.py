"""difficulty: score audio files with the library's saved PDI model (no refit, nothing written)."""

from __future__ import annotations

import json
import sys

from music_pipeline.settings import Settings


def register(sub, parent) -> None:
    p = sub.add_parser(
        "difficulty",
        parents=[parent],
        help="Perceptual Difficulty Index of audio files, on the library's saved scale",
        description="Scores each file with the normaliser and thresholds saved by the last library build "
        "(<data>/models/difficulty/); the library's own scores are not touched.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per file: {file, pdi, level, structural, intensity, pushing, ...}")
    p.add_argument("--top", type=int, default=3, metavar="N", help="how many pushing descriptors to show (default 3)")
    p.set_defaults(handler=cmd_difficulty)


def cmd_difficulty(args) -> int:
    from music_pipeline.commands.per_file import PerFile
    from music_pipeline.models.pdi import DifficultyModel, LibraryNotScored, model_dir
    from music_pipeline.storage import DataLayout

    settings = Settings.resolve(args.data)
    try:
        model = DifficultyModel.load(model_dir(DataLayout(settings.data_dir)))
    except LibraryNotScored as exc:
        print(f"error: {exc} (data directory {settings.data_dir})", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    loop = PerFile(args.json)
    for f, feats in loop.features(args.files):
        try:
            result = model.score(feats.descriptors, top=args.top)
        except ValueError as exc:
            loop.fail(f, exc)
            continue
        if args.json:
            print(json.dumps({"file": f, "duration_s": feats.duration_s, **result.to_dict()}))
            continue
        print(f"# {f} ({feats.duration_s:.1f} s)")
        print(f"PDI {result.pdi:.3f}  level {result.level}  (thresholds {', '.join(f'{t:.3f}' for t in model.thresholds)})")
        print(f"structural complexity {result.structural:.3f}  performance intensity {result.intensity:.3f}")
        print("pushed most by (normalised value vs library median):")
        for p in result.pushing:
            direction = "harder" if p["vs_median"] > 0 else "easier"
            print(f"  {p['descriptor']:<24} {p['value']:>10.4g}  norm {p['normalised']:.2f} ({p['vs_median']:+.2f}, {direction})")
        if result.out_of_range:
            print(f"outside the library's range (clipped to 0–1): {', '.join(result.out_of_range)}")
    return loop.exit_code

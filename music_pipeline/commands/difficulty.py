"""difficulty: score audio files with the library's saved PDI model (no refit), say why in notes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from music_pipeline.audio.decode import AudioError, decode
from music_pipeline.commands.args import positive_int
from music_pipeline.commands.per_file import PerFile
from music_pipeline.layout import DataLayout
from music_pipeline.notes.events import write_midi
from music_pipeline.notes.store import notes_of_signal
from music_pipeline.settings import Settings


def register(sub, parent) -> None:
    p = sub.add_parser(
        "difficulty",
        parents=[parent],
        help="Perceptual Difficulty Index of audio files from their notes, on the library's saved scale",
        description="Transcribes each file's notes and scores them with the scale, weights and thresholds "
        "saved by the last library build (<data>/models/difficulty/); the library's own scores are not "
        "touched. Prints why in musical terms (notes per second, chord size, range).",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per file: {file, pdi, level, structural, intensity, notes: {…}, explanation, …}",
    )
    p.add_argument(
        "--top", type=positive_int, default=3, metavar="N", help="how many pushing descriptors to show (default 3)"
    )
    p.add_argument(
        "--notes",
        metavar="OUT",
        default=None,
        help="write the transcription as MIDI: OUT.mid for one file; for several files OUT is a folder that gets <name>.mid each",
    )
    p.set_defaults(handler=cmd_difficulty)


def _midi_destination(out: str, file: str, several: bool) -> Path:
    return Path(out) / f"{Path(file).stem}.mid" if several else Path(out)


def cmd_difficulty(args) -> int:
    # the PDI, the feature pass and the transcriber import librosa / SciPy at their top level: `--help` stays fast
    from music_pipeline.difficulty.pdi import DifficultyModel, LibraryNotScored, explain
    from music_pipeline.features.extract import features_from_signal
    from music_pipeline.notes.transcribe import Transcriber

    settings = Settings.resolve(args.data)
    try:
        model = DifficultyModel.load(DataLayout(settings.data_dir).difficulty_dir)
    except LibraryNotScored as exc:
        print(f"error: {exc} (data directory {settings.data_dir})", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    transcriber = Transcriber(data_dir=settings.data_dir)  # one process: every core (default_threads)
    several = len(args.files) > 1
    loop = PerFile(args.json)
    for f in args.files:
        try:
            audio = decode(f)
            feats = features_from_signal(audio.y, audio.sr)
            notes = notes_of_signal(audio.y, audio.sr, transcriber)
            result = model.score({**feats.descriptors, **notes.descriptors}, top=args.top)
        except AudioError as exc:
            loop.fail(f, exc)
            continue
        except ValueError as exc:
            loop.fail(f, AudioError(f, str(exc)))
            continue
        why = explain(notes.descriptors, result.level, result.normalised, notes.heard)
        midi = None
        if args.notes:
            midi = write_midi(notes.notes, _midi_destination(args.notes, f, several))
        if args.json:
            stats = {**notes.descriptors, "n_notes": len(notes.notes), "seconds_transcribed": notes.notes.covered_s}
            out = {
                "file": f,
                "duration_s": feats.duration_s,
                **result.to_dict(),
                "notes": stats,
                "heard": notes.heard.to_dict(),
                "explanation": why,
            }
            if midi:
                out["notes_midi"] = str(midi)
            print(json.dumps(out))
            continue
        print(f"# {f} ({feats.duration_s:.1f} s; notes of {notes.notes.covered_s:.0f} s heard)")
        print(why)
        print(
            f"PDI {result.pdi:.3f}  level {result.level}  (thresholds {', '.join(f'{t:.3f}' for t in model.thresholds)})"
        )
        print("families: " + "  ".join(f"{k} {v:.2f}" for k, v in result.families.items()))
        print(
            f"intensity {result.intensity:.3f} (loudness, brightness, tempo: shown, not in the PDI)"
            if model.intensity_weight == 0
            else f"intensity {result.intensity:.3f} (weight {model.intensity_weight:g} in the PDI)"
        )
        print("pushed most by (vs the library median):")
        for p in result.pushing:
            direction = "harder" if p["vs_median"] > 0 else "easier"
            print(
                f"  {p['descriptor']:<20} {p['value']:>8.3g}  norm {p['normalised']:.2f} ({p['vs_median']:+.2f}, {direction})"
            )
        if result.out_of_range:
            print(f"outside the library's range (saturated at 0 or 1): {', '.join(result.out_of_range)}")
        if midi:
            print(f"transcription written to {midi}")
    return loop.exit_code

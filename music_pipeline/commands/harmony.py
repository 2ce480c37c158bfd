"""key, order: the key of tracks and files; a playlist ordered for smooth (harmonic) transitions."""

from __future__ import annotations

import itertools
import json
import sys

from music_pipeline.commands.per_file import PerFile
from music_pipeline.harmony.mix import order_for_mixing, path_cost, transition, transition_cost
from music_pipeline.playlists.formats import m3u8, read_m3u
from music_pipeline.settings import Settings


def register(sub, parent) -> None:
    p = sub.add_parser(
        "key", parents=[parent], help="the key (tonic + mode), Camelot code and confidence of files or library tracks"
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="audio files (none: every track of the library)")
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON line each: {"file"|"track", "key": "A minor", "camelot": "8A", "confidence"}',
    )
    p.set_defaults(handler=cmd_key)

    p = sub.add_parser(
        "order", parents=[parent], help="a playlist (M3U8 or audio files) ordered for smooth, harmonic transitions"
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="an .m3u/.m3u8 playlist, or audio files")
    p.add_argument("--out", metavar="FILE.m3u8", default=None, help="write the ordered playlist here")
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON object: {"tracks": [{file, key, camelot, tempo_bpm}], "transitions": [{key_relation, '
        'tempo_change_pct, energy_change_db, mixes_well}], "cost", "cost_before"}',
    )
    p.set_defaults(handler=cmd_order)


def cmd_key(args) -> int:
    from music_pipeline.audio.decode import AudioError
    from music_pipeline.harmony.library import KeysNotBuilt, file_key, library_keys

    if not args.files:
        try:
            table = library_keys(Settings.resolve(args.data).data_dir)
        except KeysNotBuilt as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for row in table.itertuples():
            if args.json:
                conf = None if row.music_key is None else round(float(row.key_confidence), 3)
                print(json.dumps({"track": row.key, "key": row.music_key, "camelot": row.camelot, "confidence": conf}))
            else:
                print(f"{row.music_key or '-':<10} {row.camelot or '-':>4}  {row.key_confidence:4.2f}  {row.relpath}")
        return 0
    run = PerFile(args.json)
    for f in args.files:
        try:
            k = file_key(f)
        except AudioError as exc:
            run.fail(f, exc)
            continue
        if args.json:
            print(json.dumps({"file": f, **k.as_dict()}))
        else:
            print(f"{k.name:<10} {k.camelot:>4}  {k.confidence:4.2f}  {f}")
    return run.exit_code


def cmd_order(args) -> int:
    from music_pipeline.harmony.library import mix_tracks

    files = []
    for f in args.files:
        if f.lower().endswith((".m3u", ".m3u8")):
            try:
                files += read_m3u(f)
            except (OSError, ValueError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
        else:
            files.append(f)
    settings = Settings.resolve(args.data)
    tracks, failed = mix_tracks([str(f) for f in files], settings.data_dir)
    for _f, reason in failed:
        print(f"error: {reason}", file=sys.stderr)
    if not tracks:
        return 1
    order = order_for_mixing(tracks)
    import numpy as np

    cost = np.array([[transition_cost(a, b) for b in tracks] for a in tracks])
    steps = [transition(tracks[a], tracks[b]) for a, b in itertools.pairwise(order)]
    out = [tracks[i] for i in order]
    answer = {
        "tracks": [
            {"file": t.name, "key": t.key_name, "camelot": t.camelot, "tempo_bpm": round(t.tempo_bpm, 1)} for t in out
        ],
        "transitions": steps,
        "cost": round(path_cost(cost, order), 3),
        "cost_before": round(path_cost(cost, list(range(len(tracks)))), 3),
        "left_out": [{"file": f, "reason": r} for f, r in failed],
    }
    if args.out:
        from pathlib import Path

        from music_pipeline.artifacts import write_text

        write_text(
            args.out,
            m3u8(
                "ordered for mixing", [{"path": str(Path(t.name).resolve()), "title": Path(t.name).stem} for t in out]
            ),
        )
    if args.json:
        print(json.dumps(answer))
        return 1 if failed else 0
    print(f"{len(out)} tracks, transition cost {answer['cost']} (in the given order {answer['cost_before']})")
    for i, t in enumerate(out):
        if i:
            s = steps[i - 1]
            flag = "ok   " if s["mixes_well"] else "rough"
            print(
                f"      {flag} key {s['key_relation'] or '?'}, tempo {s['tempo_change_pct']:+.1f} %"
                + (" (half/double)" if s["half_double"] else "")
                + f", energy {s['energy_change_db']:+.1f} dB"
            )
        print(f"{i + 1:4d}. {t.key_name or '?':<10} {t.camelot or '-':>4} {t.tempo_bpm:6.1f} BPM  {t.name}")
    return 1 if failed else 0

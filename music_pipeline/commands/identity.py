"""identify: which library track a clip comes from, and where in it; duplicates: the recordings
the library holds more than once."""

from __future__ import annotations

import json
import sys

from music_pipeline.commands.per_file import PerFile
from music_pipeline.settings import Settings


def register(sub, parent) -> None:
    p = sub.add_parser(
        "identify",
        parents=[parent],
        help="the library track each clip (≥ 5 s, any format) comes from and where in it, or that it is not in the library",
    )
    p.add_argument("files", nargs="+", metavar="CLIP", help="audio clips")
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON line per clip: {"file", "match": {"track", "path", "offset_s", "confidence"} | null}',
    )
    p.set_defaults(handler=cmd_identify)

    p = sub.add_parser(
        "duplicates",
        parents=[parent],
        help="groups of tracks holding the same recording (identical bytes, another encoding, level, trim, …)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON object: {"groups": [{"kind", "tracks": [{"track", "path"}]}]}',
    )
    p.set_defaults(handler=cmd_duplicates)


def cmd_identify(args) -> int:
    from music_pipeline.audio.decode import AudioError
    from music_pipeline.identity.library import IndexNotBuilt, identify_file, load_index

    try:
        lib = load_index(Settings.resolve(args.data).data_dir)
    except IndexNotBuilt as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run = PerFile(args.json)
    for f in args.files:
        try:
            answer = identify_file(f, lib)
        except AudioError as exc:
            run.fail(f, exc)
            continue
        if args.json:
            print(json.dumps(answer))
        elif (m := answer["match"]) is None:
            print(f"not in the library  {f}")
        else:
            print(f"{m['path']} at {m['offset_s']:.1f} s (confidence {m['confidence']:.2f})  {f}")
    return run.exit_code


def cmd_duplicates(args) -> int:
    from music_pipeline.identity.duplicates import library_duplicates
    from music_pipeline.identity.library import IndexNotBuilt

    data_dir = Settings.resolve(args.data).data_dir
    try:
        groups = library_duplicates(data_dir)  # the build's table, or computed when it is stale
    except IndexNotBuilt as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"groups": groups}))
        return 0
    for g in groups:
        print(f"{g['kind']}:")
        for t in g["tracks"]:
            print(f"  {t['path']}")
    if not groups:
        print("no track is stored more than once")
    return 0

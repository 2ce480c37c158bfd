"""identify: which library track a clip comes from, and where in it; duplicates: the recordings
the library holds more than once; versions: other performances of the same composition."""

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

    p = sub.add_parser(
        "versions",
        parents=[parent],
        help="other performances of the same composition (another instrument, tempo or key), ranked by a score",
    )
    p.add_argument(
        "queries",
        nargs="+",
        metavar="TRACK|FILE",
        help="a track key, a path inside the library, or an audio file (analysed on the fly)",
    )
    p.add_argument("-n", type=int, default=10, help="results per query (default 10)")
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON line per query: {"query", "results": [{"track", "path", "score"}]}',
    )
    p.set_defaults(handler=cmd_versions)


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


def cmd_versions(args) -> int:
    from music_pipeline.identity.versions import QueryError, VersionsNotBuilt, find_versions, load_library

    try:
        lib = load_library(Settings.resolve(args.data).data_dir)
    except VersionsNotBuilt as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run = PerFile(args.json)
    for q in args.queries:
        try:
            answer = find_versions(q, lib, max(1, args.n))
        except QueryError as exc:
            run.fail(q, exc)
            continue
        if args.json:
            print(json.dumps(answer))
            continue
        print(f"{q}:")
        for r in answer["results"]:
            print(f"  {r['score']:6.2f}  {r['path']}")
        if not answer["results"]:
            print("  no other track to compare with")
    return run.exit_code

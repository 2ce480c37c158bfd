"""history, recommend: the listening history and the recommendations made from it."""

from __future__ import annotations

import json
import sys

from music_pipeline.commands.args import positive_int
from music_pipeline.settings import Settings


def register(sub, parent) -> None:
    p = sub.add_parser("history", parents=[parent], help="the listening history: import exports, show counts")
    hsub = p.add_subparsers(dest="history_command", metavar="ACTION", required=True)
    imp = hsub.add_parser(
        "import",
        parents=[parent],
        help="add a ListenBrainz / Last.fm export or a plain JSONL/CSV of {user, track, ts, seconds_played, event}",
        description="Events are matched to library tracks (plain: a track key or a library path; ListenBrainz and "
        "Last.fm: the files' artist/title tags). Bad lines are named and left out whole; importing the same file "
        "twice adds nothing.",
    )
    imp.add_argument("file", metavar="FILE")
    imp.add_argument(
        "--user", default=None, help="the listener of a ListenBrainz/Last.fm export (or plain lines without one)"
    )
    imp.add_argument(
        "--library", metavar="DIR", default=None, help="the music folder (default: the one the data dir was built from)"
    )
    imp.add_argument(
        "--json",
        action="store_true",
        help="one JSON object: {file, format, records, added, already_stored, unmatched, unmatched_tracks, bad, bad_lines}",
    )
    imp.set_defaults(handler=cmd_import)
    show = hsub.add_parser("show", parents=[parent], help="events per listener (plays, skips, likes)")
    show.add_argument(
        "--json",
        action="store_true",
        help='{"listeners": [{user, plays, skips, likes, tracks}], "damaged_lines", "torn_tail"}',
    )
    show.set_defaults(handler=cmd_show)

    p = sub.add_parser(
        "recommend",
        parents=[parent],
        help="tracks a listener has not played, best first (their history, other listeners', the audio)",
    )
    p.add_argument("--user", required=True, help="the listener profile")
    p.add_argument("-n", type=positive_int, default=20, help="how many (default 20)")
    p.add_argument(
        "--radio",
        action="store_true",
        help="a radio seeded by the listener: a smooth walk through their recommendations",
    )
    p.add_argument(
        "--json", action="store_true", help='one JSON object: {"user", "results": [{track, path, score, why}]}'
    )
    p.set_defaults(handler=cmd_recommend)


def cmd_import(args) -> int:
    from music_pipeline.listening.catalog import Catalog
    from music_pipeline.listening.history import HistoryError
    from music_pipeline.listening.importing import ImportError_, import_history

    settings = Settings.resolve(args.data, args.library)
    try:
        catalog = Catalog.open(settings.data_dir, settings.library_dir if args.library else None)
        report = import_history(settings.data_dir, args.file, catalog, args.user)
    except (ImportError_, HistoryError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print("\n".join(report.lines()))
    return 0


def cmd_show(args) -> int:
    from collections import Counter

    from music_pipeline.listening.history import EventLog, HistoryError

    settings = Settings.resolve(args.data)
    try:
        contents = EventLog(settings.data_dir).read()
    except HistoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts: dict[str, Counter] = {}
    tracks: dict[str, set] = {}
    for e in contents.events:
        counts.setdefault(e.user, Counter())[e.event] += 1
        tracks.setdefault(e.user, set()).add(e.track)
    rows = [
        {"user": u, "plays": c["play"], "skips": c["skip"], "likes": c["like"], "tracks": len(tracks[u])}
        for u, c in sorted(counts.items())
    ]
    if args.json:
        print(json.dumps({"listeners": rows, "damaged_lines": contents.damaged_lines, "torn_tail": contents.torn_tail}))
        return 0
    if not rows:
        print("no listening history yet: play tracks in `music-pipeline serve` or `music-pipeline history import FILE`")
    for r in rows:
        print(f"{r['user']}: {r['plays']} plays, {r['skips']} skips, {r['likes']} likes over {r['tracks']} tracks")
    if contents.damaged_lines:
        print(
            f"warning: {len(contents.damaged_lines)} damaged lines skipped (lines {contents.damaged_lines[:10]})",
            file=sys.stderr,
        )
    return 0


def cmd_recommend(args) -> int:
    from music_pipeline.listening import service
    from music_pipeline.listening.history import HistoryError
    from music_pipeline.search.index import IndexNotBuilt

    settings = Settings.resolve(args.data)
    try:
        if args.radio:
            answer = service.listener_radio(settings.data_dir, args.user, args.n)
        else:
            answer = service.recommend(settings.data_dir, args.user, args.n)
    except (IndexNotBuilt, HistoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        out = {
            "user": answer["user"],
            "results": [{k: r[k] for k in ("track", "path", "score", "why")} for r in answer["results"]],
        }
        print(json.dumps(out, ensure_ascii=False))
        return 0
    print(f"{'Radio for' if args.radio else 'For'} {answer['user']} (model {answer['model']}):")
    for i, r in enumerate(answer["results"], 1):
        print(f"{i:3}. {r['title']}  [{r['track']}]  {r['score']:+.2f}  — {r['why']}")
    return 0

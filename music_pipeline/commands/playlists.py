"""playlists: the library's tracks grouped by sound into named, ordered playlists."""

from __future__ import annotations

import json
import sys

from music_pipeline.settings import Settings


def register(sub, parent) -> None:
    p = sub.add_parser(
        "playlists",
        parents=[parent],
        help="playlists of tracks that sound alike, named by what sets them apart, as M3U8/XSPF files",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON object: {"playlists": [{name, why, tracks: [{track, path, title, duration_s}], files}], '
        '"clustering": {...}, "left_out": [...]}',
    )
    p.add_argument(
        "--refresh",
        action="store_true",
        help="make them again from the analysed tracks now (a build does it when the library changes)",
    )
    p.set_defaults(handler=cmd_playlists)


def cmd_playlists(args) -> int:
    from music_pipeline.layout import DataLayout
    from music_pipeline.playlists.library import PlaylistsNotBuilt, build_playlists, load_playlists, public_json

    settings = Settings.resolve(args.data)
    try:
        if args.refresh:
            raise PlaylistsNotBuilt("refresh asked")
        saved = load_playlists(settings.data_dir)
    except PlaylistsNotBuilt:
        try:  # the tables exist (an older build): make them now, as the library_playlists asset would
            saved = build_playlists(settings.data_dir, settings.library_dir).as_json()
        except PlaylistsNotBuilt as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    answer = public_json(saved)
    if args.json:
        print(json.dumps(answer))
        return 0
    if not answer["playlists"]:
        print(f"no playlists: {answer['clustering'].get('reason', 'no analysed tracks')}")
        return 0
    c = answer["clustering"]
    tracks = sum(len(p["tracks"]) for p in answer["playlists"])
    how = f" ({c['method']} clustering, k by {c['k_rule']})" if c.get("method") else ""
    print(
        f"{len(answer['playlists'])} playlists of {tracks} tracks{how}; files in {DataLayout(settings.data_dir).playlists_dir}"
    )
    for i, p in enumerate(answer["playlists"], 1):
        print(f"\n{i}. {p['name']} — {len(p['tracks'])} tracks")
        print(f"   why: {p['why']}")
        for j, t in enumerate(p["tracks"], 1):
            print(f"   {j:3d}  {t['title']}")
    for t in answer["left_out"]:
        print(f"left out: {t['relpath']}: {t['reason']}")
    return 0

"""similar, compare, radio, explore: queries over the saved similarity index."""

from __future__ import annotations

import json
import shlex
import sys

from music_pipeline.settings import Settings

TRACK_HELP = "a track key, a path inside the library, a unique part of a title, or an audio file (embedded on the fly)"


def register(sub, parent) -> None:
    p = sub.add_parser("similar", parents=[parent], help="the tracks most similar to TRACK (top-n or diverse by MMR)")
    p.add_argument("track", metavar="TRACK", help=TRACK_HELP)
    p.add_argument("-n", type=int, default=10, help="how many results (default 10)")
    p.add_argument("--diverse", type=float, default=None, metavar="LAMBDA", help="Maximal Marginal Relevance trade-off: 1 = plain top-n, lower = more diverse (try 0.7)")
    p.add_argument("--json", action="store_true", help='one JSON object: {"query": {...}, "results": [{track, path, label, score}]}')
    p.set_defaults(handler=cmd_similar)

    p = sub.add_parser("compare", parents=[parent], help="cosine similarity of two tracks and which feature groups agree or differ")
    p.add_argument("a", metavar="A", help=TRACK_HELP)
    p.add_argument("b", metavar="B", help="the second track (same forms as A)")
    p.add_argument("--json", action="store_true", help="one JSON object: {a, b, cosine, percentile, groups, agree, differ, differences}")
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("radio", parents=[parent], help="a playlist that walks from SEED through similar tracks, no repeats")
    p.add_argument("seed", metavar="SEED", help=TRACK_HELP)
    p.add_argument("--length", type=int, default=20, help="tracks in the playlist, seed not counted (default 20)")
    p.add_argument("--bpm", type=float, default=None, help="tempo target in BPM (tempo_bpm feature)")
    p.add_argument("--bpm-tolerance", type=float, default=8.0, help="allowed distance from --bpm (default ±8 BPM)")
    p.add_argument("--energy", type=float, default=None, help="energy target as a percentile of rms_mean in the library: 0 = quietest, 1 = loudest")
    p.add_argument("--energy-tolerance", type=float, default=0.15, help="allowed distance from --energy (default ±0.15)")
    p.add_argument("--pull", type=float, default=0.5, help="weight of the seed against the previous track (0 = drift freely, 1 = stay by the seed)")
    p.add_argument("--json", action="store_true", help='one JSON object: {"query": {...}, "results": [{track, path, label, score, tempo_bpm, energy, ...}]}')
    p.set_defaults(handler=cmd_radio)

    p = sub.add_parser("explore", parents=[parent], help="interactive prompt for repeated searches (type help; quit or Ctrl-D ends)")
    p.add_argument("-n", type=int, default=10)
    p.set_defaults(handler=cmd_explore)


def _open(args):
    from music_pipeline.search.index import IndexNotBuilt
    from music_pipeline.search.library import Discovery

    settings = Settings.resolve(args.data)
    try:
        return Discovery.open(settings.data_dir)
    except (IndexNotBuilt, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if not isinstance(exc, IndexNotBuilt):
            print("the similarity index looks damaged: rebuild it with `music-pipeline build`", file=sys.stderr)
        return None


def _fail(args, query, exc) -> int:
    print(f"error: {exc}", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"query": query, "error": str(exc)}))
    return 2


def _print_hits(q, hits, heading: str) -> None:
    print(f"{heading} {q.relpath or q.path}" + (f" [{q.label}]" if q.label else "") + (" (outside the library)" if q.external else ""))
    if not hits:
        print("  no results")
    for i, h in enumerate(hits, 1):
        extra = ""
        if "tempo_bpm" in h.extra:
            extra = f"  {h.extra['tempo_bpm']:5.0f} BPM  energy {h.extra['energy']:.2f}"
        print(f"{i:>4}. {h.score:6.3f}  {(h.label or '-')[:20]:<20}{extra}  {h.path}")


def cmd_similar(args) -> int:
    from music_pipeline.search.library import QueryError
    from music_pipeline.search.results import similar_json

    disc = _open(args)
    if disc is None:
        return 2
    try:
        q, hits = disc.similar(args.track, args.n, args.diverse)
    except (QueryError, ValueError) as exc:
        return _fail(args, args.track, exc)
    if args.json:
        print(json.dumps(similar_json(q, hits, args.diverse)))
    else:
        _print_hits(q, hits, "Diverse picks (MMR λ=%g) like" % args.diverse if args.diverse is not None else "Most similar to")
    return 0


def _print_comparison(qa, qb, c) -> None:
    for tag, q in (("A", qa), ("B", qb)):
        print(f"{tag}: {q.relpath or q.path}" + (f" [{q.label}]" if q.label else ""))
    pct = f" (percentile {c.percentile:.0f} among random library pairs)" if c.percentile is not None else ""
    print(f"cosine similarity {c.cosine:.3f}{pct}")
    for g in c.groups:
        p = f"p{g.percentile:3.0f}" if g.percentile is not None else "    "
        print(f"  {g.group:<9} {g.features:>4} features  cos {g.cosine:+.3f}  {p}  {g.verdict}")
    print(f"agree: {', '.join(c.agree) or 'none'}; differ: {', '.join(c.differ) or 'none'}")
    print("largest differences: " + "; ".join(f"{d['feature']} ({d['group']}) z {d['z_a']:+.2f} vs {d['z_b']:+.2f}" for d in c.differences))


def cmd_compare(args) -> int:
    from music_pipeline.search.library import QueryError
    from music_pipeline.search.results import compare_json

    disc = _open(args)
    if disc is None:
        return 2
    try:
        qa, qb, c = disc.compare(args.a, args.b)
    except (QueryError, ValueError) as exc:
        return _fail(args, [args.a, args.b], exc)
    if args.json:
        print(json.dumps(compare_json(qa, qb, c)))
    else:
        _print_comparison(qa, qb, c)
    return 0


def cmd_radio(args) -> int:
    from music_pipeline.search.library import QueryError
    from music_pipeline.search.results import radio_json

    disc = _open(args)
    if disc is None:
        return 2
    try:
        q, hits = disc.radio(args.seed, args.length, args.bpm, args.bpm_tolerance, args.energy, args.energy_tolerance, args.pull)
    except (QueryError, ValueError) as exc:
        return _fail(args, args.seed, exc)
    filters = {"bpm": args.bpm, "bpm_tolerance": args.bpm_tolerance, "energy": args.energy, "energy_tolerance": args.energy_tolerance}
    if len(hits) < args.length:
        print(f"note: only {len(hits)} tracks satisfy the filters ({len(hits)} of {args.length} requested)", file=sys.stderr)
    if args.json:
        print(json.dumps(radio_json(q, hits, filters)))
    else:
        _print_hits(q, hits, "Radio from")
    return 0


EXPLORE_HELP = """\
  TRACK              similar tracks (key, library path, part of a title, or an audio file)
  3                  similar to result number 3 of the last list
  compare A | B      compare two tracks
  radio TRACK        a playlist walking from TRACK
  n 20               show 20 results
  diverse 0.7        MMR re-ranking with λ = 0.7 (diverse off: plain top-n)
  help, quit         (Ctrl-D also quits)"""


def cmd_explore(args) -> int:
    from music_pipeline.search.library import QueryError

    disc = _open(args)
    if disc is None:
        return 2
    n, diverse, last = args.n, None, []
    interactive = sys.stdin.isatty()
    print(f"{len(disc.index)} tracks indexed. Type a track to search, 'help' for commands, 'quit' to leave.")
    while True:
        if interactive:
            try:
                line = input("similar> ")
            except EOFError:
                print()
                break
        else:
            line = sys.stdin.readline()
            if not line:
                break
        line = line.strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        try:
            if word in ("quit", "exit", "q"):
                break
            elif word in ("help", "?"):
                print(EXPLORE_HELP)
            elif word == "n" and rest.isdigit():
                n = int(rest)
                print(f"showing {n} results")
            elif word == "diverse" and rest:
                diverse = None if rest == "off" else float(rest)
                print("plain top-n" if diverse is None else f"MMR with λ = {diverse}")
            elif word == "compare" and "|" in rest:
                a, b = (s.strip() for s in rest.split("|", 1))
                _print_comparison(*disc.compare(a, b))
            elif word == "radio" and rest:
                q, last = disc.radio(_unquote(rest))
                _print_hits(q, last, "Radio from")
            else:
                target = last[int(line) - 1].track if line.isdigit() and 0 < int(line) <= len(last) else _unquote(line)
                q, last = disc.similar(target, n, diverse)
                _print_hits(q, last, "Most similar to" if diverse is None else f"Diverse picks (MMR λ={diverse}) like")
        except (QueryError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
        sys.stdout.flush()
    return 0


def _unquote(text: str) -> str:
    try:
        parts = shlex.split(text)
    except ValueError:
        return text
    return parts[0] if len(parts) == 1 else text

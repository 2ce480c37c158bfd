"""similar, compare, radio, explore: queries over the saved similarity index."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from music_pipeline.commands.args import non_negative_float, positive_float, positive_int, unit_interval
from music_pipeline.settings import Settings

TRACK_HELP = "a track key, a path inside the library, a unique part of a title, or an audio file (embedded on the fly)"


def register(sub, parent) -> None:
    p = sub.add_parser("similar", parents=[parent], help="the tracks most similar to TRACK (top-n or diverse by MMR)")
    p.add_argument("track", metavar="TRACK", help=TRACK_HELP)
    p.add_argument("-n", type=positive_int, default=10, help="how many results (default 10)")
    p.add_argument(
        "--diverse",
        type=unit_interval,
        default=None,
        metavar="LAMBDA",
        help="Maximal Marginal Relevance trade-off: 1 = plain top-n, lower = more diverse (try 0.7)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON object: {"query": {...}, "results": [{track, path, label, score}]}',
    )
    p.set_defaults(handler=cmd_similar)

    p = sub.add_parser(
        "compare", parents=[parent], help="cosine similarity of two tracks and which feature groups agree or differ"
    )
    p.add_argument("a", metavar="A", help=TRACK_HELP)
    p.add_argument("b", metavar="B", help="the second track (same forms as A)")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object: {a, b, cosine, percentile, verdict, summary, groups, agree, differ, differences}",
    )
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser(
        "radio", parents=[parent], help="a playlist that walks from SEED through similar tracks, no repeats"
    )
    p.add_argument("seed", metavar="SEED", help=TRACK_HELP)
    p.add_argument(
        "--length", type=positive_int, default=20, help="tracks in the playlist, seed not counted (default 20)"
    )
    p.add_argument("--bpm", type=positive_float, default=None, help="tempo target in BPM (tempo_bpm feature)")
    p.add_argument(
        "--bpm-tolerance", type=non_negative_float, default=8.0, help="allowed distance from --bpm (default ±8 BPM)"
    )
    p.add_argument(
        "--energy",
        type=unit_interval,
        default=None,
        help="energy target as a percentile of rms_mean in the library: 0 = quietest, 1 = loudest",
    )
    p.add_argument(
        "--energy-tolerance",
        type=unit_interval,
        default=0.15,
        help="allowed distance from --energy, 0–1 (default ±0.15)",
    )
    p.add_argument(
        "--harmonic",
        action="store_true",
        help="DJ mix: each step Camelot-compatible with the one before and within ±6 %% of its tempo (half/double time allowed)",
    )
    p.add_argument(
        "--pull",
        type=unit_interval,
        default=0.5,
        help="weight of the seed against the previous track, 0–1 (0 = drift freely, 1 = stay by the seed)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON object: {"query": {...}, "results": [{track, path, label, score, tempo_bpm, energy, ...}]}',
    )
    p.set_defaults(handler=cmd_radio)

    p = sub.add_parser(
        "explore", parents=[parent], help="interactive prompt for repeated searches (type help; quit or Ctrl-D ends)"
    )
    p.add_argument("-n", type=positive_int, default=10, help="results per search (default 10)")
    p.set_defaults(handler=cmd_explore)


def _open(args):
    from music_pipeline.search.discovery import Discovery
    from music_pipeline.search.index import IndexNotBuilt

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
    print(
        f"{heading} {q.relpath or q.path}"
        + (f" [{q.label}]" if q.label else "")
        + (" (outside the library)" if q.external else "")
    )
    if not hits:
        print("  no results")
    for i, h in enumerate(hits, 1):
        extra = ""
        if "tempo_bpm" in h.extra:
            extra = f"  {h.extra['tempo_bpm']:5.0f} BPM  energy {h.extra['energy']:.2f}"
        print(f"{i:>4}. {h.score:6.3f}  {(h.label or '-')[:20]:<20}{extra}  {h.path}")


def cmd_similar(args) -> int:
    from music_pipeline.search.discovery import QueryError
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
        _print_hits(
            q, hits, f"Diverse picks (MMR λ={args.diverse:g}) like" if args.diverse is not None else "Most similar to"
        )
    return 0


def _print_comparison(qa, qb, c) -> None:
    for tag, q in (("A", qa), ("B", qb)):
        print(f"{tag}: {q.relpath or q.path}" + (f" [{q.label}]" if q.label else ""))
    overall = {
        "agree": "more alike than most pairs",
        "differ": "more different than most pairs",
        "neutral": "a typical pair",
    }[c.verdict]
    pct = (
        f" (percentile {c.percentile:.0f} among random library pairs: {overall})"
        if c.percentile is not None
        else f" ({overall})"
    )
    print(f"cosine similarity {c.cosine:+.3f}{pct}")
    for g in c.groups:
        p = f"p{g.percentile:3.0f}" if g.percentile is not None else "    "
        print(f"  {g.group:<9} {g.features:>4} features  cos {g.cosine:+.3f}  {p}  {g.verdict}")
    print(c.summary)
    print(
        "largest differences: "
        + "; ".join(f"{d['feature']} ({d['group']}) z {d['z_a']:+.2f} vs {d['z_b']:+.2f}" for d in c.differences)
    )


def cmd_compare(args) -> int:
    from music_pipeline.search.discovery import QueryError
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
    from music_pipeline.search.discovery import QueryError
    from music_pipeline.search.results import radio_json

    disc = _open(args)
    if disc is None:
        return 2
    try:
        q, hits = disc.radio(
            args.seed,
            args.length,
            args.bpm,
            args.bpm_tolerance,
            args.energy,
            args.energy_tolerance,
            args.pull,
            harmonic=args.harmonic,
        )
    except (QueryError, ValueError) as exc:
        return _fail(args, args.seed, exc)
    filters = {
        "bpm": args.bpm,
        "bpm_tolerance": args.bpm_tolerance,
        "energy": args.energy,
        "energy_tolerance": args.energy_tolerance,
        "harmonic": args.harmonic,
    }
    if len(hits) < args.length:
        print(
            f"note: only {len(hits)} tracks satisfy the filters ({len(hits)} of {args.length} requested)",
            file=sys.stderr,
        )
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
  n 20               show 20 results (n alone: the current setting)
  diverse 0.7        MMR re-ranking with λ between 0 and 1 (diverse off: plain top-n)
  help, quit         (Ctrl-D also quits)"""


class Usage(ValueError):
    """A prompt line with the wrong syntax (the message shows the right one)."""


def _setting_n(rest: str) -> int:
    try:
        return positive_int(rest)
    except argparse.ArgumentTypeError:
        raise Usage(f"n takes a whole number ≥ 1, got {rest!r} (e.g. n 20)") from None


def _setting_diverse(rest: str) -> float | None:
    if rest.lower() == "off":
        return None
    try:
        return unit_interval(rest)
    except argparse.ArgumentTypeError:
        raise Usage(f"diverse takes λ between 0 and 1, or off, got {rest!r} (e.g. diverse 0.7)") from None


class Explorer:
    """The state of one `explore` session: settings and the last list of results."""

    def __init__(self, disc, n: int):
        self.disc, self.n, self.diverse, self.last = disc, n, None, []

    def handle(self, line: str) -> bool:
        """Run one prompt line; False when the session should end."""
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        lower = word.lower()
        if lower in ("quit", "exit", "q"):
            return False
        if lower in ("help", "?"):
            print(EXPLORE_HELP)
        elif lower == "n":
            if rest:
                self.n = _setting_n(rest)
            print(f"showing {self.n} results")
        elif lower == "diverse":
            if rest:
                self.diverse = _setting_diverse(rest)
            print("plain top-n" if self.diverse is None else f"MMR with λ = {self.diverse:g}")
        elif lower == "compare":
            a, bar, b = rest.partition("|")
            if not bar or not a.strip() or not b.strip():
                raise Usage("compare takes two tracks separated by |: compare A | B")
            _print_comparison(*self.disc.compare(_unquote(a.strip()), _unquote(b.strip())))
        elif lower == "radio":
            if not rest:
                raise Usage("radio takes a track: radio TRACK")
            q, self.last = self.disc.radio(_unquote(rest), max(self.n, 1))
            _print_hits(q, self.last, "Radio from")
        elif lower == "similar" and rest:
            self.search(_unquote(rest))
        elif line.isdigit():
            self.pick(int(line), line)
        else:
            self.search(_unquote(line))
        return True

    def pick(self, number: int, text: str) -> None:
        from music_pipeline.search.discovery import QueryError

        if 0 < number <= len(self.last):
            self.search(self.last[number - 1].track)
            return
        try:  # a title may be a number ("1979"); only when none is, the number was an index
            self.search(text)
        except QueryError:
            if not self.last:
                raise Usage(f"no results to pick {number} from yet: search for a track first") from None
            raise Usage(
                f"there is no result {number}: the last list has {len(self.last)} (and no track matches {text!r})"
            ) from None

    def search(self, target: str) -> None:
        q, self.last = self.disc.similar(target, self.n, self.diverse)
        _print_hits(
            q, self.last, "Most similar to" if self.diverse is None else f"Diverse picks (MMR λ={self.diverse:g}) like"
        )


def cmd_explore(args) -> int:
    from music_pipeline.search.discovery import QueryError

    disc = _open(args)
    if disc is None:
        return 2
    session = Explorer(disc, args.n)
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
        try:
            if not session.handle(line):
                break
        except Usage as exc:
            print(f"usage: {exc}", file=sys.stderr)
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

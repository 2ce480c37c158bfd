"""build, demo, embed, ui."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from music_pipeline.settings import Settings


def register(sub, parent) -> None:
    p = sub.add_parser("build", parents=[parent], help="scan the library and materialize every asset through Dagster")
    p.add_argument("--library", metavar="DIR", default=None, help="the music folder (env MUSIC_LIBRARY, default <data>/library)")
    p.add_argument("--workers", type=int, default=None, help="extraction processes (default: all cores)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait this long for another build on the same data dir (default: refuse at once)")
    p.set_defaults(handler=cmd_build)

    p = sub.add_parser("demo", parents=[parent], help="fetch the demo library (real free music from Debian) and build it")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--synthetic", action="store_true", help="skip the download and use the synthesized library")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("embed", parents=[parent], help="print the 641 named features of audio files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per file: {file, features: {name: value}}")
    p.set_defaults(handler=cmd_embed)

    p = sub.add_parser("ui", parents=[parent], help="start the Dagster web UI (dagster dev) on 127.0.0.1")
    p.add_argument("--library", metavar="DIR", default=None)
    p.add_argument("--host", default="127.0.0.1", help="bind address; the UI has no authentication, expose it with care")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(handler=cmd_ui)


def _print_summary(summary) -> None:
    print(f"\n{summary.tracks} tracks in the library, {summary.embedded} in the embedding table, {len(summary.skipped)} skipped")
    for r in summary.skipped.itertuples():
        print(f"  skipped {r.relpath}: {r.reason}")
    for f in summary.failed_assets:
        print(f"  FAILED {f}", file=sys.stderr)


def _build(settings: Settings, wait: float = 0.0) -> int:
    from music_pipeline.defs.runner import BuildLocked, run_build

    try:
        summary = run_build(settings, wait_for_lock_s=wait)
    except BuildLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_summary(summary)
    print(f"runs recorded in DAGSTER_HOME={os.environ['DAGSTER_HOME']} (see them with: music-pipeline ui --data {settings.data_dir})")
    return 0 if summary.ok else 1


def cmd_build(args) -> int:
    return _build(Settings.resolve(args.data, args.library, args.workers), args.wait)


def cmd_demo(args) -> int:
    from music_pipeline.demo import prepare_demo_library

    settings = Settings.resolve(args.data, None, args.workers)
    # downloads need a local folder; with a remote data dir the demo library stays on this host
    local_root = settings.data_dir if isinstance(settings.data_dir, Path) else settings.dagster_home.parent
    library = prepare_demo_library(local_root / "demo_library", synthetic=args.synthetic, log=print)
    return _build(Settings(settings.data_dir, library, settings.workers))


def cmd_embed(args) -> int:
    from music_pipeline.commands.per_file import PerFile
    from music_pipeline.features.embedding import FEATURE_NAMES

    loop = PerFile(args.json)
    for f, feats in loop.features(args.files):
        values = dict(zip(FEATURE_NAMES, map(float, feats.embedding)))
        if args.json:
            print(json.dumps({"file": f, "duration_s": feats.duration_s, "features": values}))
        else:
            print(f"# {f} ({feats.duration_s:.1f} s)")
            for name, v in values.items():
                print(f"{name}\t{v:.6g}")
    return loop.exit_code


def cmd_ui(args) -> int:
    from music_pipeline.defs.runner import ensure_dagster_home

    settings = Settings.resolve(args.data, args.library)
    os.environ["MUSIC_PIPELINE_DATA"] = str(settings.data_dir)
    os.environ["MUSIC_LIBRARY"] = str(settings.require_library())
    home = ensure_dagster_home(settings)
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={home}); Ctrl-C stops it")
    cmd = [sys.executable, "-m", "dagster", "dev", "-m", "music_pipeline.definitions", "-h", args.host, "-p", str(args.port)]
    return subprocess.call(cmd)

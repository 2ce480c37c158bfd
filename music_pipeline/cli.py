"""`music-pipeline`: the command line over the same core the Dagster assets use.

Each command group lives in ``music_pipeline/commands/<name>.py`` with a ``register(subparsers)``
function; heavy libraries are imported inside the handlers so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from music_pipeline.settings import LibraryNotGiven

COMMAND_MODULES = ["core", "difficulty", "genre", "discovery", "models"]


def common_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--data", metavar="DIR", default=None, help="artifacts + Dagster instance (env MUSIC_PIPELINE_DATA, default data/)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="music-pipeline", description="Turn a music library into embeddings, difficulty scores, genre models and similarity search.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parent = common_parent()
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"music_pipeline.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"music_pipeline.commands.{name}":
                continue  # that command group is not part of this build
            raise
        module.register(sub, parent)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except LibraryNotGiven as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

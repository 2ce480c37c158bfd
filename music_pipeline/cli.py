"""`music-pipeline`: the command line over the same core the Dagster assets use.

Each command group lives in ``music_pipeline/commands/<name>.py`` with a ``register(subparsers)``
function; heavy libraries are imported inside the handlers so ``--help`` stays fast.

Quiet by default: TensorFlow's environment defaults are set before anything can import it, its
Python warnings are raised to ERROR, and `build`/`demo` send native-library output to a build log
(see ``music_pipeline/quiet.py``). ``-v/--verbose`` shows all of it (and sets
MUSIC_PIPELINE_VERBOSE=1 for child processes).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from music_pipeline import quiet, settings
from music_pipeline.commands import (
    core,
    difficulty,
    discovery,
    genre,
    harmony,
    identity,
    listening,
    models,
    playlists,
    serve,
)
from music_pipeline.settings import SettingsError

# each registers its subcommands; the modules are light, their handlers import what they need
COMMAND_MODULES = [core, difficulty, genre, discovery, harmony, identity, playlists, listening, models, serve]


def common_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="artifacts + Dagster instance (env MUSIC_PIPELINE_DATA, default data/)",
    )
    parent.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="debug logging and every native-library message",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="music-pipeline",
        description="Turn a music library into embeddings, difficulty scores, genre models and similarity search.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging and every native-library message (TensorFlow, decoders)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parent = common_parent()
    for module in COMMAND_MODULES:
        module.register(sub, parent)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        settings.set_verbose()
    quiet.quiet_environment()  # before anything imports TensorFlow
    quiet.quiet_python_logs()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `music-pipeline similar … | head`: the reader left, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except SettingsError as exc:  # a missing library, a bad MUSIC_PIPELINE_WORKERS, …
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

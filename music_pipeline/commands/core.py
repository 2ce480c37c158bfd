"""build, demo, embed, ui."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

from music_pipeline.commands.args import non_negative_float, port, positive_int
from music_pipeline.commands.display import BuildDisplay
from music_pipeline.commands.per_file import PerFile
from music_pipeline.settings import (
    ENV_DATA,
    ENV_LIBRARY,
    SOURCE_DEFAULT,
    LibraryNotGiven,
    LibraryUnavailable,
    Settings,
    dagster_home_from_env,
    read_library_record,
    resolve_data_dir,
    verbose,
)
from music_pipeline.workers import WorkersCannotStart

EXIT_FAILED = 1  # a run or an ERROR-severity check failed
EXIT_USAGE = 2  # bad arguments, no library: nothing was written
EXIT_LOCKED = 3
EXIT_SKIPPED = 4  # --strict and some files could not be analysed


def register(sub, parent) -> None:
    p = sub.add_parser(
        "build",
        parents=[parent],
        help="scan the library and materialize every asset through Dagster",
        description="Analyse new and changed tracks, refresh the tables and the similarity index, retrain the models, "
        "and write the reports. Exit status: 0 built (files that cannot be analysed are listed and skipped), "
        "1 a run or an ERROR-severity asset check failed, 2 bad arguments or no library, 3 another build holds "
        "the data directory, 4 with --strict: some files were skipped.",
    )
    p.add_argument(
        "--library",
        metavar="DIR",
        default=None,
        help="the music folder (env MUSIC_LIBRARY; default: the library this data directory was built from, else <data>/library)",
    )
    p.add_argument("--workers", type=positive_int, default=None, help="extraction processes (default: all cores)")
    p.add_argument(
        "--wait",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another build on the same data dir (default: refuse at once)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="analyse again the files recorded as broken (e.g. after installing ffmpeg)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help=f"exit with {EXIT_SKIPPED} when any file of the library could not be analysed",
    )
    p.add_argument(
        "--no-models",
        action="store_true",
        help="do not train the library models this time (tables, difficulty scores and the similarity index are still refreshed)",
    )
    p.add_argument(
        "--retrain",
        action="store_true",
        help="retrain every library model now; by default only models whose code changed or whose training tracks changed by more than 10%% (MUSIC_PIPELINE_RETRAIN_SHARE) are retrained",
    )
    p.set_defaults(handler=cmd_build)

    p = sub.add_parser(
        "demo", parents=[parent], help="fetch the demo library (real free music from Debian) and build it"
    )
    p.add_argument("--workers", type=positive_int, default=None)
    p.add_argument("--synthetic", action="store_true", help="skip the download and use the synthesized library")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("embed", parents=[parent], help="print the 641 named features of audio files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per file: {file, features: {name: value}}")
    p.set_defaults(handler=cmd_embed)

    p = sub.add_parser("ui", parents=[parent], help="start the Dagster web UI (dagster dev) on 127.0.0.1")
    p.add_argument(
        "--library",
        metavar="DIR",
        default=None,
        help="the folder the library_sensor follows (default: MUSIC_LIBRARY, else the library the data directory was built from)",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="bind address; the UI has no authentication, expose it with care"
    )
    p.add_argument("--port", type=port, default=3000)
    p.set_defaults(handler=cmd_ui)


def _error(text: str) -> None:
    print(f"error: {text}", file=sys.stderr)


def _data_arg(settings: Settings) -> str:
    """The --data argument a next command needs (none when it is the default)."""
    return "" if settings.data_dir == resolve_data_dir(None) else f"--data {settings.data_dir}"


def _print_summary(summary, settings: Settings, log_path: Path | None, strict: bool) -> None:
    from music_pipeline.summary import collect, summary_lines

    print(
        f"\n{summary.tracks} tracks in the library, {summary.embedded} in the embedding table, {len(summary.skipped)} skipped"
    )
    for r in summary.skipped.itertuples():
        print(f"  skipped {r.relpath}: {r.reason}")
    if summary.retried:
        print(f"  {summary.retried} recorded failures were analysed again (--retry-failed)")
    if any(summary.pass_seconds.values()):
        per_pass = ", ".join(f"{name} {s:.0f} s" for name, s in summary.pass_seconds.items())
        print(f"  time per pass (CPU, all workers; the one decode of each file counts in features): {per_pass}")
    for f in summary.failed_assets:
        print(f"FAILED {f}", file=sys.stderr)
    for c in summary.failed_checks:
        print(f"FAILED CHECK {c}", file=sys.stderr)
    for c in summary.warned_checks:
        print(f"warning: check {c}")
    for note in summary.notes:
        print(f"note: {note}")
    if summary.embedded:
        print()
        for line in summary_lines(collect(settings.data_dir), _data_arg(settings), show_skipped=0):
            print(line)
    print(f"\nruns recorded in DAGSTER_HOME={dagster_home_from_env()}")
    if log_path is not None and log_path.exists():
        print(f"build log (warnings, native-library messages): {log_path}")
    if not summary.ok:
        print(
            f"error: the build failed ({len(summary.failed_assets)} failed step(s), {len(summary.failed_checks)} failed ERROR check(s), listed above)",
            file=sys.stderr,
        )
    elif strict and len(summary.skipped):
        print(f"error: --strict: {len(summary.skipped)} file(s) could not be analysed", file=sys.stderr)


def _build(
    settings: Settings,
    wait: float = 0.0,
    retry_failed: bool = False,
    strict: bool = False,
    recorded_by: str = "build",
    models: bool = True,
    retrain: bool = False,
) -> int:
    from music_pipeline import quiet
    from music_pipeline.build.runner import BuildInvalid, BuildLocked, run_build, validate

    try:
        validate(settings)  # before anything is written
    except (LibraryUnavailable, LibraryNotGiven, BuildInvalid) as exc:
        _error(str(exc))
        return EXIT_USAGE
    log_path = None if verbose() else settings.logs_dir / f"build-{datetime.now():%Y%m%d-%H%M%S}.log"
    redirect = nullcontext(sys.stderr) if log_path is None else quiet.stderr_to_file(log_path)
    try:
        with redirect as terminal:
            display = BuildDisplay(terminal, workers=settings.workers)
            try:
                summary = run_build(
                    settings,
                    wait_for_lock_s=wait,
                    log=display.line,
                    models=models,
                    retry_failed=retry_failed,
                    on_event=display.event,
                    recorded_by=recorded_by,
                    retrain=retrain,
                )
            except BuildLocked as exc:
                display.close()
                terminal.write(f"error: {exc}\n")
                return EXIT_LOCKED
            except (LibraryUnavailable, LibraryNotGiven, BuildInvalid, WorkersCannotStart) as exc:
                display.close()
                terminal.write(f"error: {exc}\n")
                return EXIT_USAGE if not isinstance(exc, WorkersCannotStart) else EXIT_FAILED
            except Exception as exc:  # noqa: BLE001 - a bug: the traceback goes to the build log, one line to the user
                display.close()
                traceback.print_exc()
                where = f"; details in {log_path}" if log_path else ""
                terminal.write(f"error: the build stopped ({type(exc).__name__}: {exc}){where}\n")
                return EXIT_FAILED
            finally:
                display.close()
    finally:
        if log_path is not None:
            _drop_if_empty(log_path)
    _print_summary(summary, settings, log_path, strict)
    if not summary.ok:
        return EXIT_FAILED
    if strict and len(summary.skipped):
        return EXIT_SKIPPED
    return 0


def _drop_if_empty(log_path: Path) -> None:
    """A quiet build leaves no empty log behind."""
    try:
        if log_path.stat().st_size == 0:
            log_path.unlink()
            log_path.parent.rmdir()  # only when no other log is there
    except OSError:
        pass


def cmd_build(args) -> int:
    settings = Settings.resolve(args.data, args.library, args.workers)
    if args.retrain and args.no_models:
        _error("--retrain and --no-models contradict each other: choose one")
        return EXIT_USAGE
    return _build(settings, args.wait, args.retry_failed, args.strict, models=not args.no_models, retrain=args.retrain)


def cmd_demo(args) -> int:
    from music_pipeline.build.runner import BuildInvalid
    from music_pipeline.demo import prepare_demo_library

    settings = Settings.resolve(args.data, None, args.workers)
    data = settings.data_dir
    if isinstance(data, Path) and data.exists() and not data.is_dir():
        _error(str(BuildInvalid(f"the data directory {data} is a file, not a folder")))
        return EXIT_USAGE
    # downloads need a local folder; with a remote data dir the demo library stays on this host
    local_root = data if isinstance(data, Path) else settings.dagster_home.parent
    library = prepare_demo_library(local_root / "demo_library", synthetic=args.synthetic, log=print)
    return _build(Settings(data, library, settings.workers, library_source="demo"), recorded_by="demo")


def cmd_embed(args) -> int:
    from music_pipeline.features.embedding import FEATURE_NAMES

    loop = PerFile(args.json)
    for f, feats in loop.features(args.files):
        values = dict(zip(FEATURE_NAMES, map(float, feats.embedding), strict=True))
        if args.json:
            print(json.dumps({"file": f, "duration_s": feats.duration_s, "features": values}))
        else:
            print(f"# {f} ({feats.duration_s:.1f} s)")
            for name, v in values.items():
                print(f"{name}\t{v:.6g}")
    return loop.exit_code


def cmd_ui(args) -> int:
    from music_pipeline.build.runner import ensure_dagster_home

    settings = Settings.resolve(args.data, args.library)
    data = settings.data_dir
    if isinstance(data, Path):
        if data.exists() and not data.is_dir():
            _error(f"the data directory {data} is a file, not a folder")
            return EXIT_USAGE
        if not data.exists() and settings.library_source == SOURCE_DEFAULT:
            _error(
                f"nothing has been built in {data}: build it first (music-pipeline build --library YOUR_MUSIC --data {data}), "
                f"or start the UI on a new data directory with --library YOUR_MUSIC"
            )
            return EXIT_USAGE
    try:
        settings.check_library()
    except LibraryNotGiven as exc:
        _error(str(exc))
        return EXIT_USAGE
    except LibraryUnavailable as exc:  # the UI still shows what was built; the sensor waits and says why
        print(
            f"warning: {exc}\n         the library_sensor skips (with this reason) until the folder is back",
            file=sys.stderr,
        )
    env = {**os.environ, ENV_DATA: str(data)}
    if args.library:
        env[ENV_LIBRARY] = str(settings.library_dir)
    home = ensure_dagster_home(settings)
    env["DAGSTER_HOME"] = str(home)
    record = read_library_record(data) or {}
    origin = {
        "--library": "--library",
        ENV_LIBRARY: ENV_LIBRARY,
        "recorded": f"recorded by `{record.get('recorded_by', 'build')}` in {data}/library.json",
        "default": "default",
    }
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={home})")
    print(
        f"library followed by the sensor: {settings.library_dir} ({origin.get(settings.library_source, settings.library_source)})"
    )
    print("Ctrl-C stops it")
    sys.stdout.flush()
    level = "info" if verbose() else "warning"
    python = [sys.executable] if verbose() else [sys.executable, "-W", "ignore:Function `dev_command` is superseded"]
    cmd = [
        *python,
        "-m",
        "dagster",
        "dev",
        "-m",
        "music_pipeline.definitions",
        "-h",
        args.host,
        "-p",
        str(args.port),
        "--log-level",
        level,
    ]
    # run from the Dagster home: dagster dev puts its working directory first on sys.path, and a
    # `music_pipeline` folder in the user's current directory must not replace the installed one
    return _run_until_stopped(cmd, env, cwd=home)


def _default_signals() -> None:
    # a shell may start us with SIGINT/SIGTERM ignored (background jobs); dagster dev must still stop
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_until_stopped(cmd: list[str], env: dict, cwd: Path | None = None) -> int:
    """Run dagster dev; Ctrl-C or SIGTERM to this process stops it cleanly (it gets SIGINT and
    shuts down its webserver, daemon and code servers)."""
    import signal

    proc = subprocess.Popen(cmd, env=env, cwd=cwd, preexec_fn=_default_signals)  # noqa: PLW1509 - it only resets two signal handlers (async-signal-safe): nothing else can undo an inherited SIG_IGN

    def stop(_signum, _frame):
        proc.send_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # the terminal sent SIGINT to both of us: let it finish
                stop(None, None)
    finally:
        signal.signal(signal.SIGTERM, previous)

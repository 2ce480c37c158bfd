"""serve: the listening explorer — a web page to search, play and wander the library."""

from __future__ import annotations

import ipaddress
import socket
import sys

from music_pipeline.settings import Settings

NO_AUTH_WARNING = (
    "warning: bound to {url}, the explorer asks every request for the access token printed below, but it has "
    "no other authentication and speaks plain HTTP (the token and the music cross the network unencrypted): "
    "put it behind a TLS reverse proxy or a VPN, or keep the default --host 127.0.0.1."
)


def register(sub, parent) -> None:
    p = sub.add_parser(
        "serve",
        parents=[parent],
        help="the explorer: a web page to search, play, find similar tracks, walk the map, make playlists",
        description="A read-only web app over the saved similarity index (loaded once): search as you type, "
        "a player, genre and PDI per track, similar and diverse neighbours, compare, the 2-D map, radio, "
        "a path from A to B, M3U8/XSPF playlists, and the JSON API under /api/.",
    )
    p.add_argument(
        "--library", metavar="DIR", default=None, help="the music folder (default: the one the index was built from)"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address (default 127.0.0.1); the explorer has no authentication, expose it with care",
    )
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.set_defaults(handler=cmd_serve)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int) -> str | None:
    """The warning for a bind address other people can reach (None on loopback)."""
    return None if is_loopback(host) else NO_AUTH_WARNING.format(url=f"http://{host}:{port}")


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


def cmd_serve(args) -> int:
    from music_pipeline.search.index import IndexNotBuilt

    if not 0 < args.port < 65536:
        print(f"error: --port must be between 1 and 65535, got {args.port}", file=sys.stderr)
        return 2
    settings = Settings.resolve(args.data, args.library)
    if not _port_free(args.host, args.port):
        print(
            f"error: cannot listen on {args.host}:{args.port}: the address is in use or not available here (another explorer? choose --port)",
            file=sys.stderr,
        )
        return 2

    import uvicorn

    from music_pipeline.web.app import create_app
    from music_pipeline.web.explorer import LiveExplorer
    from music_pipeline.web.status import clear_status, write_status

    try:
        live = LiveExplorer(settings.data_dir, settings.library_dir if args.library else None)
        explorer = live.current
    except (IndexNotBuilt, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if not isinstance(exc, IndexNotBuilt):
            print("the similarity index looks damaged: rebuild it with `music-pipeline build`", file=sys.stderr)
        return 2
    loopback = is_loopback(args.host)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    url = f"http://{f'[{shown}]' if ':' in shown else shown}:{args.port}"
    if warning := exposure_warning(args.host, args.port):
        print(warning, file=sys.stderr)
    if explorer.disc.library_root is None or not explorer.disc.library_root.is_dir():
        print(
            f"warning: the library folder {explorer.disc.library_root} is not here: search works, playing does not (give --library)",
            file=sys.stderr,
        )

    def started() -> None:
        try:
            write_status(settings.data_dir, url)
        except Exception as exc:  # noqa: BLE001 - a read-only data dir: the Dagster UI just will not link here
            print(f"note: could not record the explorer's address in the data directory ({exc})", file=sys.stderr)

    import secrets

    token = None if loopback else secrets.token_urlsafe(24)  # every request, reading or writing, needs it
    app = create_app(
        live,
        loopback_only=loopback,
        public_url=url,
        on_start=started,
        on_stop=lambda: clear_status(settings.data_dir),
        bind_host=args.host,
        token=token,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="on")
    )
    print(f"Explorer on {url} — {len(explorer.index)} tracks from {settings.data_dir}; Ctrl-C stops it", flush=True)
    if token:
        print(f"access token: {token}\nopen {url}/?token={token}", flush=True)
    from threadpoolctl import threadpool_limits

    # one BLAS thread per request thread: with BLAS's own thread per core, concurrent radio and path
    # queries slowed each other ~10× and timed out (benchmarks/bench_load.py, docs/explorer.md)
    with threadpool_limits(limits=1):
        server.run()
    return 0

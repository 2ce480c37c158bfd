"""The explorer's HTTP side: a Starlette app over ``web.explorer.Explorer``.

Read-only but for listening events: GET and HEAD, and ``POST /api/events`` which appends a play,
skip or like to the listening log (``web.listening``); nothing else is written but
``<data>/explorer.json`` (where a running explorer is found, see ``web.status``). Pages are plain HTML/JS/CSS shipped in
``music_pipeline/web/static/`` (no build step). JSON errors are ``{"error": "one line"}`` with 404
(unknown track or page) or 422 (bad parameter). Bound to loopback, the app also refuses requests
whose Host header is not a loopback name (a web page cannot reach it through DNS rebinding).
"""

from __future__ import annotations

import gzip
import json
import math
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from music_pipeline.playlists import formats as playlists
from music_pipeline.web import listening
from music_pipeline.web.audio import RETRY_AFTER_S, AudioUnavailable, audio_response
from music_pipeline.web.explorer import BadParameter, Explorer, LiveExplorer, NotFound, one_line

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
MAX_N = 100
MAX_LENGTH = 200
# API requests answered at once; past this a request gets 503 with Retry-After (each holds a thread
# of numpy/faiss work: more at once would only queue inside the process and grow its memory)
MAX_CONCURRENT_QUERIES = 16
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    ),
]


def _finite(obj):
    """NaN/inf → null: JSON has no such numbers and browsers reject them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


class ApiJSON(JSONResponse):
    def render(self, content) -> bytes:
        return json.dumps(_finite(content), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error(status: int, message: str) -> JSONResponse:
    return ApiJSON({"error": one_line(message)}, status_code=status)


# -- query parameters ------------------------------------------------------------------------
def _number(request: Request, name: str, kind, default, lo, hi, optional: bool = False):
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        if optional or default is not None:
            return default
        raise BadParameter(f"missing parameter {name}")
    try:
        value = kind(raw)
    except ValueError:
        raise BadParameter(
            f"{name} must be {'an integer' if kind is int else 'a number'} between {lo} and {hi}, got {raw!r}"
        ) from None
    if not (lo <= value <= hi) or (isinstance(value, float) and not math.isfinite(value)):
        raise BadParameter(f"{name} must be between {lo} and {hi}, got {raw!r}")
    return value


def _flag(request: Request, name: str) -> bool:
    raw = (request.query_params.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise BadParameter(f"{name} must be 1 or 0, got {raw!r}")


def _required(request: Request, name: str) -> str:
    raw = request.query_params.get(name)
    if raw is None or not raw.strip():
        raise BadParameter(f"missing parameter {name}")
    return raw


def _radio_args(request: Request) -> dict:
    return {
        "seed": _required(request, "seed"),
        "length": _number(request, "length", int, 20, 1, MAX_LENGTH),
        "bpm": _number(request, "bpm", float, None, 1.0, 1000.0, optional=True),
        "bpm_tolerance": _number(request, "bpm_tolerance", float, 8.0, 0.0, 1000.0),
        "energy": _number(request, "energy", float, None, 0.0, 1.0, optional=True),
        "energy_tolerance": _number(request, "energy_tolerance", float, 0.15, 0.0, 1.0),
        "pull": _number(request, "pull", float, 0.5, 0.0, 1.0),
        "harmonic": _flag(request, "harmonic"),
    }


def _path_args(request: Request) -> dict:
    return {
        "a": _required(request, "from"),
        "b": _required(request, "to"),
        "length": _number(request, "length", int, 10, 1, MAX_LENGTH),
        "harmonic": _flag(request, "harmonic"),
    }


def _similar_args(request: Request) -> dict:
    return {
        "track": _required(request, "track"),
        "n": _number(request, "n", int, 10, 1, MAX_N),
        "diverse": _number(request, "diverse", float, None, 0.0, 1.0, optional=True),
    }


def create_app(
    explorer: Explorer | LiveExplorer,
    loopback_only: bool = True,
    public_url: str | None = None,
    on_start=None,
    on_stop=None,
    bind_host: str | None = None,
    token: str | None = None,
) -> Starlette:
    """``loopback_only``: answer only requests addressed to a loopback name (plus ``bind_host``,
    e.g. 127.0.0.2). ``token``: every request must carry it (``web.listening.TokenGate``). ``on_start``/``on_stop``: called when the server starts and stops serving
    (uvicorn runs the lifespan's end before it re-raises a SIGTERM, so ``on_stop`` also runs on
    ``kill``)."""
    current = explorer.get if isinstance(explorer, LiveExplorer) else (lambda: explorer)

    @asynccontextmanager
    async def lifespan(app):
        if on_start:
            on_start()
        try:
            yield
        finally:
            if on_stop:
                on_stop()

    queries = threading.BoundedSemaphore(MAX_CONCURRENT_QUERIES)

    def api(handler, limited: bool = True):
        async def endpoint(request: Request):
            if limited and not queries.acquire(blocking=False):
                busy = error(503, f"{MAX_CONCURRENT_QUERIES} queries are running: try again in a moment")
                busy.headers["Retry-After"] = str(RETRY_AFTER_S)
                return busy
            try:  # the work is numpy/faiss/parquet: off the event loop
                return await run_in_threadpool(lambda: handler(request, current()))
            except NotFound as exc:
                return error(404, str(exc))
            except BadParameter as exc:
                return error(422, str(exc))
            finally:
                if limited:
                    queries.release()

        return endpoint

    def info(request, ex):
        return ApiJSON({**ex.info(), "url": public_url})

    def search(request, ex):
        q = request.query_params.get("q", "")
        return ApiJSON(ex.search(q, _number(request, "limit", int, 20, 1, MAX_N)))

    def similar(request, ex):
        return ApiJSON(ex.similar(**_similar_args(request)))

    def compare(request, ex):
        return ApiJSON(ex.compare(_required(request, "a"), _required(request, "b")))

    def radio(request, ex):
        return ApiJSON(ex.radio(**_radio_args(request)))

    def path(request, ex):
        return ApiJSON(ex.path(**_path_args(request)))

    def track(request, ex):
        return ApiJSON(ex.track(request.path_params["key"]))

    def versions(request, ex):
        return ApiJSON(ex.versions(request.path_params["key"]))

    def map_(request, ex):
        cache = ex.map_bodies
        if "body" not in cache:
            m = ex.map_points()
            body = json.dumps(_finite({k: v for k, v in m.items() if k != "by_key"}), separators=(",", ":")).encode()
            cache["gzip"], cache["body"] = gzip.compress(body, 5), body
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(
                cache["gzip"],
                media_type="application/json",
                headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
            )
        return Response(cache["body"], media_type="application/json", headers={"Vary": "Accept-Encoding"})

    def playlist(kind: str, fmt: str):
        def handler(request, ex):
            if kind == "radio":
                args = _radio_args(request)
                answer = ex.radio(**args)
                head, tail = [answer["query"]["track"]], []
                title = f"Radio from {ex.summary(ex.position(head[0]))['title']}"
            elif kind == "path":
                answer = ex.path(**_path_args(request))
                head, tail = [answer["from"]["track"]], [answer["to"]["track"]]
                title = (
                    f"From {ex.summary(ex.position(head[0]))['title']} to {ex.summary(ex.position(tail[0]))['title']}"
                )
            else:
                answer = ex.similar(**_similar_args(request))
                head, tail = [answer["query"]["track"]], []
                title = f"Like {ex.summary(ex.position(head[0]))['title']}"
            keys = head + [r["track"] for r in answer["results"]] + tail
            entries = ex.entries(keys)
            render, media = (
                (playlists.m3u8, playlists.M3U8_TYPE) if fmt == "m3u8" else (playlists.xspf, playlists.XSPF_TYPE)
            )
            name = playlists.filename(title, fmt)
            return Response(
                render(title, entries),
                media_type=media,
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )

        return handler

    def library_playlists(request, ex):
        return ApiJSON(ex.library_playlists())

    def library_playlist_file(fmt: str):
        def handler(request, ex):
            title, keys = ex.library_playlist(request.path_params["number"])
            render, media = (
                (playlists.m3u8, playlists.M3U8_TYPE) if fmt == "m3u8" else (playlists.xspf, playlists.XSPF_TYPE)
            )
            return Response(
                render(title, ex.entries(keys)),
                media_type=media,
                headers={"Content-Disposition": f'attachment; filename="{playlists.filename(title, fmt)}"'},
            )

        return handler

    def audio(request, ex):
        key = request.path_params["key"]
        path = ex.audio_file(key)
        try:
            return audio_response(path, ex.delivery(key, path), request.headers.get("range"), request.method)
        except AudioUnavailable as exc:
            response = error(exc.status, str(exc))
            if exc.retry_after is not None:
                response.headers["Retry-After"] = str(exc.retry_after)
            return response
        except RuntimeError as exc:  # libsndfile cannot open it after all
            return error(415, f"track {key} cannot be decoded for the browser: {exc}")

    def recommend(request, ex):
        return ApiJSON(
            listening.recommendations(ex, _required(request, "user"), _number(request, "n", int, 20, 1, MAX_N))
        )

    def listener_radio(request, ex):
        length = _number(request, "length", int, 20, 1, MAX_LENGTH)
        return ApiJSON(listening.recommendations(ex, _required(request, "user"), length, radio=True))

    def listeners(request, ex):
        return ApiJSON(listening.listeners(ex))

    async def events(request: Request):
        if not listening.same_origin(request):
            return error(403, "events are accepted from this explorer's own pages only")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return error(415, "send the event as application/json")
        try:
            body = await request.json()
        except ValueError:
            return error(422, "the body is not JSON")
        try:
            return ApiJSON(await run_in_threadpool(lambda: listening.record_event(current(), body)))
        except BadParameter as exc:
            return error(422, str(exc))

    async def index(request):
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def not_found(request, exc: HTTPException):
        if exc.status_code == 405:
            return error(
                405,
                f"{request.method} is not allowed: the explorer is read-only (GET and HEAD) but for POST /api/events",
            )
        if exc.status_code == 404:
            return error(404, f"no such page: {request.url.path}")
        return error(exc.status_code, exc.detail)

    routes = [
        Route("/", index),
        Route("/api/info", api(info)),
        Route("/api/search", api(search)),
        Route("/api/similar", api(similar)),
        Route("/api/compare", api(compare)),
        Route("/api/radio", api(radio)),
        Route("/api/path", api(path)),
        Route("/api/track/{key}", api(track)),
        Route("/api/versions/{key}", api(versions)),
        Route("/api/map", api(map_)),
        Route("/api/recommend", api(recommend)),
        Route("/api/listener-radio", api(listener_radio)),
        Route("/api/listeners", api(listeners)),
        Route("/api/events", events, methods=["POST"]),
        Route("/api/playlists", api(library_playlists)),
        *[Route(f"/api/playlists/{{number:int}}.{fmt}", api(library_playlist_file(fmt))) for fmt in ("m3u8", "xspf")],
        *[
            Route(f"/api/{kind}.{fmt}", api(playlist(kind, fmt)))
            for kind in ("radio", "path", "similar")
            for fmt in ("m3u8", "xspf")
        ],
        Route("/audio/{key}", api(audio, limited=False)),  # audio has its own cap on transcodes
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if token:
        middleware.insert(0, Middleware(listening.TokenGate, token=token))
    if loopback_only:
        middleware.insert(
            0, Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS + ([bind_host] if bind_host else []))
        )
    return Starlette(
        routes=routes, middleware=middleware, exception_handlers={HTTPException: not_found}, lifespan=lifespan
    )


class SecurityHeaders:
    """Pure ASGI (no buffering of streamed audio): a few headers on every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)

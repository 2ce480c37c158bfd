"""The explorer's listening side: recording plays, skips and likes, "For you" and a listener's radio.

- ``POST /api/events`` ``{"user", "track", "event": "play"|"skip"|"like", "seconds_played",
  "finished"}`` appends one event to the log (``listening/history.py``). Only a JSON body is
  accepted (a cross-site form cannot send one without a CORS preflight, which is never granted),
  and a request whose ``Origin`` is not this server's is refused.
- ``GET /api/recommend?user=NAME&n=20`` and ``GET /api/listener-radio?user=NAME&length=20``
  answer like ``music-pipeline recommend [--radio] --json``; ``GET /api/listeners`` names the
  profiles in the log.

Profiles are names chosen on the page; there are no passwords. On loopback nothing more is asked;
bound to any other address every request needs the access token ``serve`` prints at start
(``TokenGate``).
"""

from __future__ import annotations

import hmac
import json
import time
from urllib.parse import parse_qs, urlsplit

from music_pipeline.listening.history import Event, EventLog, HistoryError, check_user
from music_pipeline.web.explorer import BadParameter

TOKEN_COOKIE = "mp_token"
TOKEN_PARAM = "token"


def record_event(ex, body) -> dict:
    """Validate one event sent by the page and append it; the track must be in the index."""
    if not isinstance(body, dict):
        raise BadParameter("the body must be a JSON object {user, track, event, seconds_played, finished}")
    track = body.get("track")
    if not isinstance(track, str) or ex.index.position(track) is None:
        raise BadParameter(f"no track with key {track!r}")
    try:
        event = Event(
            user=check_user(body.get("user")),
            track=track,
            ts=float(body["ts"]) if isinstance(body.get("ts"), (int, float)) else time.time(),
            event=str(body.get("event")),
            seconds_played=None if body.get("seconds_played") is None else float(body["seconds_played"]),
            finished=bool(body["finished"]) if body.get("finished") is not None else None,
            source="explorer",
        )
        added = EventLog(ex.data_dir).append([event])
    except (HistoryError, TypeError, ValueError) as exc:
        raise BadParameter(str(exc)) from None
    return {"recorded": bool(added), "id": event.id}


def listeners(ex) -> dict:
    try:
        events = EventLog(ex.data_dir).read().events
    except HistoryError:
        events = []
    return {"listeners": sorted({e.user for e in events})}


def recommendations(ex, user: str, n: int, radio: bool = False) -> dict:
    from music_pipeline.listening import service

    try:
        user = check_user(user)
    except HistoryError as exc:
        raise BadParameter(str(exc)) from None
    lib = ex.listening_library()
    answer = (service.listener_radio if radio else service.recommend)(ex.data_dir, user, n, lib=lib)
    levels = ex.facts.levels()
    for r in answer["results"]:
        pos = ex.position(r["track"])
        r["label"] = ex.tracks["label"].iloc[pos]
        r["level"] = levels.get(r["track"], (None, None))[0]
        r["relpath"] = ex.tracks["relpath"].iloc[pos]
    return answer


class TokenGate:
    """Pure ASGI: every request must carry the access token — ``Authorization: Bearer T``, the
    ``mp_token`` cookie, or ``?token=T`` (which then sets the cookie, so the page's scripts, styles
    and audio need nothing more). Others get 401."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token.encode()

    def _ok(self, value) -> bool:
        return bool(value) and hmac.compare_digest(value.encode() if isinstance(value, str) else value, self.token)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        cookies = {}
        for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            cookies[name] = value
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(TOKEN_PARAM, [""])[0]
        from_query = self._ok(query)
        if not (self._ok(auth.removeprefix("Bearer ").strip()) or self._ok(cookies.get(TOKEN_COOKIE)) or from_query):
            body = json.dumps(
                {
                    "error": "this explorer needs its access token (printed by `music-pipeline serve`): open the URL it printed"
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_cookie(message):
            if from_query and message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def same_origin(request) -> bool:
    """No Origin (a non-browser client) or an Origin naming this server."""
    origin = request.headers.get("origin")
    if not origin:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")

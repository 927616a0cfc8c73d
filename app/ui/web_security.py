"""What `rlhf serve` adds to Streamlit's own web server (app/ui/rlhf_app.py mounts it).

- Response headers on every HTTP response: the app may not be framed by another site
  (clickjacking), no MIME sniffing, no Referer sent to other hosts.
- POST /_rlhf/session: the page hands the server a login token once, and the server sets
  it as an HttpOnly cookie, so scripts in the page can never read it afterwards. The
  request must come from a page of this same origin, and the token must be live in the
  database; an empty token clears the cookie (logout). The page names its hand-over (a
  random key); the server remembers the keys it has acted on, and the app stops rendering
  the hand-over once its key is among them (acknowledged), with no extra rerun.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "rlhf_session"
SESSION_PATH = "/_rlhf/session"
MAX_BODY = 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """Pure ASGI middleware (works for streamed responses too): adds SECURITY_HEADERS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _same_origin(request: Request) -> bool:
    """The browser says the request comes from a page of this very origin."""
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if not origin or not host:
        return False
    if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
        return False
    return origin in (f"http://{host}", f"https://{host}")


def _token_is_live(token: str) -> int | None:
    """Seconds the cookie may live, or None when the token is not a live session."""
    from labeling.accounts import web_sessions
    from labeling.db import make_sessionmaker

    global _sessions
    if _sessions is None:
        _sessions = make_sessionmaker()
    with _sessions() as s:
        s.connection(execution_options={"sqlite_deferred": True})  # a read: no write lock
        if web_sessions.resolve(s, token) is None:
            return None
    return int(web_sessions.DEFAULT_TTL.total_seconds())


_sessions = None
_acknowledged: OrderedDict[str, None] = OrderedDict()  # hand-over keys acted on, oldest first
_acknowledged_lock = threading.Lock()
MAX_ACKNOWLEDGED = 10_000  # a page that never reruns leaves its key here until it is pushed out


def _acknowledge(key: object) -> None:
    if not isinstance(key, str) or not 0 < len(key) <= 64:
        return
    with _acknowledged_lock:
        _acknowledged[key] = None
        while len(_acknowledged) > MAX_ACKNOWLEDGED:
            _acknowledged.popitem(last=False)


def acknowledged(key: str) -> bool:
    """The server has set (or cleared) the cookie for the hand-over named `key`; forgets it."""
    with _acknowledged_lock:
        return _acknowledged.pop(key, False) is None


async def session_cookie(request: Request) -> Response:
    if not _same_origin(request):
        return Response("cross-origin request refused", status_code=403)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return Response("expected application/json", status_code=415)
    body = await request.body()
    if len(body) > MAX_BODY:
        return Response("request too large", status_code=413)
    try:
        payload = json.loads(body)
        token, key = payload.get("token") or "", payload.get("key")
    except (ValueError, AttributeError):
        return Response('expected {"token": ...}', status_code=400)
    if not isinstance(token, str):
        return Response("expected a string token", status_code=400)
    secure = request.headers.get("origin", "").startswith("https://")
    response = Response(status_code=204)
    if not token:  # logout: the server already ended the token, this drops the copy
        response.delete_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
        _acknowledge(key)
        return response
    max_age = await run_in_threadpool(_token_is_live, token)
    if max_age is None:
        return Response("not a live session", status_code=403)
    response.set_cookie(
        COOKIE, token, max_age=max_age, path="/", secure=secure, httponly=True, samesite="strict"
    )
    _acknowledge(key)
    return response


ROUTES = [Route(SESSION_PATH, session_cookie, methods=["POST"])]

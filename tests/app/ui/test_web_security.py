"""POST /_rlhf/session called as the ASGI server calls it: the hand-over's key is
acknowledged only when the server acted on the request."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

from starlette.requests import Request

from app.ui import web_security


def post(body: dict, origin: str | None = "http://127.0.0.1:8501") -> tuple[int, str]:
    raw = json.dumps(body).encode()
    headers = [(b"host", b"127.0.0.1:8501"), (b"content-type", b"application/json")]
    if origin:
        headers.append((b"origin", origin.encode()))
    scope = {"type": "http", "method": "POST", "path": web_security.SESSION_PATH,
             "headers": headers, "query_string": b""}  # fmt: skip

    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    # a thread of its own: a Playwright test before this one may leave a loop running here
    with ThreadPoolExecutor(1) as pool:
        response = pool.submit(
            asyncio.run, web_security.session_cookie(Request(scope, receive))
        ).result()
    return response.status_code, response.headers.get("set-cookie", "")


def test_a_logout_hand_over_clears_the_cookie_and_is_acknowledged_once():
    status, cookie = post({"token": "", "key": "session-cookie-1"})
    assert status == 204 and cookie.startswith(f"{web_security.COOKIE}=") and "Max-Age=0" in cookie
    assert web_security.acknowledged("session-cookie-1")
    assert not web_security.acknowledged("session-cookie-1")


def test_a_refused_hand_over_is_not_acknowledged():
    assert post({"token": "", "key": "from-elsewhere"}, origin="http://evil.example")[0] == 403
    assert post({"token": "", "key": "no-origin"}, origin=None)[0] == 403
    assert not web_security.acknowledged("from-elsewhere")
    assert not web_security.acknowledged("no-origin")


def test_odd_keys_are_ignored_and_old_ones_pushed_out(monkeypatch):
    monkeypatch.setattr(web_security, "MAX_ACKNOWLEDGED", 3)
    assert post({"token": "", "key": ["not", "a", "string"]})[0] == 204
    assert post({"token": "", "key": "x" * 65})[0] == 204
    assert not web_security.acknowledged("x" * 65)
    for n in range(5):
        post({"token": "", "key": f"k{n}"})
    assert [web_security.acknowledged(f"k{n}") for n in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]

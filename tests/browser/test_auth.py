"""Logging in, and what a labeler can reach: driven in a real Chromium against `rlhf serve`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from sqlalchemy import func, select

from labeling.accounts import login_throttle, users, web_sessions
from labeling.models import WebSession
from tests.browser.conftest import (
    ADMIN,
    LABELER,
    LABELER2,
    close_notice,
    goto,
    is_logged_in,
    login,
    main_area,
    nav_titles,
    open_page,
    shot,
    sidebar,
    wait_idle,
)

pytestmark = pytest.mark.browser

# url path -> the sidebar title an admin (or engineer) sees for it (app/ui/navigation.py)
ADMIN_ONLY = {
    "admin_users": "Users",
    "admin_projects": "Projects",
    "admin_import": "Import",
    "snapshots": "Snapshots",
}
# What an admin page shows that no labeler page has: tables, uploads, editors.
ADMIN_WIDGETS = (
    '[data-testid="stDataFrame"], [data-testid="stDataEditor"], [data-testid="stTable"], '
    '[data-testid="stFileUploader"]'
)


def test_login_and_logout(serve, page):
    server = serve()
    goto(page, server)
    shot(page, "login-form")
    assert nav_titles(page) == [] or nav_titles(page) == ["Log in"]
    login(page, server, *LABELER)
    shot(page, "logged-in")
    assert "Signed in as labeler (labeler)" in sidebar(page).inner_text()
    titles = nav_titles(page)
    assert {"Compare", "Write"} <= set(titles)
    assert not set(ADMIN_ONLY.values()) & set(titles), titles
    sidebar(page).get_by_role("button", name="Log out").click()
    main_area(page).get_by_role("button", name="Log in").wait_for()
    wait_idle(page)
    assert not is_logged_in(page)
    shot(page, "logged-out")


@pytest.mark.parametrize(
    "name, password",
    [("labeler", "wrong-password"), ("nobody", "demo-labeler"), ("labeler", "")],
    ids=["wrong-password", "unknown-user", "empty-password"],
)
def test_wrong_password_is_refused(serve, page, name, password):
    server = serve()
    login(page, server, name, password, expect_ok=False)
    main = main_area(page)
    main.get_by_text("Wrong user name or password.").wait_for()
    shot(page, "refused")
    assert not is_logged_in(page)
    # still the login page, and nothing of the labeler pages
    assert main.get_by_role("button", name="Log in").is_visible()
    assert "Compare" not in nav_titles(page)
    # the right password still works afterwards
    login(page, server, *LABELER)
    assert is_logged_in(page)


def test_hostile_text_on_the_login_page_stays_text(serve, page):
    server = serve()
    payload = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    login(page, server, payload, payload, expect_ok=False)
    main_area(page).get_by_text("Wrong user name or password.").wait_for()
    wait_idle(page)
    shot(page, "refused")
    assert page.watch.dialogs == []
    assert page.watch.foreign_requests(server.allowed_origins) == []
    assert main_area(page).locator("img").count() == 0


def _assert_no_admin_page(page, path: str) -> None:
    main = main_area(page)
    body = page.locator("body").inner_text()
    assert "Signed in as labeler (labeler)" in body, f"/{path}: lost the labeler's session?"
    assert main.locator(ADMIN_WIDGETS).count() == 0, f"/{path} rendered an admin widget"
    headings = main.locator("h1, h2, h3").all_inner_texts()
    assert not {h.strip() for h in headings} & set(ADMIN_ONLY.values()), (path, headings)
    assert not set(ADMIN_ONLY.values()) & set(nav_titles(page))
    assert f"/{path}" not in page.url, f"the browser still shows /{path}: {page.url}"


def test_labeler_cannot_open_admin_pages_by_url(serve, new_page):
    server = serve()
    # Control: the admin reaches these pages (no "Page not found", a link in the sidebar).
    admin = new_page()
    login(admin, server, *ADMIN)
    assert set(ADMIN_ONLY.values()) <= set(nav_titles(admin))
    for path in ADMIN_ONLY:
        goto(admin, server, path)  # a reload in the same tab keeps the Streamlit session
        assert is_logged_in(admin)
        assert "Page not found" not in admin.locator("body").inner_text(), path
        assert f"/{path}" in admin.url

    page = new_page()
    # Not logged in at all: the URL gives the login form only.
    goto(page, server, "admin_users")
    shot(page, "anonymous-admin_users")
    close_notice(page)
    assert main_area(page).get_by_role("button", name="Log in").is_visible()
    assert main_area(page).locator(ADMIN_WIDGETS).count() == 0
    assert not is_logged_in(page)

    login(page, server, *LABELER)
    for path in ADMIN_ONLY:
        # 1. typing the URL (a full page load; Streamlit keeps the session of the tab)
        goto(page, server, path)
        wait_idle(page)
        shot(page, f"typed-{path}")
        # Streamlit's answer to a page not in st.navigation is the default page (which forwards
        # to the labeler's first page) and a "Page not found" notice; the notice is Streamlit's
        # and may be gone by the time the forward has run, so only what the labeler can see and
        # reach is asserted.
        _assert_no_admin_page(page, path)
        close_notice(page)
        # 2. client-side navigation to it, as a crafted link would do
        page.evaluate(
            "p => { history.pushState({}, '', '/' + p); dispatchEvent(new PopStateEvent('popstate')); }",
            path,
        )
        wait_idle(page)
        shot(page, f"pushed-{path}")
        _assert_no_admin_page(page, path)
    # the labeler's own pages have routes too: /compare is found (not the fallback page)
    goto(page, server, "compare")
    wait_idle(page)
    assert "Page not found" not in page.locator("body").inner_text()
    assert "/compare" in page.url
    assert page.watch.dialogs == []


# --- sessions that end (issue 9) -----------------------------------------------------------


def _session_cookie(page, server) -> dict:
    """The login cookie as the browser holds it, once the page has handed it to the server."""
    for _ in range(100):
        found = [c for c in page.context.cookies(server.url) if c["name"] == "rlhf_session"]
        if found and found[0]["value"]:
            return found[0]
        page.wait_for_timeout(100)
    raise AssertionError(f"no rlhf_session cookie: {page.context.cookies(server.url)}")


def _click_something(page) -> None:
    """A person's next click: open another page from the sidebar (a rerun, same session)."""
    link = page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Leaderboard")
    link.click()
    wait_idle(page)


def test_the_cookie_is_httponly_and_a_reload_keeps_the_login(serve, page):
    server = serve()
    login(page, server, *LABELER)
    cookie = _session_cookie(page, server)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert "rlhf_session" not in page.evaluate("document.cookie")  # no script can read it
    assert cookie["value"] not in page.content()
    goto(page, server)  # a reload: a new Streamlit session, logged in by the cookie alone
    assert "Signed in as labeler (labeler)" in sidebar(page).inner_text()
    assert page.watch.foreign_requests(server.allowed_origins) == []


def test_logout_in_one_tab_ends_the_other_tab_and_a_copied_cookie(serve, browser, new_page):
    server = serve()
    first = new_page()
    login(first, server, *LABELER)
    cookie = _session_cookie(first, server)
    second = first.context.new_page()  # another tab of the same browser
    goto(second, server)
    assert is_logged_in(second)
    thief = new_page()  # someone else's browser with a copy of the cookie
    thief.context.add_cookies([{k: cookie[k] for k in ("name", "value", "domain", "path")}])
    goto(thief, server)
    assert "Signed in as labeler (labeler)" in sidebar(thief).inner_text()

    sidebar(first).get_by_role("button", name="Log out").click()
    main_area(first).get_by_role("button", name="Log in").wait_for()
    # The other tab and the thief are still showing the app; their next click ends it.
    for other in (second, thief):
        assert is_logged_in(other)
        _click_something(other)
        main_area(other).get_by_role("button", name="Log in").wait_for()
        assert not is_logged_in(other)
        assert "Your session has ended" in main_area(other).inner_text()
    goto(thief, server)  # nor does a reload with the copied cookie bring it back
    assert not is_logged_in(thief)
    with server.Session() as s:
        assert s.scalar(select(func.count()).select_from(WebSession)) == 0


def test_deactivation_ends_a_live_session_and_reactivation_does_not_revive_it(serve, page):
    server = serve()
    login(page, server, *LABELER)
    cookie = _session_cookie(page, server)
    with server.Session.begin() as s:
        users.set_active(s, "labeler", False)
    _click_something(page)
    main_area(page).get_by_role("button", name="Log in").wait_for()
    assert not is_logged_in(page)
    with server.Session.begin() as s:
        users.set_active(s, "labeler", True)
    page.context.add_cookies([{k: cookie[k] for k in ("name", "value", "domain", "path")}])
    goto(page, server)  # the old cookie, back in the browser, logs nobody in
    assert not is_logged_in(page)
    login(page, server, *LABELER)  # a fresh login works again
    assert is_logged_in(page)


def test_changing_ones_password_ends_the_other_sessions(serve, new_page):
    server = serve()
    mine, other = new_page(), new_page()
    login(mine, server, *LABELER)
    login(other, server, *LABELER)
    open_page(mine, "Account")
    main = main_area(mine)
    main.get_by_role("textbox", name="Current password").fill(LABELER[1])
    main.get_by_role("textbox", name="New password", exact=True).fill("a-much-longer-secret")
    main.get_by_role("textbox", name="New password again").fill("a-much-longer-secret")
    main.get_by_role("button", name="Change password").click()
    main.get_by_text("Password changed.").wait_for()
    wait_idle(mine)
    _click_something(other)
    main_area(other).get_by_role("button", name="Log in").wait_for()
    _click_something(mine)  # this tab carries on, with a fresh token
    assert is_logged_in(mine)
    goto(mine, server)  # and its new cookie works after a reload
    assert is_logged_in(mine)
    login(other, server, "labeler", LABELER[1], expect_ok=False)
    main_area(other).get_by_text("Wrong user name or password.").wait_for()
    login(other, server, "labeler", "a-much-longer-secret")


def _fail_until_throttled(page, server, name: str) -> int:
    """Wrong passwords for `name` until the login page says to wait; how many it took."""
    for attempt in range(1, 3 * login_throttle.FREE_PER_ACCOUNT):
        login(page, server, name, "wrong-password!", expect_ok=False)
        text = main_area(page).inner_text()
        if "Too many attempts, try again in" in text:
            assert "Wrong user name" not in text
            return attempt
        assert "Wrong user name or password." in text
    raise AssertionError(f"{name}: never throttled")


def test_too_many_wrong_passwords_are_throttled_without_naming_the_account(serve, page):
    server = serve()
    # The same answer, after the same number of tries, for a real and a made-up account.
    assert _fail_until_throttled(page, server, "labeler") > login_throttle.FREE_PER_ACCOUNT
    assert _fail_until_throttled(page, server, "nobody-here") > login_throttle.FREE_PER_ACCOUNT
    with server.Session.begin() as s:  # more failures, as from another server process
        for _ in range(6):
            login_throttle.record_failure(s, name="labeler", address=None)
    login(page, server, *LABELER, expect_ok=False)  # the right password waits too
    main_area(page).get_by_text("Too many attempts, try again in").wait_for()
    assert not is_logged_in(page)
    login(page, server, *LABELER2)  # another account from the same address is not locked
    assert is_logged_in(page)


@pytest.mark.parametrize("path", ["", "_stcore/health", "compare"])
def test_security_headers_on_every_response(serve, path):
    server = serve()
    with urllib.request.urlopen(f"{server.url}/{path}", timeout=10) as resp:
        headers = resp.headers
    assert headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_the_cookie_route_refuses_other_origins_and_dead_tokens(serve):
    server = serve()
    with server.Session.begin() as s:
        token = web_sessions.start(s, user_id=users.get_user(s, "labeler").id)

    def post(origin: str | None, token: str) -> tuple[int, str]:
        headers = {"Content-Type": "application/json", **({"Origin": origin} if origin else {})}
        request = urllib.request.Request(
            f"{server.url}/_rlhf/session", data=json.dumps({"token": token}).encode(),
            headers=headers, method="POST",
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, resp.headers.get("Set-Cookie", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Set-Cookie", "")

    assert post("http://evil.example", token) == (403, "")
    assert post(None, token) == (403, "")
    assert post(server.url, "not-a-token") == (403, "")
    status, cookie = post(server.url, token)
    assert status == 204 and "HttpOnly" in cookie and "SameSite=strict" in cookie

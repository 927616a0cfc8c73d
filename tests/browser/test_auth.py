"""Logging in, and what a labeler can reach: driven in a real Chromium against `rlhf serve`."""

from __future__ import annotations

import pytest

from tests.browser.conftest import (
    ADMIN,
    LABELER,
    close_notice,
    goto,
    is_logged_in,
    login,
    main_area,
    nav_titles,
    shot,
    sidebar,
    wait_idle,
)

pytestmark = pytest.mark.browser

# url path -> the sidebar title an admin (or engineer) sees for it (app/ui/main.py)
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
        # Streamlit's own answer to a page not in st.navigation: a "Page not found" notice,
        # then the first page of the labeler's navigation runs instead.
        assert "Page not found" in page.locator("body").inner_text(), path
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
    assert page.watch.dialogs == []

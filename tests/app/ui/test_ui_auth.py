"""The login, account and users pages through Streamlit's AppTest, on a migrated SQLite
database: throttled logins, sessions that end at the next click, changing and resetting
passwords."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import app.ui.db
from app.ui import state
from labeling.accounts import login_throttle, users, web_sessions
from labeling.db import make_engine, make_sessionmaker

MAIN = Path(__file__).resolve().parents[3] / "app" / "ui" / "main.py"
PASSWORD = "labeler-password"
NEW = "a-new-long-secret"


@pytest.fixture
def Session(sqlite_url):  # noqa: N802
    app.ui.db._sessionmaker.clear()  # the UI's engine is cached per process
    engine = make_engine(sqlite_url)
    Session = make_sessionmaker(engine)  # noqa: N806
    with Session.begin() as s:
        users.add_user(s, name="admin", role="admin", password="admin-password")
        users.add_user(s, name="lab", role="labeler", password=PASSWORD)
    yield Session
    app.ui.db._sessionmaker.clear()
    engine.dispose()


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def app_test(tmp_path, Session):
    # A copy of the real main.py: next to app/ui/pages/ AppTest would take that folder for
    # Streamlit's old multipage layout and lose st.navigation's pages on the second run.
    script = tmp_path / "main.py"
    script.write_text(MAIN.read_text(encoding="utf-8"), encoding="utf-8")
    return lambda: run(AppTest.from_file(str(script), default_timeout=30))


def log_in(at: AppTest, name: str, password: str) -> AppTest:
    inputs = {t.label: t for t in at.text_input}
    inputs["User name"].input(name)
    inputs["Password"].input(password)
    at.button[0].click()  # the form's submit button
    return run(at)


def texts(at: AppTest) -> list[str]:
    return [m.value for m in (*at.error, *at.info, *at.success, *at.warning)]


def signed_in(at: AppTest) -> bool:
    return any("Signed in as" in m.value for m in at.sidebar.caption)


def test_login_then_session_ends_at_the_next_click_when_revoked(Session, app_test):
    at = log_in(app_test(), "lab", PASSWORD)
    assert signed_in(at)
    token = at.session_state[state.TOKEN]
    with Session() as s:
        assert web_sessions.resolve(s, token) is not None
    run(at)
    assert signed_in(at)  # still in on the next click
    with Session.begin() as s:  # elsewhere: an admin deactivates the account
        users.set_active(s, "lab", False)
    run(at)
    assert not signed_in(at)
    assert any("Your session has ended" in t for t in texts(at)), texts(at)
    with Session.begin() as s:
        users.set_active(s, "lab", True)
    run(at)
    assert not signed_in(at)  # reactivation does not revive this session


def test_the_token_stays_in_the_page_only_until_the_server_has_set_the_cookie(app_test):
    from app.ui import web_security

    at = log_in(app_test(), "lab", PASSWORD)
    token, key = at.session_state[state.COOKIE_PENDING]
    assert token == at.session_state[state.TOKEN]
    run(at)  # the browser has not posted it yet: the hand-over is rendered again
    assert at.session_state[state.COOKIE_PENDING] == (token, key)
    web_security._acknowledge(key)  # what POST /_rlhf/session does once it set the cookie
    run(at)
    assert state.COOKIE_PENDING not in at.session_state
    assert signed_in(at) and not web_security.acknowledged(key)  # each key is used once


def test_role_change_applies_at_the_next_click(Session, app_test):
    at = log_in(app_test(), "lab", PASSWORD)
    assert "Admin" not in str(at.sidebar)
    with Session.begin() as s:
        users.set_role(s, "lab", "admin")
    run(at)
    assert any("(admin)" in m.value for m in at.sidebar.caption)


@pytest.mark.parametrize("name", ["lab", "no-such-account"])
def test_too_many_attempts_says_wait_whether_or_not_the_account_exists(Session, app_test, name):
    at = app_test()
    for _ in range(login_throttle.FREE_PER_ACCOUNT):
        log_in(at, name, "wrong-password")
        assert [e.value for e in at.error] == ["Wrong user name or password."]
    for _ in range(login_throttle.FREE_PER_ACCOUNT):  # the waits double: soon one is hit
        errors = [e.value for e in log_in(at, name, "wrong-password").error]
        if errors != ["Wrong user name or password."]:
            break
    assert len(errors) == 1 and errors[0].startswith("Too many attempts, try again in ")
    assert errors[0].endswith(" s.")
    with Session.begin() as s:  # a longer lock, so that a slow machine cannot outwait it
        for _ in range(4):
            login_throttle.record_failure(s, name=name, address=None)
    errors = [e.value for e in log_in(at, name, PASSWORD).error]
    assert len(errors) == 1 and errors[0].startswith("Too many attempts, try again in ")
    assert not signed_in(at)


def test_change_own_password_keeps_this_tab_and_ends_the_others(Session, app_test):
    at = log_in(app_test(), "lab", PASSWORD)
    other = log_in(app_test(), "lab", PASSWORD)
    account = run(AppTest.from_string(
        "from app.ui.pages import account\naccount.render()\n", default_timeout=30
    ))  # fmt: skip
    account.session_state[state.TOKEN] = at.session_state[state.TOKEN]
    run(account)

    def submit(old: str, new: str, again: str) -> list[str]:
        fields = {t.label: t for t in account.text_input}
        fields["Current password"].input(old)
        fields["New password"].input(new)
        fields["New password again"].input(again)
        account.button[0].click()
        return texts(run(account))

    # one sentence each, and the form stays usable (shown through the inert renderer)
    assert "current password is wrong" in " ".join(submit("wrong-current", NEW, NEW))
    assert "two new passwords differ" in " ".join(submit(PASSWORD, NEW, NEW + "X"))
    assert "most common" in " ".join(submit(PASSWORD, "password1234", "password1234"))
    messages = submit(PASSWORD, NEW, NEW)
    assert any("Password changed" in m for m in messages), messages
    new_token = account.session_state[state.TOKEN]
    with Session() as s:
        assert web_sessions.resolve(s, new_token) is not None  # this tab carries on
        assert web_sessions.resolve(s, other.session_state[state.TOKEN]) is None
        assert users.authenticate(s, "lab", NEW) is not None
    run(other)
    assert not signed_in(other)


def test_admin_resets_another_users_password_but_not_their_own(Session):
    with Session.begin() as s:
        admin_id = users.get_user(s, "admin").id
        lab_id = users.get_user(s, "lab").id
        admin_token = web_sessions.start(s, user_id=admin_id)
        lab_token = web_sessions.start(s, user_id=lab_id)
    at = AppTest.from_string(
        "from app.ui.pages import admin_users\nadmin_users.render()\n", default_timeout=30
    )
    at.session_state[state.TOKEN] = admin_token
    run(at)
    at.selectbox(key="user-change-id").set_value(admin_id)
    run(at)
    assert not [b for b in at.button if b.key == f"user-{admin_id}-reset"]
    at.selectbox(key="user-change-id").set_value(lab_id)
    run(at)
    at.text_input(key=f"user-{lab_id}-password").input("123456789012")
    at.button(key=f"user-{lab_id}-reset").click()
    run(at)
    assert any("most common" in e.value for e in at.error)
    at.text_input(key=f"user-{lab_id}-password").input("reset-by-admin")
    at.button(key=f"user-{lab_id}-reset").click()
    run(at)
    assert any("logged out everywhere" in m.value for m in at.success)
    with Session() as s:
        assert web_sessions.resolve(s, lab_token) is None
        assert users.authenticate(s, "lab", "reset-by-admin") is not None
        assert web_sessions.resolve(s, admin_token) == admin_id


def test_single_sign_on_sessions_get_a_token_that_ends_too(Session, monkeypatch):
    from app.ui import auth

    with Session.begin() as s:
        users.add_user(s, name="sso@example.org", role="labeler", password=None)
    monkeypatch.setattr(auth, "oidc_identity", lambda: "sso@example.org")  # as st.login left it
    at = AppTest.from_string(
        "import streamlit as st\nfrom app.ui import auth\nuser = auth.current_user()\n"
        "st.write(user.name if user else 'nobody')\n",
        default_timeout=30,
    )
    assert [m.value for m in run(at).markdown] == ["sso@example.org"]
    token = at.session_state[state.TOKEN]
    with Session() as s:
        assert web_sessions.resolve(s, token) is not None
    with Session.begin() as s:
        users.set_active(s, "sso@example.org", False)
    assert [m.value for m in run(at).markdown] == ["nobody"]
    with Session.begin() as s:
        users.set_active(s, "sso@example.org", True)
    assert [m.value for m in run(at).markdown] == ["nobody"]  # not resumed without asking


def test_the_per_click_check_does_not_queue_behind_a_writer(Session):
    import time

    from sqlalchemy import text

    with Session.begin() as s:
        token = web_sessions.start(s, user_id=users.get_user(s, "lab").id)
    at = AppTest.from_string(
        "import streamlit as st\nfrom app.ui import auth\nuser = auth.current_user()\n"
        "st.write(user.name if user else 'nobody')\n",
        default_timeout=30,
    )
    at.session_state[state.TOKEN] = token
    engine = Session.kw["bind"]
    with engine.connect() as writer:  # a long import, say: holds SQLite's write lock
        writer.begin()
        writer.execute(text("UPDATE users SET active = active"))
        started = time.monotonic()
        assert [m.value for m in run(at).markdown] == ["lab"]
        assert time.monotonic() - started < 5  # not the 30 s busy timeout
        writer.rollback()


def test_expiry_ends_a_live_session_at_the_next_click(Session, app_test):
    from datetime import timedelta

    from sqlalchemy import update

    from labeling.models import WebSession, utcnow

    at = log_in(app_test(), "lab", PASSWORD)
    assert signed_in(at)
    with Session.begin() as s:  # twelve hours later
        s.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    run(at)
    assert not signed_in(at)
    assert any("Your session has ended" in t for t in texts(at))


def test_an_unreachable_database_at_login_is_one_sentence(tmp_path, monkeypatch):
    # Port 1 on loopback: nothing listens, so every connection is refused at once.
    monkeypatch.setenv("RLHF_DATABASE_URL", "postgresql+psycopg://nobody:secret@127.0.0.1:1/x")
    app.ui.db._sessionmaker.clear()
    script = tmp_path / "main.py"
    script.write_text(MAIN.read_text(encoding="utf-8"), encoding="utf-8")
    try:
        at = log_in(run(AppTest.from_file(str(script), default_timeout=30)), "admin", PASSWORD)
    finally:
        app.ui.db._sessionmaker.clear()
    shown = " ".join(texts(at))
    assert "cannot reach the database" in shown, shown
    assert "secret" not in shown and "Traceback" not in shown
    assert not signed_in(at)

"""Login tokens: looked up on every click, ended by logout, expiry, deactivation and a
password change, never revived by reactivation. Both databases."""

from datetime import timedelta

from sqlalchemy import func, select

from labeling.accounts import users, web_sessions
from labeling.models import Role, WebSession, utcnow


def test_token_logs_in_until_logout_expiry_or_deactivation(Session):
    with Session.begin() as s:
        uid = users.add_user(s, name="ann", role="labeler", password="long-password").id
        token = web_sessions.start(s, user_id=uid)
        other = web_sessions.start(s, user_id=uid, ttl=timedelta(seconds=1))
    with Session() as s:
        assert web_sessions.resolve(s, token) == uid
        assert token not in s.scalars(select(WebSession.token_hash)).all()  # only hashes stored
        assert web_sessions.resolve(s, token + "x") is None
        assert web_sessions.resolve(s, None) is None
        assert web_sessions.resolve(s, "x" * 10_000) is None
        assert web_sessions.resolve(s, other, now=utcnow() + timedelta(seconds=2)) is None
        assert web_sessions.resolve(s, token, now=utcnow() + web_sessions.DEFAULT_TTL) is None
    with Session.begin() as s:
        web_sessions.end(s, token)
    with Session() as s:
        assert web_sessions.resolve(s, token) is None


def test_lookup_reads_the_role_as_of_now(Session):
    with Session.begin() as s:
        uid = users.add_user(s, name="ann", role="labeler", password="long-password").id
        token = web_sessions.start(s, user_id=uid)
    with Session() as s:
        assert web_sessions.lookup(s, token) == (uid, "ann", Role.labeler)
    with Session.begin() as s:
        users.set_role(s, "ann", "admin")
    with Session() as s:
        assert web_sessions.lookup(s, token).role == Role.admin  # no new login needed


def test_deactivation_revokes_every_token_and_reactivation_revives_none(Session):
    with Session.begin() as s:
        ann = users.add_user(s, name="ann", role="labeler", password="long-password").id
        bob = users.add_user(s, name="bob", role="labeler", password="long-password").id
        tokens = [web_sessions.start(s, user_id=ann) for _ in range(3)]
        bobs = web_sessions.start(s, user_id=bob)
    with Session.begin() as s:
        users.set_active(s, "ann", False)
    with Session.begin() as s:
        users.set_active(s, "ann", True)
    with Session() as s:
        assert [web_sessions.resolve(s, t) for t in tokens] == [None, None, None]
        assert web_sessions.resolve(s, bobs) == bob  # nobody else's
        count = select(func.count()).select_from(WebSession).where(WebSession.user_id == ann)
        assert s.scalar(count) == 0
        assert users.authenticate(s, "ann", "long-password").id == ann  # may log in afresh


def test_password_change_revokes_every_token(Session):
    with Session.begin() as s:
        uid = users.add_user(s, name="ann", role="engineer", password="long-password").id
        old = web_sessions.start(s, user_id=uid)
    with Session.begin() as s:
        users.set_password(s, "ann", "another-long-one", current_password="long-password")
    with Session() as s:
        assert web_sessions.resolve(s, old) is None
        assert users.authenticate(s, "ann", "long-password") is None
        assert users.authenticate(s, "ann", "another-long-one").id == uid

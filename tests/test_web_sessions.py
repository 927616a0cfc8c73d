from datetime import timedelta

from sqlalchemy import select

from labeling import users, web_sessions
from labeling.models import WebSession, utcnow


def test_token_logs_in_until_logout_expiry_or_deactivation(Session):
    with Session.begin() as s:
        uid = users.add_user(s, name="ann", role="labeler", password="password1").id
        token = web_sessions.start(s, user_id=uid)
        other = web_sessions.start(s, user_id=uid, ttl=timedelta(seconds=1))
    with Session() as s:
        assert web_sessions.resolve(s, token) == uid
        assert token not in s.scalars(select(WebSession.token_hash)).all()  # only hashes stored
        assert web_sessions.resolve(s, token + "x") is None
        assert web_sessions.resolve(s, None) is None
        assert web_sessions.resolve(s, other, now=utcnow() + timedelta(seconds=2)) is None
    with Session.begin() as s:
        users.set_active(s, "ann", False)
    with Session() as s:
        assert web_sessions.resolve(s, token) is None
    with Session.begin() as s:
        users.set_active(s, "ann", True)
        web_sessions.end(s, token)
    with Session() as s:
        assert web_sessions.resolve(s, token) is None

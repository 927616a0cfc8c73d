"""Browser logins that survive a reload: a random token in a cookie, its hash in the database.

The UI checks the token on every rerun (`lookup`: one query on a unique index), so logging
out, expiry, deactivation and a password change end every tab and every copy of the
cookie at its next click. Tokens expire after `ttl`, counted from login.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from labeling.models import Role, User, WebSession, utcnow

DEFAULT_TTL = timedelta(hours=12)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start(session: Session, *, user_id: int, ttl: timedelta = DEFAULT_TTL) -> str:
    """A new token for this user (returned once; only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    session.add(WebSession(token_hash=_digest(token), user_id=user_id, expires_at=now + ttl))
    session.flush()
    return token


class SessionUser(NamedTuple):
    id: int
    name: str
    role: Role


def lookup(
    session: Session, token: str | None, *, now: datetime | None = None
) -> SessionUser | None:
    """The active user this token belongs to, as of now, or None (unknown, ended, expired,
    user deactivated). Cheap enough to run on every click."""
    if not token or len(token) > 200:
        return None
    row = session.execute(
        select(WebSession.expires_at, User.id, User.name, User.role, User.active)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == _digest(token))
    ).first()
    if row is None or not row.active or row.expires_at <= (now or utcnow()):
        return None
    return SessionUser(row.id, row.name, row.role)


def resolve(session: Session, token: str | None, *, now: datetime | None = None) -> int | None:
    """The id of the active user this token belongs to, or None."""
    user = lookup(session, token, now=now)
    return None if user is None else user.id


def end(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(WebSession).where(WebSession.token_hash == _digest(token)))


def end_all(session: Session, *, user_id: int) -> None:
    session.execute(delete(WebSession).where(WebSession.user_id == user_id))

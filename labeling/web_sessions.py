"""Browser logins that survive a reload: a random token in a cookie, its hash in the database.

The token is checked on every new browser session; logging out or deactivating the user
ends it. Tokens expire after `ttl`, counted from login.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from labeling.models import User, WebSession, utcnow

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


def resolve(session: Session, token: str | None, *, now: datetime | None = None) -> int | None:
    """The active user this token belongs to, or None (unknown, expired, user deactivated)."""
    if not token or len(token) > 200:
        return None
    row = session.execute(
        select(WebSession.user_id, WebSession.expires_at, User.active)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_hash == _digest(token))
    ).first()
    if row is None or not row.active or row.expires_at <= (now or utcnow()):
        return None
    return row.user_id


def end(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(WebSession).where(WebSession.token_hash == _digest(token)))


def end_all(session: Session, *, user_id: int) -> None:
    session.execute(delete(WebSession).where(WebSession.user_id == user_id))

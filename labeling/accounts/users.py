"""Accounts and roles. Passwords are hashed with argon2id and follow labeling.accounts.passwords.

Deactivating an account or changing its password ends all of its browser sessions
(web_sessions.end_all): reactivation does not bring old cookies back."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labeling.accounts import passwords, web_sessions
from labeling.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from labeling.kinds import ACCOUNT_NAME_RE, with_article
from labeling.models import Role, User

_hasher = PasswordHasher()
NAME_RE = ACCOUNT_NAME_RE  # e-mails fit, for SSO
MIN_PASSWORD = passwords.MIN_LENGTH


def _role(role: str | Role) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidInput(
            f"unknown role {role!r}: use one of {', '.join(r.value for r in Role)}"
        ) from None


def add_user(session: Session, *, name: str, role: str | Role, password: str | None) -> User:
    if not NAME_RE.match(name or ""):
        raise InvalidInput(
            f"invalid user name {name!r}: 1-64 letters, digits, '_', '.', '@', '+' or '-'"
        )
    role = _role(role)
    if password is not None:
        passwords.check(password, name=name)
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} already exists")
    user = User(name=name, role=role, password_hash=_hasher.hash(password) if password else None)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, name: str) -> User:
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no user named {name!r}")
    return user


def authenticate(session: Session, name: str, password: str) -> User | None:
    """The active user with this name and password, or None. Same answer for every failure."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None or not user.active or not user.password_hash:
        _hasher.hash("timing-equaliser")  # do the same work for unknown names
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def set_role(session: Session, name: str, role: str | Role) -> User:
    user = get_user(session, name)
    user.role = _role(role)
    return user


def set_active(session: Session, name: str, active: bool) -> User:
    user = get_user(session, name)
    user.active = active
    if not active:
        web_sessions.end_all(session, user_id=user.id)
    return user


def set_password(
    session: Session, name: str, password: str, *, current_password: str | None = None
) -> User:
    """A new password for `name`; every browser session of the account ends.

    With `current_password` (a user changing their own) that must be right first; an admin
    resetting someone else's passes None. The caller decides which applies.
    """
    user = get_user(session, name)
    if current_password is not None and not _verifies(user.password_hash, current_password):
        raise PermissionDenied("the current password is wrong")
    passwords.check(password, name=user.name)
    user.password_hash = _hasher.hash(password)
    web_sessions.end_all(session, user_id=user.id)
    session.flush()
    return user


def _verifies(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)))


def count_users(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def require_role(session: Session, user_id_or_name: int | str, *roles: Role) -> User:
    """Re-read the caller from the database and check the role: changes apply at the next action."""
    column = User.id if isinstance(user_id_or_name, int) else User.name
    user = session.scalar(select(User).where(column == user_id_or_name))
    if user is None or not user.active:
        raise PermissionDenied("unknown or deactivated account")
    if roles and user.role not in roles:
        allowed = " or ".join(r.value for r in roles)
        raise PermissionDenied(
            f"{user.name} is {with_article(user.role.value)}; this needs {allowed}"
        )
    return user

"""Login throttling per account name and per client address, with exponential backoff.

Every failed login counts against two keys: the name that was typed (whether or not such
an account exists, so the answer reveals nothing) and the client's address. After a few
free failures each further one doubles the wait, up to a cap; attempts made while a key is
locked are refused without checking the password and without counting. A successful
login clears the account's counter (not the address's: one good account must not reset a
guessing address). Counters are forgotten an hour after their last failure. The state is
in the database so that it holds across restarts and several server processes.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from labeling.accounts import users
from labeling.errors import RLHFError
from labeling.models import LoginThrottle, User, utcnow

FREE_PER_ACCOUNT = 5
FREE_PER_ADDRESS = 20  # several people may share one address (an office, a proxy)
FIRST_DELAY = timedelta(seconds=1)
MAX_DELAY = timedelta(minutes=15)
FORGET_AFTER = timedelta(hours=1)


class TooManyAttempts(RLHFError):
    def __init__(self, wait_s: int):
        self.wait_s = wait_s
        super().__init__(f"too many attempts, try again in {wait_s} s")


def _keys(name: str, address: str | None) -> list[tuple[str, int]]:
    # Hashed: people type passwords into the name field, and the table should not keep them.
    typed = hashlib.sha256(name.strip().lower().encode("utf-8")).hexdigest()
    where = hashlib.sha256((address or "local").encode("utf-8")).hexdigest()
    return [(f"user:{typed}", FREE_PER_ACCOUNT), (f"ip:{where}", FREE_PER_ADDRESS)]


def delay_after(failures: int, free: int) -> timedelta | None:
    """How long a key stays locked after its `failures`-th failure (None: not locked)."""
    if failures <= free:
        return None
    doublings = failures - free - 1
    if doublings >= math.log2(MAX_DELAY / FIRST_DELAY):
        return MAX_DELAY
    return FIRST_DELAY * 2**doublings


def wait_seconds(
    session: Session, *, name: str, address: str | None, now: datetime | None = None
) -> int:
    """Whole seconds until this name may try again from this address; 0 when it may now."""
    now = now or utcnow()
    keys = [key for key, _ in _keys(name, address)]
    latest = session.scalar(
        select(LoginThrottle.locked_until)
        .where(LoginThrottle.key.in_(keys), LoginThrottle.locked_until > now)
        .order_by(LoginThrottle.locked_until.desc())
        .limit(1)
    )
    return 0 if latest is None else max(1, math.ceil((latest - now).total_seconds()))


def record_failure(
    session: Session, *, name: str, address: str | None, now: datetime | None = None
) -> None:
    now = now or utcnow()
    # Rows idle for FORGET_AFTER mean nothing any more: sprayed names do not pile up.
    session.execute(delete(LoginThrottle).where(LoginThrottle.updated_at < now - FORGET_AFTER))
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for key, free in _keys(name, address):
        stale = LoginThrottle.updated_at < now - FORGET_AFTER
        # One atomic statement per key: concurrent failures from other processes all count.
        stmt = insert(LoginThrottle).values(key=key, failures=1, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "failures": case((stale, 1), else_=LoginThrottle.failures + 1),
                "updated_at": now,
            },
        ).returning(LoginThrottle.failures)
        failures = session.execute(stmt).scalar_one()
        delay = delay_after(failures, free)
        if delay is not None:
            session.execute(
                update(LoginThrottle)
                .where(LoginThrottle.key == key)
                .values(locked_until=now + delay)
            )


def record_success(session: Session, *, name: str) -> None:
    account_key = _keys(name, None)[0][0]
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == account_key))


def log_in(
    session: Session,
    *,
    name: str,
    password: str,
    address: str | None,
    now: datetime | None = None,
) -> User | None:
    """users.authenticate behind the throttle. None for a wrong name or password (the
    failure is recorded: the caller must commit even then); TooManyAttempts while locked."""
    now = now or utcnow()
    wait = wait_seconds(session, name=name, address=address, now=now)
    if wait:
        raise TooManyAttempts(wait)
    user = users.authenticate(session, name, password)
    if user is None:
        record_failure(session, name=name, address=address, now=now)
        return None
    record_success(session, name=name)
    return user

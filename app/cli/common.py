"""What every `rlhf` command shares: the database, the acting user, JSON or text output.

The CLI talks to the database directly, so whoever holds the database URL can do anything;
the role check here is the same guard the UI has, so that a labeler's shell account cannot
run engineer commands by accident. The acting account comes from --user or RLHF_USER.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from labeling.errors import NotFound, PermissionDenied

if TYPE_CHECKING:  # the ORM loads inside the commands that open the database
    from sqlalchemy.orm import Session

    from labeling.models import Role, User

_sessionmaker = None


def sessionmaker():
    global _sessionmaker
    if _sessionmaker is None:
        from labeling.db import make_engine, make_sessionmaker

        _sessionmaker = make_sessionmaker(make_engine())
    return _sessionmaker


@contextmanager
def transaction() -> Iterator[Session]:
    """One command, one transaction: it commits when the command succeeds."""
    with sessionmaker().begin() as session:
        yield session


def caller_name(args) -> str | None:
    return getattr(args, "user", None) or os.environ.get("RLHF_USER") or None


def acting_user(
    session: Session, args, *roles: Role, action: str | None = None, bootstrap: bool = False
) -> User | None:
    """The account running this command, checked against the roles that may do `action`
    (labeling/accounts/policies.py: `acting_user(s, args, action="snapshot.create")`), or
    against `roles` given directly; neither: any active account.

    bootstrap=True lets a command run with no account while the database has no users
    at all (creating the first admin, migrating an empty database).
    """
    from labeling.accounts.users import count_users, require_role

    if action is not None:
        from labeling.accounts import policies

        if roles:
            raise TypeError("acting_user: give an action or roles, not both")
        roles = policies.allowed(action)
    name = caller_name(args)
    if bootstrap and count_users(session) == 0:
        return None
    if not name:
        raise PermissionDenied(
            "who is running this? set RLHF_USER=NAME or pass --user NAME "
            f"(an account with role {' or '.join(r.value for r in roles) or 'any'})"
        )
    return require_role(session, name, *roles)


# Ids are 64-bit in both databases; a bigger number must not reach the driver (SQLite's raises
# OverflowError, psycopg's a DataError), and no row can have it anyway.
MAX_ID = 2**63 - 1


def id_arg(what: str):
    """An argparse type for the id of a `what` ("snapshot", "checkpoint"): a positive whole
    number; one beyond the 64-bit range gets the database's answer, "no snapshot with id N"."""

    def parse(text: str) -> int:
        text = text.strip()
        if not text.isascii() or not text.isdigit():
            raise argparse.ArgumentTypeError(
                f"a {what} id is a positive whole number, not {text!r}"
            )
        value = int(text)
        if value > MAX_ID:
            raise NotFound(f"no {what} with id {value}")
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"a {what} id is a positive whole number, not {text!r}"
            )
        return value

    parse.__name__ = f"{what} id"  # argparse names the type in its messages
    return parse


def int_in(low: int, high: int):
    """An argparse type for a whole number in [low, high]: out-of-range values are refused
    while parsing, before they can overflow a timedelta, a driver or a tensor shape."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, not {value}")
        return value

    parse.__name__ = "number"
    return parse


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot serialise {type(value).__name__}")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, default=_default, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def human_size(n: float) -> str:
    """1,234 bytes, 12.3 MB, ...: sizes as people read them."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} GB"

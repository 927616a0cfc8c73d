"""Errors a caller can show to a person as they are, and the one translation of the failures
a person meets without causing them (a full disk, a database that cannot be reached) into a
sentence: the CLI's last net (app/cli/main.py) and the UI's transaction (app/ui/db.py) share it.
"""

from __future__ import annotations

import errno


class RLHFError(Exception):
    """Base class: the message is meant for the user."""


class NotFound(RLHFError):
    pass


class PermissionDenied(RLHFError):
    pass


class InvalidInput(RLHFError):
    pass


class Conflict(RLHFError):
    pass


class Unavailable(RLHFError):
    """Storage or the database failed under us (disk full, server down): nothing is half-done,
    the transaction was rolled back, and the same action can be retried later."""


# ENOSPC: no space left; EDQUOT: over quota. Both mean "free space and retry".
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# SQLSTATE class 53 (insufficient resources): 53100 disk full, 53200 out of memory, ...
_PG_DISK_FULL = "53100"


def safe_url(url: str | None) -> str:
    """A database URL fit to print: the password is hidden."""
    if not url:
        return "the configured database"
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # never echo an unparsable URL: it may hold a password
        return "the configured database (RLHF_DATABASE_URL does not parse)"


_PG_UNDEFINED = ("42P01", "42703")  # undefined table, undefined column


def _schema_missing(orig: BaseException, message: str) -> bool:
    """A table or column this version needs is not there: a database never migrated, or
    migrated by an older version."""
    if getattr(orig, "sqlstate", None) in _PG_UNDEFINED:
        return True
    return message.startswith(("no such table:", "no such column:")) or (
        "has no column named" in message
    )


def describe_failure(exc: BaseException, *, database_url: str | None = None) -> str | None:
    """One sentence for a failure of the machine rather than of the input, or None when
    `exc` is not one of them (the caller then re-raises it).

    Database writes happen in one transaction that is rolled back on any error, so for the
    database cases "nothing was saved" is true; for files, the writers use temp directories
    that are removed on failure (labeling/snapshots.py, labeling/registry/training_records.py).
    """
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"disk full{where}: free some space and retry; nothing was written"
    # The importer talks to the driver directly, so raw sqlite3/psycopg errors arrive too.
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    driver = type(orig).__module__.split(".")[0] in ("sqlite3", "psycopg")
    if isinstance(exc, sa_exc.DBAPIError) or driver:
        message = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        if "database or disk is full" in message or getattr(orig, "sqlstate", None) == (
            _PG_DISK_FULL
        ):
            return (
                "the database's disk is full: free some space and retry; "
                "this action was not saved (everything saved before is intact)"
            )
        if isinstance(exc, sa_exc.OperationalError) and exc.statement is None:
            # SQLAlchemy leaves `statement` empty when the failure was opening the connection.
            check = (
                "that its folder exists and is writable"
                if (database_url or "").startswith("sqlite")
                else "that the server is running"
            )
            return (
                f"cannot reach the database at {safe_url(database_url)} ({message}); "
                f"check RLHF_DATABASE_URL and {check}"
            )
        if _schema_missing(orig, message):
            return (
                f"the database at {safe_url(database_url)} is not migrated to this version "
                f"({message}): run `rlhf db upgrade`"
            )
        if getattr(exc, "connection_invalidated", False):
            return (
                f"lost the connection to the database at {safe_url(database_url)} ({message}); "
                "this action was not saved, retry it"
            )
        return None
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)) and exc.filename:
        return f"no such file or folder: {exc.filename}"
    if isinstance(exc, PermissionError):
        where = exc.filename or "a file"
        return f"permission denied on {where}: check who owns it and its mode"
    return None

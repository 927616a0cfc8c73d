"""Whole-database backup and restore, consistent while labelers keep writing.

SQLite runs in WAL mode: a committed transaction lives in ``rlhf.db-wal`` until a checkpoint
copies it into ``rlhf.db``, so ``cp rlhf.db`` silently drops recent labels (and copying the
two files one after the other can pair a main file and a log from different moments). A
backup here is SQLite's online backup API run inside one read transaction on the live file:
a WAL reader sees one fixed snapshot and never blocks writers, so the copy holds exactly the
transactions committed before it started while labelers go on working. Pages are copied in
steps with a short sleep so that the copying thread does not hog the process. The copy is
written to a temp file beside the target, switched to a single-file journal mode, checked,
fsynced and renamed: a crash leaves either the old file or the new one, and the result is a
plain SQLite database that the ``sqlite3`` shell opens.

PostgreSQL: ``pg_dump --format=custom`` (one snapshot by design) and ``pg_restore --clean
--if-exists --single-transaction`` (all or nothing). Connection parameters go to the tools in
their environment (PGPASSWORD and friends), never on the command line where ``ps`` shows them.

A restore first checks that the file is a backup of this application's schema (its
alembic_version names a revision this code knows; at head, every table is there) and refuses
anything else before touching the database; then it writes a safety backup of the current
contents, replaces them, and ends every web session (tokens in the backup may be stale).
These functions work on whole databases, so they take an Engine, not a Session.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, inspect, text

from labeling.errors import Conflict, InvalidInput, NotFound, RLHFError

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"
PAGES_PER_STEP = 1024  # 4 MiB of 4 KiB pages per backup step
STEP_SLEEP_S = 0.002
BUSY_TIMEOUT_S = 30
# A restore waits this long for another connection's lock on PostgreSQL, then gives up whole.
PG_LOCK_TIMEOUT_MS = 60_000
# URL query options that libpq reads from the environment as well.
_PG_QUERY_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "host": "PGHOST",
    "port": "PGPORT",
}


class BackupFailed(RLHFError):
    """The backup or restore could not be done; nothing that existed was changed."""


@dataclass
class BackupResult:
    path: Path
    database: str  # "sqlite" or "postgresql"
    bytes: int
    revision: str | None
    seconds: float

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "database": self.database,
            "bytes": self.bytes,
            "revision": self.revision,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class RestoreResult:
    path: Path
    database: str
    revision: str
    head: str | None
    safety_backup: Path | None  # the contents before the restore; None if there were none
    seconds: float

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "database": self.database,
            "revision": self.revision,
            "head": self.head,
            "up_to_date": self.revision == self.head,
            "safety_backup": None if self.safety_backup is None else str(self.safety_backup),
            "seconds": round(self.seconds, 3),
        }


def _kind(engine: Engine) -> str:
    name = engine.url.get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise InvalidInput(f"backup supports SQLite and PostgreSQL, not {name}")
    return name


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _sqlite_file(engine: Engine) -> Path:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise InvalidInput("this SQLite database is not a plain file: nothing to back up")
    return Path(database).expanduser().resolve()


def _target(path, *, overwrite: bool, suffix: str, live: Path | None) -> Path:
    """Where a backup goes: PATH, or a time-stamped file inside PATH when it is a folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / f"rlhf-{_stamp()}{suffix}"
    path = path.absolute()
    if not path.parent.is_dir():
        raise NotFound(f"folder {path.parent} does not exist: create it first")
    if live is not None:
        resolved = path.resolve()
        if resolved in {live, Path(f"{live}-wal"), Path(f"{live}-shm"), Path(f"{live}-journal")}:
            raise InvalidInput(f"{path} is the live database itself: choose another path")
    if path.exists() and not overwrite:
        raise Conflict(f"{path} already exists: choose another name, or pass --force to replace it")
    return path


def _fsync_and_rename(tmp: Path, final: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    try:  # make the rename itself durable
        fd = os.open(final.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_beside(final: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.tmp-")
    os.close(fd)
    return Path(name)


def _remove(*paths: Path) -> None:
    for p in paths:
        for extra in ("", "-journal", "-wal", "-shm"):
            Path(f"{p}{extra}").unlink(missing_ok=True)


def _failure(what: str, exc: BaseException) -> BackupFailed:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return BackupFailed(f"{what} failed: {reason}")


# --- public API ----------------------------------------------------------------------------


def backup(engine: Engine, path, *, overwrite: bool = False) -> BackupResult:
    """Copy the whole database to `path` (a file, or a folder to put a dated file in)."""
    started = time.monotonic()
    kind = _kind(engine)
    if kind == "sqlite":
        live = _sqlite_file(engine)
        final = _target(path, overwrite=overwrite, suffix=".db", live=live)
        revision = _sqlite_backup_to(live, final)
    else:
        final = _target(path, overwrite=overwrite, suffix=".dump", live=None)
        revision = _pg_backup_to(engine, final)
    return BackupResult(final, kind, final.stat().st_size, revision, time.monotonic() - started)


def inspect_backup(engine: Engine, path) -> str:
    """The schema revision of backup file `path`, after checking it fits `engine`'s database.

    Raises InvalidInput (one sentence) for a file that is not a backup of this schema.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise NotFound(f"no backup file at {path}")
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    kind = _kind(engine)
    if head.startswith(PG_DUMP_MAGIC):
        if kind != "postgresql":
            raise InvalidInput(
                f"{path} is a PostgreSQL dump but the database is SQLite: "
                "restore it into a PostgreSQL database"
            )
        return _pg_inspect(path)
    if head == SQLITE_MAGIC:
        if kind != "sqlite":
            raise InvalidInput(
                f"{path} is a SQLite backup but the database is PostgreSQL: restore it into "
                "SQLite, or move the data with an export and import"
            )
        return _sqlite_inspect(path)
    raise InvalidInput(
        f"{path} is neither a SQLite database nor a pg_dump custom-format file: "
        "nothing was restored"
    )


def restore(engine: Engine, path, *, safety_dir) -> RestoreResult:
    """Replace the database's contents with backup `path`.

    Checks the file first (nothing is touched if it is not a backup of this schema), then
    writes a safety backup of the current contents into `safety_dir`, then restores, and
    ends every web session. Returns what was restored and where the safety backup is.
    """
    from labeling import migrate

    started = time.monotonic()
    kind = _kind(engine)
    path = Path(path).expanduser().absolute()
    revision = inspect_backup(engine, path)
    safety_dir = Path(safety_dir).expanduser()
    try:
        safety_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _failure(f"creating the safety-backup folder {safety_dir}", e) from None
    if kind == "sqlite":
        live = _sqlite_file(engine)
        if path.resolve() == live:
            raise InvalidInput(f"{path} is the live database itself: nothing to restore")
        safety = None
        if live.is_file() and live.stat().st_size > 0:
            safety = _target(safety_dir / f"before-restore-{_stamp()}.db",
                             overwrite=False, suffix=".db", live=live)  # fmt: skip
            _sqlite_backup_to(live, safety)
        engine.dispose()
        _sqlite_restore_from(path, live)
    else:
        current = migrate.current(engine)
        if current is not None and current != revision:
            raise Conflict(
                f"the database is at schema revision {current} and the backup at {revision}: "
                f"migrate the database to {revision} first (`rlhf db downgrade {revision}` or "
                f"`rlhf db upgrade {revision}`), restore, then `rlhf db upgrade`"
            )
        safety = safety_dir / f"before-restore-{_stamp()}.dump"
        _pg_backup_to(engine, safety)
        engine.dispose()  # our own pooled connections would hold up the DROPs
        _pg_restore_from(engine, path)
    _end_web_sessions(engine)
    return RestoreResult(path, kind, revision, migrate.head(), safety, time.monotonic() - started)


def _end_web_sessions(engine: Engine) -> None:
    """Sign everyone out: the restored tokens may belong to logins ended since the backup."""
    with engine.begin() as conn:
        if inspect(conn).has_table("web_sessions"):
            conn.execute(text("DELETE FROM web_sessions"))
    engine.dispose()


def _check_revision(path: Path, revision: str | None, tables: set[str]) -> str:
    from alembic.script import ScriptDirectory

    from labeling import migrate
    from labeling.models import Base

    if revision is None:
        raise InvalidInput(
            f"{path} is a database but not one of this application's (no schema revision): "
            "nothing was restored"
        )
    known = {r.revision for r in ScriptDirectory(str(migrate.SCRIPT_LOCATION)).walk_revisions()}
    if revision not in known:
        raise InvalidInput(
            f"{path} is at schema revision {revision!r}, which this version of rlhf does not "
            "know (a newer version wrote it?): nothing was restored"
        )
    if revision == migrate.head():
        missing = sorted(set(Base.metadata.tables) - tables)
        if missing:
            raise InvalidInput(
                f"{path} claims schema revision {revision} but lacks the table(s) "
                f"{', '.join(missing)}: nothing was restored"
            )
    return revision


# --- SQLite ---------------------------------------------------------------------------------


def _sqlite_backup_to(live: Path, final: Path) -> str | None:
    """Online backup of `live` into `final` (temp file, fsync, rename); returns the revision."""
    if not live.is_file():
        raise NotFound(f"no database at {live}")
    tmp = _temp_beside(final)
    src = dst = None
    try:
        src = sqlite3.connect(live, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        # One read transaction for the whole copy: a fixed WAL snapshot, writers go on.
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        revision = _sqlite_revision(src)
        dst = sqlite3.connect(tmp, isolation_level=None)
        src.backup(dst, pages=PAGES_PER_STEP, sleep=STEP_SLEEP_S)
        src.execute("COMMIT")
        # A self-contained single file: no -wal beside it to forget.
        dst.execute("PRAGMA journal_mode=DELETE").fetchone()
        check = dst.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"the copy failed its integrity check: {check}")
        dst.close()
        dst = None
        _fsync_and_rename(tmp, final)
    except (sqlite3.Error, OSError) as e:
        _remove(tmp)
        raise _failure(f"backing up {live} to {final}", e) from None
    finally:
        for conn in (dst, src):
            if conn is not None:
                conn.close()
    return revision


def _sqlite_revision(conn: sqlite3.Connection) -> str | None:
    try:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        return None
    return rows[0][0] if len(rows) == 1 else None


def _sqlite_inspect(path: Path) -> str:
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise InvalidInput(f"{path} cannot be opened as a SQLite database ({e})") from None
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise InvalidInput(f"{path} is a damaged SQLite database ({check}): nothing restored")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        revision = _sqlite_revision(conn)
    except sqlite3.DatabaseError as e:
        raise InvalidInput(f"{path} is not a readable SQLite database ({e})") from None
    finally:
        conn.close()
    return _check_revision(path, revision, tables)


def _sqlite_restore_from(path: Path, live: Path) -> None:
    """Copy the backup into the live file through the backup API: one write transaction on
    the live database, so other connections (a running server) see the old contents or the
    new ones, never a half-written file."""
    src = dst = None
    try:
        src = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
        dst = sqlite3.connect(live, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        dst.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        src.backup(dst)  # all pages in one step: one transaction on the live file
    except sqlite3.Error as e:
        what = f"restoring {path} into {live} (the database was left as it was)"
        raise _failure(what, e) from None
    finally:
        for conn in (dst, src):
            if conn is not None:
                conn.close()


# --- PostgreSQL -----------------------------------------------------------------------------


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupFailed(
            f"{name} was not found on PATH: install the PostgreSQL client tools of the "
            "server's major version (Debian: apt install postgresql-client)"
        )
    return found


def _pg_env(engine: Engine) -> dict[str, str]:
    """libpq's environment for the engine's URL: the password never appears on argv."""
    url = engine.url
    env = dict(os.environ)  # libpq reads the same PG* variables psycopg does
    for key, value in (
        ("PGHOST", url.host),
        ("PGPORT", url.port),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
    ):
        if value is not None:
            env[key] = str(value)
    for option, variable in _PG_QUERY_ENV.items():
        value = url.query.get(option)
        if isinstance(value, tuple):
            value = value[0]
        if value is not None:
            env[variable] = str(value)
    return env


def _run_tool(args: list[str], env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    except OSError as e:
        raise _failure(what, e) from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "error" in ln.lower()), lines[0] if lines else "")
        detail = re.sub(r"^(pg_dump|pg_restore): (error: )?", "", detail)
        raise BackupFailed(f"{what} failed: {detail or f'exit status {done.returncode}'}")
    return done.stdout


def _pg_revision(engine: Engine) -> str | None:
    from labeling import migrate

    return migrate.current(engine)


def _pg_backup_to(engine: Engine, final: Path) -> str | None:
    tool = _pg_tool("pg_dump")
    revision = _pg_revision(engine)
    tmp = _temp_beside(final)
    try:
        _run_tool(
            [tool, "--format=custom", "--no-password", f"--file={tmp}"],
            _pg_env(engine),
            f"pg_dump of database {engine.url.database}",
        )
        _fsync_and_rename(tmp, final)
    except OSError as e:
        _remove(tmp)
        raise _failure(f"writing {final}", e) from None
    except BaseException:
        _remove(tmp)
        raise
    return revision


_TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE (\S+) (\S+) ", re.M)


def _pg_inspect(path: Path) -> str:
    tool = _pg_tool("pg_restore")
    env = dict(os.environ)
    try:
        toc = _run_tool([tool, "--list", str(path)], env, f"reading {path}")
        data = _run_tool(
            [tool, "--data-only", "--table=alembic_version", "--file=-", str(path)],
            env,
            f"reading {path}",
        )
    except BackupFailed as e:
        raise InvalidInput(f"{path} is not a readable pg_dump file ({e})") from None
    tables = {name for _schema, name in _TOC_TABLE.findall(toc)}
    revision = None
    copy = re.search(r"^COPY \S*alembic_version \(version_num\) FROM stdin;\n(.*?)^\\\.$",
                     data, re.M | re.S)  # fmt: skip
    if copy:
        values = copy.group(1).split()
        revision = values[0] if len(values) == 1 else None
    return _check_revision(path, revision, tables)


def _pg_restore_from(engine: Engine, path: Path) -> None:
    tool = _pg_tool("pg_restore")
    env = _pg_env(engine)
    # Wait for other sessions' locks a bounded time instead of hanging behind them.
    env["PGOPTIONS"] = f"-c lock_timeout={PG_LOCK_TIMEOUT_MS}"
    _run_tool(
        [
            tool,
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            "--no-password",
            f"--dbname={engine.url.database or engine.url.username or 'postgres'}",
            str(path),
        ],  # fmt: skip
        env,
        f"pg_restore of {path} (all or nothing: the database was left as it was)",
    )

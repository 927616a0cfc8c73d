"""Bulk inserts beneath the importer: rows go in with COPY (PostgreSQL) or executemany on the
DBAPI cursor (SQLite), in the representation the ORM's column types would write, on a
background thread while the importer keeps building rows. What the rows are is
labeling/importer.py's business; this module only writes tuples into tables.
"""

from __future__ import annotations

import queue
import threading

from sqlalchemy.orm import Session

from labeling.errors import Conflict


class _Background:
    """Runs a writer's inserts, in order, on one thread; the caller keeps building rows.

    Both drivers release the GIL while the database works (sqlite3 while it steps,
    psycopg while it waits on the socket), so the two overlap. The first error stops
    the inserts and is raised again in the caller; on leaving, the thread is always joined
    before the transaction can be rolled back or committed.
    """

    def __init__(self, writer):
        self.writer = writer
        self.timestamp = writer.timestamp
        self.false = writer.false
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="rlhf-import-writer", daemon=True)

    def __enter__(self) -> _Background:
        self.thread.start()
        return self

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if self.error is not None:
            raise self.error
        if rows:
            self.queue.put((table, columns, rows))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.writer.insert(*item)
                except BaseException as exc:  # re-raised in the caller's thread
                    self.error = exc

    def __exit__(self, *exc_info) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc_info[0] is None:
            raise self.error


PROMPT_COLUMNS = (
    "id",
    "project_id",
    "messages",
    "content_hash",
    "split",
    "source",
    "category",
    "tags",
    "created_at",
)
RESPONSE_COLUMNS = (
    "id",
    "prompt_id",
    "text",
    "content_hash",
    "author_kind",
    "source",
    "created_at",
)
TASK_COLUMNS = (
    "id",
    "project_id",
    "prompt_id",
    "kind",
    "response_a_id",
    "response_b_id",
    "content_hash",
    "is_gold",
    "status",
    "overlap",
    "labels_count",
    "active_leases",
    "lease_epoch",
    "priority",
    "created_at",
)
DEMO_COLUMNS = ("id", "task_id", "origin", "response_id", "created_at")
PREF_COLUMNS = ("id", "task_id", "origin", "choice", "created_at")
# An imported label with a labeler (or other details: strength, side, time, its own time).
LABELED_PREF_COLUMNS = (
    "id",
    "task_id",
    "user_id",
    "origin",
    "choice",
    "strength",
    "left_response_id",
    "time_spent_ms",
    "created_at",
)


class _SQLiteWriter:
    """executemany on the session's sqlite3 connection, inside its BEGIN IMMEDIATE transaction.

    Values are what the ORM's types would store: UTC datetimes as naive
    'YYYY-MM-DD HH:MM:SS.ffffff' text, JSON as text, booleans as 0/1, enums as their values.
    """

    false = 0
    CACHE_KIB = 131_072  # a bigger page cache while the indexes take 100k random keys

    def __init__(self, session: Session):
        self.conn = session.connection().connection.driver_connection
        (self.cache_size,) = self.conn.execute("PRAGMA cache_size").fetchone()
        self.conn.execute(f"PRAGMA cache_size=-{self.CACHE_KIB}")

    def close(self) -> None:
        self.conn.execute(f"PRAGMA cache_size={int(self.cache_size)}")

    @staticmethod
    def timestamp(moment) -> str:
        return moment.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")

    def ids(self, table: str, n: int) -> range:
        if n == 0:
            return range(0)
        # The transaction began with BEGIN IMMEDIATE: nobody else can write until we commit.
        (top,) = self.conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table}").fetchone()
        return range(top + 1, top + 1 + n)

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        import sqlite3

        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        try:
            self.conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"import clashed with existing {table}: {exc}") from None


class _PostgresWriter:
    """COPY FROM STDIN on the session's psycopg connection; ids from each table's sequence.

    The COPY text is built here, column by column (psycopg's write_row per row was the
    slowest part): NULL is \\N, booleans t/f, the timestamp an ISO string with its UTC
    offset, and free-text columns (JSON included) get COPY's backslash escapes.
    """

    false = "f"
    TEXT_COLUMNS = {"messages", "source", "category", "tags", "text"}
    ROWS_PER_WRITE = 5000

    def __init__(self, session: Session):
        self.conn = session.connection().connection.driver_connection

    def close(self) -> None:
        pass

    @staticmethod
    def timestamp(moment) -> str:
        return moment.isoformat(sep=" ")

    def ids(self, table: str, n: int) -> list[int]:
        if n == 0:
            return []
        with self.conn.cursor() as cur:
            (seq,) = cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,)).fetchone()
            cur.execute(
                "SELECT array_agg(nextval(%s::regclass)) FROM generate_series(1, %s)", (seq, n)
            )
            return cur.fetchone()[0]

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        import psycopg

        cols = []
        for name, values in zip(columns, zip(*rows, strict=True), strict=True):
            if name in self.TEXT_COLUMNS:
                cols.append([_copy_escape(v) if v is not None else "\\N" for v in values])
            else:
                cols.append([str(v) if v is not None else "\\N" for v in values])
        lines = list(map("\t".join, zip(*cols, strict=True)))
        try:
            with self.conn.cursor() as cur:
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for i in range(0, len(lines), self.ROWS_PER_WRITE):
                        chunk = lines[i : i + self.ROWS_PER_WRITE]
                        copy.write(("\n".join(chunk) + "\n").encode("utf-8"))
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(
                f"another import added the same {table} at the same time; run it again ({exc})"
            ) from None


def _copy_escape(value: str) -> str:
    """Text for COPY's text format: backslash, tab, newline and carriage return escaped."""
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )

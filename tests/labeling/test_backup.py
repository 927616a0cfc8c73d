"""`rlhf db backup` / `rlhf db restore` on SQLite and PostgreSQL: consistent under concurrent
writes, restorable into a fresh database, and refusing files that are not our backups."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from labeling import backup, migrate, projects, queue
from labeling.accounts import users, web_sessions
from labeling.db import is_sqlite, make_engine, make_sessionmaker
from labeling.errors import InvalidInput
from labeling.models import Base, Preference, Task, User, WebSession
from labeling.tasks import add_compare_task, add_prompt, add_response

PASSWORD = "correct-horse-battery-9"


def seed(Session, *, tasks: int, voters: int = 1) -> tuple[int, list[int]]:
    with Session.begin() as s:
        p = projects.create_project(s, name="p", kind="pairwise", overlap=1)
        for i in range(tasks):
            prompt = add_prompt(s, p, f"question {i}? " + "padding " * 40)
            a = add_response(s, prompt, f"answer A {i} " + "words " * 40)
            b = add_response(s, prompt, f"answer B {i} " + "words " * 40)
            add_compare_task(s, p, prompt, a, b)
        ids = [
            users.add_user(s, name=f"voter{k}", role="labeler", password=PASSWORD).id
            for k in range(voters)
        ]
        return p.id, ids


def vote_once(Session, project_id: int, user_id: int) -> bool:
    with Session.begin() as s:
        a = queue.claim_next(s, project_id=project_id, user_id=user_id)
        if a is None:
            return False
        return queue.submit_preference(s, task_id=a.task_id, user_id=user_id, choice="a").accepted


class Writer(threading.Thread):
    """Keeps voting in its own transactions; `committed` counts votes whose commit returned."""

    def __init__(self, Session, project_id, user_id):
        super().__init__(daemon=True)
        self.Session, self.project_id, self.user_id = Session, project_id, user_id
        self.committed = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self):
        try:
            while not self.stop.is_set() and vote_once(self.Session, self.project_id, self.user_id):
                self.committed += 1
        except BaseException as e:  # surfaced by the test
            self.error = e


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }


def labels_are_consistent(engine) -> int:
    """Labels, task counters and assignments agree: they are written in one transaction, so a
    backup that mixed moments would break this. Returns the number of labels."""
    with engine.connect() as conn:
        labels = conn.execute(select(func.count()).select_from(Preference)).scalar_one()
        counted = conn.execute(select(func.coalesce(func.sum(Task.labels_count), 0))).scalar_one()
        submitted = conn.execute(
            text("SELECT count(*) FROM assignments WHERE status = 'submitted'")
        ).scalar_one()
    assert labels == counted == submitted
    return labels


@pytest.fixture
def fresh_url(db_url, tmp_path):
    """An empty database of the same kind as db_url (no tables at all)."""
    if is_sqlite(db_url):
        yield f"sqlite:///{tmp_path / 'fresh' / 'rlhf.db'}"
        return
    name = f"rlhf_restore_{os.getpid()}"
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(db_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_backup_under_concurrent_writes_is_consistent_and_restores(
    engine, Session, db_url, fresh_url, tmp_path, monkeypatch
):
    # Tiny steps make the SQLite copy take many steps while the writer commits in between.
    monkeypatch.setattr(backup, "PAGES_PER_STEP", 1)
    monkeypatch.setattr(backup, "STEP_SLEEP_S", 0.002)
    project_id, (voter,) = seed(Session, tasks=400)
    writer = Writer(Session, project_id, voter)
    writer.start()
    while writer.committed < 20 and writer.is_alive():
        time.sleep(0.01)
    folder = tmp_path / "backups"
    folder.mkdir()
    before = writer.committed  # committed before the backup started: all must be in it
    result = backup.backup(engine, folder)  # a folder: a dated file inside it
    during = writer.committed
    writer.stop.set()
    writer.join(30)
    assert writer.error is None, writer.error
    assert during > before, "the writer made no progress while the backup ran"

    assert result.path.parent == folder and result.path.name.startswith("rlhf-")
    assert result.revision == migrate.head() and result.bytes == result.path.stat().st_size
    assert not list(result.path.parent.glob(".*tmp-*")), "temp file left behind"

    if is_sqlite(db_url):
        # A plain, self-contained SQLite file: no -wal needed, intact, foreign keys hold.
        assert not Path(f"{result.path}-wal").exists()
        conn = sqlite3.connect(result.path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        conn.close()
        copy = make_engine(f"sqlite:///{result.path}")
        in_backup = counts(copy)
        n = labels_are_consistent(copy)
        copy.dispose()

    fresh = make_engine(fresh_url)
    try:
        restored = backup.restore(fresh, result.path, safety_dir=tmp_path / "safety")
        assert restored.revision == migrate.head()
        n_restored = labels_are_consistent(fresh)  # PostgreSQL re-checks every FK on restore
        assert before <= n_restored <= during
        assert migrate.differences(fresh) == []
        after = counts(fresh)
        if is_sqlite(db_url):
            assert n_restored == n and after == in_backup
        assert after["users"] == 1 and after["tasks"] == 400
        # The restored database works: the labeler carries on where the backup left off.
        assert vote_once(make_sessionmaker(fresh), project_id, voter)
        assert labels_are_consistent(fresh) == n_restored + 1
    finally:
        fresh.dispose()
    # The source kept everything the writer committed, backup or not.
    assert labels_are_consistent(engine) == writer.committed


def _another_schema(tmp_path, db_url) -> Path:
    """A real database file of the right kind that is not ours."""
    if is_sqlite(db_url):
        path = tmp_path / "other.db"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (body) VALUES ('hello')")
        conn.commit()
        conn.close()
        return path
    name = f"rlhf_other_{os.getpid()}"
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    other = make_engine(make_url(db_url).set(database=name).render_as_string(hide_password=False))
    try:
        with other.begin() as conn:
            conn.execute(text("CREATE TABLE users (id serial PRIMARY KEY, body text)"))
            conn.execute(text("CREATE TABLE alembic_version (version_num varchar(32))"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('f00dfeed')"))
        return backup.backup(other, tmp_path / "other.dump").path
    finally:
        other.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_restore_refuses_files_that_are_not_our_backups(engine, Session, db_url, tmp_path):
    project_id, (voter,) = seed(Session, tasks=3)
    assert vote_once(Session, project_id, voter)
    before = counts(engine)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all\n" * 100)
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)
    unknown = tmp_path / "unknown.db"
    conn = sqlite3.connect(unknown)
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    conn.execute("INSERT INTO alembic_version VALUES ('9999')")
    conn.commit()
    conn.close()
    cases = {
        junk: "neither a SQLite database nor a pg_dump",
        tmp_path / "missing.db": "no backup file",
        _another_schema(tmp_path, db_url): "not one of this application's|does not know",
    }
    if is_sqlite(db_url):
        cases[truncated] = "SQLite"
        cases[unknown] = "does not know"
    else:
        cases[unknown] = "SQLite backup but the database is PostgreSQL"
    for path, message in cases.items():
        with pytest.raises((InvalidInput, backup.RLHFError), match=message):
            backup.restore(engine, path, safety_dir=tmp_path / "safety")
    assert counts(engine) == before
    assert not (tmp_path / "safety").exists() or not any((tmp_path / "safety").iterdir())


def test_backup_refuses_to_overwrite_or_to_write_over_the_live_file(engine, db_url, tmp_path):
    target = tmp_path / "b.db"
    target.write_text("keep me")
    with pytest.raises(backup.Conflict, match="already exists"):
        backup.backup(engine, target)
    assert target.read_text() == "keep me"
    with pytest.raises(backup.NotFound, match="does not exist"):
        backup.backup(engine, tmp_path / "no" / "such" / "b.db")
    if is_sqlite(db_url):
        with pytest.raises(InvalidInput, match="live database"):
            backup.backup(engine, make_url(db_url).database, overwrite=True)
    replaced = backup.backup(engine, target, overwrite=True)
    assert replaced.path == target and target.read_bytes()[:5] in (b"SQLit", b"PGDMP")


def test_cli_backup_restore_end_to_end(cli, admin, db_url, tmp_path):
    assert cli("users", "add", "ann", "--role", "labeler", "--password-stdin",
               stdin=f"{PASSWORD}\n", user=admin).code == 0  # fmt: skip
    path = tmp_path / "nightly.bak"
    denied = cli("db", "backup", str(path), user="ann")
    assert denied.code == 1 and "admin" in denied.err and not path.exists()

    made = cli("db", "backup", str(path), "--json", user=admin)
    assert made.code == 0, made.err
    assert made.json()["path"] == str(path) and made.json()["revision"] == migrate.head()

    # After the backup: a new account, and a browser login that must not survive a restore.
    engine = make_engine(db_url)
    with make_sessionmaker(engine).begin() as s:
        users.add_user(s, name="bob", role="labeler", password=PASSWORD)
        web_sessions.start(s, user_id=s.scalar(select(User.id).where(User.name == "ann")))

    refused = cli("db", "restore", str(path), user=admin)
    assert refused.code == 1 and "--yes" in refused.err and refused.err.count("\n") == 1
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(User)) == 3

    done = cli("db", "restore", str(path), "--yes", "--json", user=admin)
    assert done.code == 0, done.err
    safety = Path(done.json()["safety_backup"])
    assert safety.is_file() and done.json()["up_to_date"]
    with engine.connect() as conn:
        names = set(conn.scalars(select(User.name)))
        assert names == {"admin", "ann"}  # bob came after the backup
        assert conn.scalar(select(func.count()).select_from(WebSession)) == 0

    # The safety backup holds what the restore replaced: bob is back after restoring it.
    again = cli("db", "restore", str(safety), "--yes", user=admin)
    assert again.code == 0 and "previous contents are saved in" in again.out
    with engine.connect() as conn:
        assert set(conn.scalars(select(User.name))) == {"admin", "ann", "bob"}
    engine.dispose()

    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    for args in (("db", "restore", str(bad), "--yes"), ("db", "backup", str(path))):
        result = cli(*args, user=admin)
        assert result.code == 1 and result.err.startswith("error: ")
        assert result.err.count("\n") == 1 and "Traceback" not in result.err


@pytest.mark.parametrize("action", ["upgrade", "downgrade"])
@pytest.mark.parametrize("revision", ["nonsense", "-70", "+70"])
def test_migrate_to_a_bad_revision_is_one_sentence(cli, admin, action, revision, engine):
    result = cli("db", action, revision, user=admin)
    assert result.code == 1
    assert result.err.startswith("error: cannot ") and result.err.count("\n") == 1
    assert "Traceback" not in result.err and migrate.head() in result.err
    assert migrate.current(engine) == migrate.head()


def test_sqlite_restore_into_the_live_file_keeps_open_readers_sane(sqlite_url, tmp_path):
    engine = make_engine(sqlite_url)
    with make_sessionmaker(engine).begin() as s:
        users.add_user(s, name="before", role="admin", password=PASSWORD)
    saved = backup.backup(engine, tmp_path / "b.db")
    with make_sessionmaker(engine).begin() as s:
        users.add_user(s, name="after", role="admin", password=PASSWORD)
    live = make_url(sqlite_url).database
    reader = sqlite3.connect(live, isolation_level=None)  # e.g. the server mid-page
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM users").fetchone() == (2,)
    backup.restore(engine, saved.path, safety_dir=tmp_path / "safety")
    assert reader.execute("SELECT count(*) FROM users").fetchone() == (2,)  # its snapshot
    reader.execute("COMMIT")
    assert reader.execute("SELECT name FROM users").fetchall() == [("before",)]
    assert reader.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reader.close()
    engine.dispose()


def test_postgres_tools_get_the_password_in_their_environment_not_argv(monkeypatch, tmp_path):
    engine = create_engine(
        "postgresql+psycopg://alice:s3cr%40t@db.internal:6543/labels?sslmode=require"
    )
    env = backup._pg_env(engine)
    assert (env["PGPASSWORD"], env["PGUSER"], env["PGHOST"]) == ("s3cr@t", "alice", "db.internal")
    assert (env["PGPORT"], env["PGDATABASE"], env["PGSSLMODE"]) == ("6543", "labels", "require")
    seen = []

    def fake_run(args, **kwargs):  # record argv instead of reaching a server
        seen.append(args)
        raise OSError(2, "No such file or directory")

    monkeypatch.setattr(backup.subprocess, "run", fake_run)
    monkeypatch.setattr(backup, "_pg_revision", lambda engine: None)
    with pytest.raises(backup.BackupFailed, match="pg_dump of database labels failed"):
        backup.backup(engine, tmp_path / "x.dump")
    assert seen and not any("s3cr" in arg for arg in seen[0])
    assert list(tmp_path.iterdir()) == []  # no temp file left behind
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_dump anywhere: one clear sentence
    with pytest.raises(backup.BackupFailed, match="pg_dump was not found on PATH"):
        backup.backup(engine, tmp_path / "x.dump")

"""Real databases for every test: a migrated SQLite file, and the local PostgreSQL.

PostgreSQL tests run when RLHF_TEST_POSTGRES_URL is set (CI sets it and fails if they skip),
e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres. Each pytest worker gets its own
database, migrated once; each test starts from empty tables.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from labeling import migrate
from labeling.db import make_engine, make_sessionmaker
from labeling.models import Base

# Tests never reach a model hub. pytest imports this file before any test module, so this is
# set before anything imports transformers, datasets or huggingface_hub (which read it once,
# at import; nothing imported above loads them). Subprocesses inherit it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# ... and never write into the user's data directory (the default RLHF_HOME): a test that does
# not set its own data root gets a throwaway one.
os.environ.setdefault("RLHF_HOME", tempfile.mkdtemp(prefix="rlhf-tests-home-"))

PG_URL = os.environ.get("RLHF_TEST_POSTGRES_URL")
# CI sets this: a PostgreSQL test that skips then fails the run instead of passing quietly.
REQUIRE_POSTGRES = os.environ.get("RLHF_REQUIRE_POSTGRES") == "1"
_postgres_skips: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and "postgres" in report.keywords:
        _postgres_skips.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if REQUIRE_POSTGRES and _postgres_skips:
        print(
            f"\nRLHF_REQUIRE_POSTGRES=1 but {len(_postgres_skips)} PostgreSQL tests skipped, "
            f"e.g. {_postgres_skips[0]}",
            file=sys.stderr,
        )
        session.exitstatus = 1


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return str(path)


@pytest.fixture(scope="session")
def pg_database(worker_id) -> str:
    if not PG_URL:
        pytest.skip("RLHF_TEST_POSTGRES_URL is not set")
    # One database per test process: parallel runs on one server do not collide.
    name = f"rlhf_test_{os.getpid()}_{worker_id}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_pg(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, monkeypatch) -> str:
    """A migrated, empty database of each kind; RLHF_DATABASE_URL and RLHF_HOME point at it."""
    if request.param == "sqlite":
        path = tmp_path / "rlhf.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_database")
        _truncate_pg(url)
    monkeypatch.setenv("RLHF_DATABASE_URL", url)
    monkeypatch.setenv("RLHF_HOME", str(tmp_path / "home"))
    return url


@pytest.fixture
def sqlite_url(tmp_path, sqlite_template, monkeypatch) -> str:
    path = tmp_path / "rlhf.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("RLHF_DATABASE_URL", url)
    monkeypatch.setenv("RLHF_HOME", str(tmp_path / "home"))
    return url


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def Session(engine):  # noqa: N802 - a sessionmaker reads best capitalised
    return make_sessionmaker(engine)


@dataclass
class CLIResult:
    code: int
    out: str
    err: str

    def json(self):
        import json

        return json.loads(self.out)


@pytest.fixture
def cli(db_url, monkeypatch):
    """Run `rlhf ...` in-process against the test database: cli("users", "list", user="admin")."""
    import app.cli.common as common
    from app.cli.main import main

    def run(*args: str, user: str | None = None, stdin: str = "") -> CLIResult:
        common._sessionmaker = None
        if user:
            monkeypatch.setenv("RLHF_USER", user)
        else:
            monkeypatch.delenv("RLHF_USER", raising=False)
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse errors
                code = exc.code if isinstance(exc.code, int) else 2
        common._sessionmaker = None
        return CLIResult(code, out.getvalue(), err.getvalue())

    yield run
    common._sessionmaker = None


@pytest.fixture
def admin(cli) -> str:
    """An admin account named 'admin'; returns its name for cli(..., user=admin)."""
    result = cli(
        "users", "add", "admin", "--role", "admin", "--password-stdin", stdin="admin-password\n"
    )
    assert result.code == 0, result.err
    return "admin"

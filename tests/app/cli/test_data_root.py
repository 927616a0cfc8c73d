"""The data root does not depend on the working directory, and a database this version has
not migrated gets a sentence naming the fix (`rlhf db upgrade`) instead of a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from labeling.settings import load_settings

ROOT = Path(__file__).resolve().parents[3]


def rlhf(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli.main", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_default_home_is_the_user_data_dir_from_any_folder(tmp_path, monkeypatch):
    data = tmp_path / "xdg"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))  # where platformdirs puts it on Linux
    homes = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        homes.append(load_settings({}).home)
    assert homes == [(data / "rlhf").resolve()] * 2
    assert load_settings({}).database_url == f"sqlite:///{(data / 'rlhf').resolve() / 'rlhf.db'}"
    # RLHF_HOME still wins
    assert load_settings({"RLHF_HOME": str(tmp_path / "h")}).home == tmp_path / "h"


def test_an_existing_dot_rlhf_keeps_working(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    (tmp_path / ".rlhf").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).home == tmp_path / ".rlhf"


def test_commands_on_an_unmigrated_sqlite_database_say_run_db_upgrade(tmp_path):
    env = {
        "RLHF_HOME": str(tmp_path / "home"),
        "RLHF_DATABASE_URL": f"sqlite:///{tmp_path / 'home' / 'rlhf.db'}",
        "RLHF_USER": "admin",
    }
    (tmp_path / "home").mkdir()
    for args in (("projects", "list"), ("snapshot", "list"), ("checkpoints", "list")):
        proc = rlhf(*args, env=env, cwd=tmp_path)
        assert proc.returncode == 1, proc
        assert "Traceback" not in proc.stderr
        assert "run `rlhf db upgrade`" in proc.stderr, proc.stderr
    # ... and after the upgrade the same command gets past the schema (to the account check)
    assert rlhf("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    proc = rlhf("projects", "list", env=env, cwd=tmp_path)
    assert "rlhf db upgrade" not in proc.stderr


@pytest.mark.postgres
def test_an_unmigrated_postgres_database_says_run_db_upgrade(tmp_path, pg_database):
    server = make_url(pg_database)  # the fixture: skipped (and counted) where no server is set
    name = f"rlhf_unmigrated_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = server.set(database=name).render_as_string(hide_password=False)
        env = {"RLHF_HOME": str(tmp_path / "home"), "RLHF_DATABASE_URL": url, "RLHF_USER": "a"}
        proc = rlhf("projects", "list", env=env, cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert "is not migrated to this version" in proc.stderr
        assert "run `rlhf db upgrade`" in proc.stderr
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()

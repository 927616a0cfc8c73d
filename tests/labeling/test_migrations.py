"""Alembic on both databases: upgrade, downgrade to base, upgrade again; `db check`."""

from sqlalchemy import inspect, text

from labeling import migrate
from labeling.models import Base


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade_is_clean(engine, cli, admin):
    assert migrate.current(engine) == migrate.head()
    assert migrate.differences(engine) == []
    assert tables(engine) == set(Base.metadata.tables)

    result = cli("db", "downgrade", "base", user=admin)
    assert result.code == 0, result.err
    assert tables(engine) == set()
    assert migrate.current(engine) is None

    # With the users table gone nobody can be checked: upgrading an empty database is allowed.
    result = cli("db", "upgrade")
    assert result.code == 0, result.err
    assert "database at" in result.out
    assert tables(engine) == set(Base.metadata.tables)
    check = cli("db", "check", "--json")
    assert check.code == 0 and check.json()["ok"] is True


def test_downgrade_minus_one_and_current(engine, cli, admin):
    assert cli("db", "current", "--json").json() == {
        "current": migrate.head(),
        "head": migrate.head(),
        "up_to_date": True,
    }
    assert cli("db", "downgrade", "-1", user=admin).code == 0
    previous = f"{int(migrate.head()) - 1:04d}"  # revisions are numbered 0001, 0002, ...
    assert cli("db", "current", "--json").json()["current"] == previous
    check = cli("db", "check")
    assert check.code == 1 and "rlhf db upgrade" in check.err
    assert cli("db", "upgrade").code == 1  # users exist: an admin must do it
    assert cli("db", "upgrade", user=admin).code == 0


def test_check_fails_when_the_schema_drifts(engine, cli):
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_tasks_claim"))
        conn.execute(text("ALTER TABLE users ADD COLUMN nickname VARCHAR(20)"))
    try:
        result = cli("db", "check", "--json")
        assert result.code == 1
        diffs = " ".join(result.json()["differences"])
        assert "ix_tasks_claim" in diffs and "nickname" in diffs
    finally:  # the PostgreSQL database is shared by the tests of one worker: put it back
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE users DROP COLUMN nickname"))
            conn.execute(
                text(
                    "CREATE INDEX ix_tasks_claim ON tasks "
                    "(project_id, status, is_gold, priority DESC, id)"
                )
            )
    assert cli("db", "check").code == 0


def test_schema_changes_need_an_admin_once_users_exist(cli, admin):
    assert (
        cli(
            "users",
            "add",
            "lab",
            "--role",
            "labeler",
            "--password-stdin",
            stdin="lab-password\n",
            user=admin,
        ).code
        == 0
    )
    refused = cli("db", "downgrade", "base", user="lab")
    assert refused.code == 1 and "needs admin" in refused.err
    assert cli("db", "downgrade", "base").code == 1  # nobody named

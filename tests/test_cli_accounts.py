"""`rlhf users`, `rlhf projects`, `rlhf tasks status` against both databases."""

from sqlalchemy import select

from labeling import users
from labeling.db import make_engine, make_sessionmaker
from labeling.models import Project, Role, User


def test_first_account_bootstraps_then_admin_only(cli, db_url):
    first = cli(
        "users", "add", "root", "--role", "labeler", "--password-stdin", stdin="longpassword\n"
    )
    assert first.code == 1 and "first account must be an admin" in first.err
    assert (
        cli(
            "users", "add", "root", "--role", "admin", "--password-stdin", stdin="longpassword\n"
        ).code
        == 0
    )
    # now a caller is needed, and it must be an admin
    nobody = cli(
        "users", "add", "bob", "--role", "labeler", "--password-stdin", stdin="longpassword\n"
    )
    assert nobody.code == 1 and "RLHF_USER" in nobody.err
    assert (
        cli(
            "users",
            "add",
            "bob",
            "--role",
            "labeler",
            "--password-stdin",
            stdin="longpassword\n",
            user="root",
        ).code
        == 0
    )
    refused = cli(
        "users",
        "add",
        "eve",
        "--role",
        "admin",
        "--password-stdin",
        stdin="longpassword\n",
        user="bob",
    )
    assert refused.code == 1 and "needs admin" in refused.err
    listed = cli("users", "list", "--json", user="root").json()
    assert [(u["name"], u["role"], u["active"]) for u in listed] == [
        ("bob", "labeler", True),
        ("root", "admin", True),
    ]
    Session = make_sessionmaker(make_engine(db_url))
    with Session() as s:
        stored = s.scalar(select(User.password_hash).where(User.name == "bob"))
        assert stored.startswith("$argon2") and "longpassword" not in stored
        assert users.authenticate(s, "bob", "longpassword").name == "bob"
        assert users.authenticate(s, "bob", "wrong-password") is None
        assert users.authenticate(s, "nobody", "longpassword") is None


def test_bad_user_input_is_refused(cli, admin):
    cases = [
        (
            ["users", "add", "bad name!", "--role", "labeler", "--password-stdin"],
            "longpassword\n",
            "invalid user name",
        ),
        (["users", "add", "ok", "--role", "labeler", "--password-stdin"], "short\n", "too short"),
        (
            ["users", "add", "admin", "--role", "labeler", "--password-stdin"],
            "longpassword\n",
            "already exists",
        ),
        (["users", "set-role", "ghost", "engineer"], "", "no user named"),
    ]
    for args, stdin, message in cases:
        result = cli(*args, stdin=stdin, user=admin)
        assert result.code == 1 and message in result.err, (args, result.err)
    assert cli("users", "add", "x", "--role", "wizard", "--password-stdin", user=admin).code == 2
    assert len(cli("users", "list", "--json", user=admin).json()) == 1


def test_role_change_and_deactivation_apply_at_next_command(cli, admin, db_url):
    cli(
        "users",
        "add",
        "eng",
        "--role",
        "engineer",
        "--password-stdin",
        stdin="longpassword\n",
        user=admin,
    )
    assert cli("users", "list", user="eng").code == 1
    assert cli("users", "set-role", "eng", "admin", user=admin).code == 0
    assert cli("users", "list", "--json", user="eng").code == 0
    assert cli("users", "deactivate", "eng", user=admin).code == 0
    gone = cli("users", "list", user="eng")
    assert gone.code == 1 and "deactivated" in gone.err
    with make_sessionmaker(make_engine(db_url))() as s:
        assert users.authenticate(s, "eng", "longpassword") is None
        assert s.scalar(select(User.role).where(User.name == "eng")) == Role.admin


def test_projects_create_list_and_task_status(cli, admin, tmp_path):
    guidelines = tmp_path / "g.md"
    guidelines.write_text("# Be kind\nPrefer the honest answer.", encoding="utf-8")
    made = cli(
        "projects",
        "create",
        "helpful",
        "--kind",
        "pairwise",
        "--overlap",
        "3",
        "--guidelines",
        str(guidelines),
        "--json",
        user=admin,
    )
    assert made.code == 0, made.err
    assert made.json()["overlap"] == 3
    dup = cli("projects", "create", "helpful", "--kind", "sft", user=admin)
    assert dup.code == 1 and "already exists" in dup.err
    bad = cli("projects", "create", "x", "--kind", "sft", "--overlap", "0", user=admin)
    assert bad.code == 1 and "overlap" in bad.err
    binary = tmp_path / "g.bin"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert (
        "not UTF-8"
        in cli(
            "projects", "create", "y", "--kind", "sft", "--guidelines", str(binary), user=admin
        ).err
    )
    listed = cli("projects", "list", "--json", user=admin).json()
    assert [p["name"] for p in listed] == ["helpful"]
    status = cli("tasks", "status", "--project", "helpful", "--json", user=admin)
    assert status.json()["tasks"] == 0 and status.json()["overlap"] == 3
    missing = cli("tasks", "status", "--project", "nope", user=admin)
    assert missing.code == 1 and "no project named" in missing.err


def test_labeler_cannot_create_projects_or_read_status(cli, admin, db_url):
    cli(
        "users",
        "add",
        "lab",
        "--role",
        "labeler",
        "--password-stdin",
        stdin="longpassword\n",
        user=admin,
    )
    assert cli("projects", "create", "p", "--kind", "sft", user="lab").code == 1
    assert cli("projects", "list", "--json", user="lab").code == 0  # everyone may see projects
    cli("projects", "create", "p", "--kind", "sft", user=admin)
    assert cli("tasks", "status", "--project", "p", user="lab").code == 1
    with make_sessionmaker(make_engine(db_url))() as s:
        assert s.scalar(select(Project.guidelines).where(Project.name == "p")) == ""

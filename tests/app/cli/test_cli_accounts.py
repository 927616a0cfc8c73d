"""`rlhf users`, `rlhf projects`, `rlhf tasks status` against both databases."""

from sqlalchemy import select

from labeling.accounts import users
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


def test_set_password_admin_for_anyone_user_for_themselves(cli, admin, db_url):
    from labeling.accounts import web_sessions

    add = ["users", "add", "lab", "--role", "labeler", "--password-stdin"]
    assert cli(*add, stdin="first-password\n", user=admin).code == 0
    assert cli(*add[:2], "eng", *add[3:], stdin="engineer-pass\n", user=admin).code == 0
    Session = make_sessionmaker(make_engine(db_url))
    with Session.begin() as s:
        token = web_sessions.start(s, user_id=users.get_user(s, "lab").id)

    # an admin resets anyone's password: the browser sessions end
    reset = cli("users", "set-password", "lab", "--password-stdin", stdin="second-password\n",
                user=admin)  # fmt: skip
    assert reset.code == 0, reset.err
    assert "browser sessions have ended" in reset.out
    with Session() as s:
        assert web_sessions.resolve(s, token) is None
        assert users.authenticate(s, "lab", "second-password") is not None

    # a user changes their own, giving the current one first
    own = ["users", "set-password", "lab", "--password-stdin"]
    wrong = cli(*own, stdin="not-the-current\nthird-password\n", user="lab")
    assert wrong.code == 1 and "current password is wrong" in wrong.err
    weak = cli(*own, stdin="second-password\n12345678\n", user="lab")
    assert weak.code == 1 and "most common" in weak.err
    only_one = cli(*own, stdin="second-password\n", user="lab")
    assert only_one.code == 1 and "no password on stdin" in only_one.err
    assert cli(*own, stdin="second-password\nthird-password\n", user="lab").code == 0
    # but not someone else's
    other = cli("users", "set-password", "eng", "--password-stdin", stdin="x\nfourth-password\n",
                user="lab")  # fmt: skip
    assert other.code == 1 and "only an admin" in other.err
    ghost = cli("users", "set-password", "ghost", "--password-stdin", stdin="fifth-password\n",
                user=admin)  # fmt: skip
    assert ghost.code == 1 and "no user named" in ghost.err
    nobody = cli("users", "set-password", "lab", "--password-stdin", stdin="fifth-password\n")
    assert nobody.code == 1 and "RLHF_USER" in nobody.err
    with Session() as s:
        assert users.authenticate(s, "lab", "third-password") is not None
        assert users.authenticate(s, "eng", "engineer-pass") is not None  # untouched


def test_weak_passwords_are_refused_at_add(cli, admin):
    add = ["users", "add", "bobby-tables", "--role", "labeler", "--password-stdin"]
    for password, message in [("12345678", "most common"), ("weakling", "too short"),
                              ("Bobby-Tables", "user name"), ("qwerty123456", "most common")]:  # fmt: skip
        result = cli(*add, stdin=password + "\n", user=admin)
        assert result.code == 1 and message in result.err, (password, result.err)
    assert len(cli("users", "list", "--json", user=admin).json()) == 1  # nothing was added
    assert cli(*add, stdin="password-ish\n", user=admin).code == 0

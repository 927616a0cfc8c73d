"""Failures a person causes or meets end in one sentence and a non-zero exit, never a
traceback, and lose nothing already saved: huge numbers and ids, unreadable guideline files,
invisible characters in names, a database that cannot be reached, a full disk (SQLite's
max_page_count, and a real full tmpfs where the test may mount one), stale temp dirs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, func, select

from labeling import bounds, projects, queue
from labeling.accounts import users
from labeling.errors import InvalidInput, Unavailable
from labeling.models import Assignment, Demonstration, Draft, Project, Prompt, Snapshot, User
from labeling.tasks import add_compare_task, add_prompt, add_response
from labeling.tempdirs import clean_stale_temp_dirs

BIG = "1180591620717411303424"  # 2**70: beyond every 64-bit id column


def one_sentence(err: str) -> str:
    """stderr is exactly one `error: ...` line with no traceback; returns the line."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def count(Session, model, *where) -> int:  # noqa: N803
    with Session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def pairwise_project(Session, name="p", n=3, **settings) -> int:  # noqa: N803
    with Session.begin() as s:
        p = projects.create_project(s, name=name, kind="pairwise", **settings)
        for i in range(n):
            prompt = add_prompt(s, p, f"question {i}", source="test")
            a, b = add_response(s, prompt, f"a{i}"), add_response(s, prompt, f"b{i}")
            add_compare_task(s, p, prompt, a, b)
        return p.id


def labeler(Session, name: str) -> int:  # noqa: N803
    with Session.begin() as s:
        return users.add_user(s, name=name, role="labeler", password="long-enough-pass-9").id


# --- ids and numbers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (("snapshot", "show", BIG), f"error: no snapshot with id {BIG}"),
        (("checkpoints", "show", BIG), f"error: no checkpoint with id {BIG}"),
        (("train", "sft", "--snapshot", BIG), f"error: no snapshot with id {BIG}"),
        (
            ("generate", "--project", "p", "--checkpoint", BIG),
            f"error: no checkpoint with id {BIG}",
        ),
    ],
)
def test_ids_beyond_64_bits_are_not_found(cli, admin, args, message):
    result = cli(*args, user=admin)
    assert result.code == 1
    assert one_sentence(result.err) == message


def test_id_that_is_not_a_number_is_a_usage_error(cli, admin):
    result = cli("snapshot", "show", "-5", user=admin)
    assert result.code == 2
    assert "a snapshot id is a positive whole number" in result.err
    assert "Traceback" not in result.err


def test_huge_lease_is_refused_and_claims_keep_working(cli, admin, Session):
    result = cli(
        "projects", "create", "huge", "--kind", "pairwise", "--lease-seconds", "1000000000000",
        user=admin,
    )  # fmt: skip
    assert result.code == 1
    assert "lease_seconds must be from 10 to 604800" in one_sentence(result.err)
    assert count(Session, Project) == 0

    pid = pairwise_project(Session, lease_seconds=3600)
    a, b = labeler(Session, "a"), labeler(Session, "b")
    with Session.begin() as s:
        assert queue.claim_next(s, project_id=pid, user_id=a) is not None
    # the same bound holds for the UI's edit form, which calls update_project
    with pytest.raises(InvalidInput, match="lease_seconds"):
        with Session.begin() as s:
            projects.update_project(s, s.get(Project, pid), lease_seconds=10**12)
    with Session() as s:
        assert s.get(Project, pid).lease_seconds == 3600
    with Session.begin() as s:
        assert queue.claim_next(s, project_id=pid, user_id=b) is not None
    assert count(Session, Assignment) == 2


def test_a_huge_lease_saved_before_the_bound_does_not_break_claims(Session_sqlite):
    """SQLite holds any integer: a database from before the bound may have 10**12 s."""
    from datetime import timedelta

    from sqlalchemy import update

    from labeling.models import utcnow

    Session = Session_sqlite  # noqa: N806
    pid = pairwise_project(Session)
    with Session.begin() as s:
        s.execute(update(Project).where(Project.id == pid).values(lease_seconds=10**12))
    uid = labeler(Session, "a")
    with Session.begin() as s:
        assignment = queue.claim_next(s, project_id=pid, user_id=uid)
        assert assignment is not None
        assert assignment.expires_at - utcnow() <= timedelta(days=7)


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--overlap", "0", "overlap must be from 1 to 100"),
        ("--overlap", "100000000000000000000", "overlap must be from 1 to 100"),
        ("--gold-rate", "1.5", "gold_rate must be a number from 0 to 1"),
        ("--gold-rate", "nan", "gold_rate must be a number from 0 to 1"),
        ("--heldout-fraction", "0.9", "heldout_fraction must be a number from 0 to 0.5"),
        ("--rank-k", "1", "rank_k must be from 2 to 20"),
        ("--rank-k", "99999999999", "rank_k must be from 2 to 20"),
        ("--lease-seconds", "5", "lease_seconds must be from 10 to 604800"),
    ],
)
def test_numeric_project_settings_are_bounded(cli, admin, Session, option, value, words):
    result = cli("projects", "create", "p", "--kind", "ranking", option, value, user=admin)
    assert result.code == 1
    assert words in one_sentence(result.err)
    assert count(Session, Project) == 0


def test_service_bounds_take_form_values_and_refuse_junk():
    assert bounds.whole_number("12", "overlap", 1, 100) == 12
    for junk in ("twelve", None, True, 1.5, float("inf")):
        with pytest.raises(InvalidInput, match="overlap must be"):
            bounds.whole_number(junk, "overlap", 1, 100)
    with pytest.raises(InvalidInput):
        bounds.fraction(float("inf"), "gold_rate")


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("n", 100_000, "n must be at least 1 and at most 64"),
        ("limit", 10**30, "limit must be at least 1 and at most"),
        ("max_new_tokens", 10**11, "max_new_tokens must be at most 32768"),
        ("seed", 2**70, "seed must be from 0 to"),
        ("seed", -1, "seed must be from 0 to"),
    ],
)
def test_generation_numbers_are_bounded_before_any_model_loads(key, value, words):
    from labeling import generations

    sampling = {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 8, "seed": 0}
    with pytest.raises(InvalidInput, match=words):
        if key in sampling:
            generations.sampling_key(**{**sampling, key: value})
        else:  # checked before the session is used
            generations.prompts_to_answer(
                None, 1, split="all", checkpoint_id=1, sampling_key={}, **{key: value}
            )


@pytest.mark.parametrize(
    "args, words",
    [
        (("leaderboard", "--project", "p", "--bootstrap", "1000000000000"), "--bootstrap: must be"),
        (("serve", "--port", "99999"), "--port: must be from 1 to 65535"),
        (("worker", "--max-runs", "0"), "--max-runs: must be from 1"),
        (("eval", "policy", "--checkpoint", "1", "--reward", "checkpoint:1", "--snapshot", "1",
          "--max_new_tokens", "99999999999"), "must be from 1 to 32768, not"),
    ],
)  # fmt: skip
def test_other_numeric_flags_are_refused_while_parsing(cli, admin, args, words):
    result = cli(*args, user=admin)
    assert result.code == 2
    assert words in result.err and "Traceback" not in result.err


def test_arena_settings_have_upper_bounds_and_keep_what_was_set(Session):
    from labeling import arena

    with Session.begin() as s:
        p = projects.create_project(s, name="ar", kind="arena")
        arena.configure(s, p, max_new_tokens=64)
    for key, value in [("max_new_tokens", 10**9), ("seed", 2**70), ("max_prompts", 10**12),
                       ("temperature", float("nan")), ("top_p", 0)]:  # fmt: skip
        with Session.begin() as s, pytest.raises(InvalidInput, match=key):
            arena.configure(s, projects.get_project(s, "ar"), **{key: value})
    with Session() as s:
        assert arena.settings(projects.get_project(s, "ar"))["max_new_tokens"] == 64


# --- guideline files ----------------------------------------------------------------------


def _within(seconds: float, call):
    """Run `call` in a thread; fail (instead of hanging the suite) if it does not return."""
    box: list = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert box, f"did not return within {seconds} s"
    return box[0]


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory", "too-big", "latin-1", "missing"])
def test_bad_guideline_files_are_refused_quickly(cli, admin, Session, tmp_path, kind):
    path = tmp_path / "guidelines.md"
    if kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "too-big":
        path.write_text("x" * (bounds.GUIDELINES_MAX_BYTES + 1))
    elif kind == "latin-1":
        path.write_bytes("café".encode("latin-1"))
    args = ("projects", "create", "p", "--kind", "sft", "--guidelines", str(path))
    result = _within(20, lambda: cli(*args, user=admin))
    assert result.code == 1
    assert "guidelines file" in one_sentence(result.err)
    assert count(Session, Project) == 0


def test_guidelines_at_the_cap_are_kept_and_typed_ones_share_it(cli, admin, Session, tmp_path):
    path = tmp_path / "g.md"
    text = "é" * (bounds.GUIDELINES_MAX_BYTES // 2)  # exactly the cap in UTF-8 bytes
    path.write_text(text, encoding="utf-8")
    result = cli("projects", "create", "p", "--kind", "sft", "--guidelines", str(path), user=admin)
    assert result.code == 0, result.err
    with Session() as s:
        project = s.scalar(select(Project))
        assert project.guidelines == text
    # the UI's form passes typed text to the same service: one byte more is refused
    with pytest.raises(InvalidInput, match="longer than 256 kB"):
        with Session.begin() as s:
            projects.update_project(s, s.get(Project, project.id), guidelines=text + "x")
    with pytest.raises(InvalidInput, match="longer than 256 kB"):
        with Session.begin() as s:
            projects.create_project(s, name="q", kind="sft", guidelines=text + "x")
    with Session() as s:
        assert s.get(Project, project.id).guidelines == text
        assert s.scalar(select(func.count()).select_from(Project)) == 1


# --- names --------------------------------------------------------------------------------

HIDDEN = ["\u202e", "\u202a", "\u2066", "\u2069", "\u200e", "\u200f", "\u061c", "\u200b",
          "\u200d", "\ufeff", "\u00ad", "\x07", "\x1b", "\u2028", "\ue000"]  # fmt: skip


@pytest.mark.parametrize("char", HIDDEN, ids=[f"U+{ord(c):04X}" for c in HIDDEN])
def test_project_names_with_hidden_characters_are_refused(cli, admin, Session, char):
    result = cli("projects", "create", f"report{char}fdp.exe", "--kind", "sft", user=admin)
    assert result.code == 1
    assert f"U+{ord(char):04X}" in one_sentence(result.err)
    assert count(Session, Project) == 0


def test_visible_unicode_names_are_fine(Session):
    with Session.begin() as s:
        for name in ("日本語の評価", "مساعد", "naïve-v2", "emoji 🚀"):
            projects.create_project(s, name=name, kind="sft")
    assert count(Session, Project) == 4


def test_checkpoint_names_with_hidden_characters_are_refused_before_loading(sqlite_url):
    from training.add_model import add_model

    with pytest.raises(InvalidInput, match="U\\+202E"):
        add_model(None, model="/nonexistent", name="base\u202elper")


# --- the database -------------------------------------------------------------------------


def test_unreachable_database_is_one_sentence_without_the_password(cli, monkeypatch):
    url = "postgresql+psycopg://rlhf:s3cret-pw@127.0.0.1:1/rlhf"
    monkeypatch.setenv("RLHF_DATABASE_URL", url)
    result = cli("projects", "list", user="admin")
    assert result.code == 1
    line = one_sentence(result.err)
    assert "cannot reach the database at postgresql+psycopg://rlhf:***@127.0.0.1:1/rlhf" in line
    assert "s3cret" not in result.err + result.out


def test_the_ui_transaction_turns_an_unreachable_database_into_a_sentence(monkeypatch):
    import streamlit as st

    from app.ui.db import transaction

    monkeypatch.setenv("RLHF_DATABASE_URL", "postgresql+psycopg://rlhf:s3cret-pw@127.0.0.1:1/x")
    st.cache_resource.clear()
    try:
        with pytest.raises(Unavailable, match="cannot reach the database") as info:
            with transaction() as s:
                s.scalar(select(func.count()).select_from(Project))
        assert "s3cret" not in str(info.value)
    finally:
        st.cache_resource.clear()


def test_os_level_disk_full_reads_as_one_sentence():
    import errno

    from labeling.errors import describe_failure

    full = OSError(errno.ENOSPC, "No space left on device", "/data/out.parquet")
    assert describe_failure(full) == (
        "disk full (/data/out.parquet): free some space and retry; nothing was written"
    )
    assert describe_failure(ValueError("not ours")) is None


def test_unexpected_errors_are_one_sentence_and_rlhf_debug_shows_them(cli, admin, monkeypatch):
    from app.cli import projects_cmd

    def broken(args):
        raise RuntimeError("something odd\nand a second line")

    monkeypatch.setattr(projects_cmd, "list_projects", broken)
    result = cli("projects", "list", user=admin)
    assert result.code == 1
    line = one_sentence(result.err)
    assert "unexpected RuntimeError: something odd" in line and "RLHF_DEBUG=1" in line
    monkeypatch.setenv("RLHF_DEBUG", "1")
    with pytest.raises(RuntimeError, match="something odd"):
        cli("projects", "list", user=admin)


def test_the_real_command_line_prints_one_sentence(db_url, tmp_path):
    """`rlhf` as a process (not in-process): the exit code and stderr a shell sees."""
    env = {**os.environ, "RLHF_DATABASE_URL": db_url, "RLHF_HOME": str(tmp_path / "home")}
    env.pop("RLHF_DEBUG", None)
    env.pop("RLHF_USER", None)
    run = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "snapshot", "show", BIG],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    # no account given: the first sentence asks who is running it, or the id is not found
    assert len(run.stderr.strip().splitlines()) == 1


# --- a full disk: SQLite's max_page_count -------------------------------------------------


@contextlib.contextmanager
def database_full(spare: int = 0):
    """Every new SQLite connection may grow the file by `spare` pages at most: the page after
    that fails with SQLITE_FULL ("database or disk is full"), as on a full disk."""

    def cap(dbapi_conn, _record) -> None:
        if type(dbapi_conn).__module__ != "sqlite3":
            return
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages + spare}")

    event.listen(Engine, "connect", cap)
    try:
        yield
    finally:
        event.remove(Engine, "connect", cap)


def run_cli(*args: str, user: str | None = "admin") -> tuple[int, str, str]:
    """`rlhf ...` in-process (the `cli` fixture runs on both databases; these are SQLite's)."""
    import app.cli.common as common
    from app.cli.main import main

    common._sessionmaker = None
    if user:
        os.environ["RLHF_USER"] = user
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    common._sessionmaker = None
    return code, out.getvalue(), err.getvalue()


def noise(n: int, rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=n))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def sqlite_admin(sqlite_url, monkeypatch, Session_sqlite):
    monkeypatch.setenv("RLHF_USER", "admin")
    with Session_sqlite.begin() as s:
        users.add_user(s, name="admin", role="admin", password="long-enough-pass-9")
    return Session_sqlite


@pytest.fixture
def Session_sqlite(sqlite_url):  # noqa: N802
    from labeling.db import make_engine, make_sessionmaker

    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_import_on_a_full_database_keeps_what_was_imported_before(sqlite_admin, tmp_path):
    Session = sqlite_admin  # noqa: N806
    rng = random.Random(0)
    assert run_cli("projects", "create", "sft", "--kind", "sft")[0] == 0
    first = write_jsonl(tmp_path / "first.jsonl", [{"prompt": f"q{i}"} for i in range(20)])
    assert run_cli("import", str(first), "--project", "sft")[0] == 0
    assert count(Session, Prompt) == 20
    big = [{"prompt": f"big {i} {noise(400, rng)}"} for i in range(1500)]
    second = write_jsonl(tmp_path / "second.jsonl", big)

    with database_full():
        code, _out, err = run_cli("import", str(second), "--project", "sft")
    assert code == 1
    assert "disk is full" in one_sentence(err)
    assert count(Session, Prompt) == 20  # all or nothing; the first import is intact
    # space freed: the same import goes through
    assert run_cli("import", str(second), "--project", "sft")[0] == 0
    assert count(Session, Prompt) == 1520


def test_claims_and_submits_on_a_filling_database_fail_in_one_sentence(sqlite_admin):
    """Labelers keep working while the database fills: at some point a claim or submit
    cannot get a page. That action fails with a sentence through the UI's transaction;
    every label submitted before, and the draft saved before, are still there."""
    import streamlit as st

    from app.ui.db import transaction
    from labeling import labeler_views as lv

    Session = sqlite_admin  # noqa: N806
    st.cache_resource.clear()  # the UI's engine: point it at this test's database
    rng = random.Random(1)
    with Session.begin() as s:
        p = projects.create_project(s, name="p", kind="pairwise", overlap=1)
        for i in range(400):
            prompt = add_prompt(s, p, f"q{i}", source="t")
            a, b = add_response(s, prompt, f"a{i}"), add_response(s, prompt, f"b{i}")
            add_compare_task(s, p, prompt, a, b)
        w = projects.create_project(s, name="w", kind="sft")
        add_prompt(s, w, "write something", source="t")
        from labeling.tasks import add_write_task

        add_write_task(s, w, s.scalar(select(Prompt).where(Prompt.project_id == w.id)))
        pid, wid = p.id, w.id
    uid = labeler(Session, "lab")
    with transaction() as s:
        view = lv.open_task(s, user_id=uid, project_id=wid)
        lv.save_write_draft(s, assignment_id=view.assignment_id, user_id=uid, text="my draft")

    submitted, failure = 0, None
    try:
        with database_full(spare=10):
            st.cache_resource.clear()  # a new engine: its connections get the cap
            for i in range(400):
                try:
                    with transaction() as s:
                        view = lv.open_task(s, user_id=uid, project_id=pid)
                        if view is None:
                            break
                    with transaction() as s:
                        lv.submit_compare(
                            s, user_id=uid, assignment_id=view.assignment_id, screen_choice="a",
                            rationale=noise(300, rng), idempotency_key=f"k{i}",
                        )  # fmt: skip
                    submitted += 1
                except Unavailable as exc:
                    failure = exc
                    break
    finally:
        st.cache_resource.clear()
    assert failure is not None, "the database never filled up"
    assert str(failure).startswith("the database's disk is full")
    from labeling.models import Preference

    assert count(Session, Preference) == submitted > 0
    with Session() as s:
        draft = s.scalar(select(Draft).where(Draft.user_id == uid))
        assert draft.payload == {"text": "my draft"}


def test_import_on_a_full_postgres_tablespace_keeps_what_was_imported_before(
    pg_database, tmp_path, monkeypatch
):
    """PostgreSQL's own disk-full error (SQLSTATE 53100): the prompts table moved onto a
    tablespace on a tiny tmpfs. Needs root and a server on this machine; not marked
    `postgres`, so that a CI run without root skips it without failing the run."""
    import pwd

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from tests.conftest import _truncate_pg

    if os.geteuid() != 0 or make_url(pg_database).host not in ("127.0.0.1", "localhost"):
        pytest.skip("needs root and a PostgreSQL server on this machine")
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres system user to own the tablespace")
    _truncate_pg(pg_database)
    monkeypatch.setenv("RLHF_DATABASE_URL", pg_database)
    monkeypatch.setenv("RLHF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RLHF_USER", "admin")
    from labeling.db import make_engine, make_sessionmaker

    engine = make_engine(pg_database)
    Session = make_sessionmaker(engine)  # noqa: N806
    with Session.begin() as s:
        users.add_user(s, name="admin", role="admin", password="long-enough-pass-9")
    assert run_cli("projects", "create", "sft", "--kind", "sft")[0] == 0
    first = write_jsonl(tmp_path / "first.jsonl", [{"prompt": f"q{i}"} for i in range(20)])
    assert run_cli("import", str(first), "--project", "sft")[0] == 0
    rng = random.Random(3)
    big = [{"prompt": f"big {i} {noise(400, rng)}"} for i in range(1500)]
    second = write_jsonl(tmp_path / "second.jsonl", big)

    import tempfile

    # Under /tmp itself: the server's user cannot traverse pytest's private tmp_path.
    disk = Path(tempfile.mkdtemp(prefix="rlhf-pgdisk-", dir="/tmp"))
    space = f"rlhf_tiny_{os.getpid()}"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size=256k,mode=0700,uid={owner.pw_uid},"
         f"gid={owner.pw_gid}", "tmpfs", str(disk)],
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    admin = create_engine(pg_database, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE TABLESPACE {space} LOCATION '{disk}'"))
            conn.execute(text(f"ALTER TABLE prompts SET TABLESPACE {space}"))
        engine.dispose()
        code, _out, err = run_cli("import", str(second), "--project", "sft")
        assert code == 1
        assert "disk is full" in one_sentence(err)
        assert count(Session, Prompt) == 20
    finally:
        with admin.connect() as conn:
            conn.execute(text("ALTER TABLE prompts SET TABLESPACE pg_default"))
            conn.execute(text(f"DROP TABLESPACE IF EXISTS {space}"))
        admin.dispose()
        subprocess.run(["umount", "-l", str(disk)], check=False)
        shutil.rmtree(disk, ignore_errors=True)
    assert count(Session, Prompt) == 20
    assert run_cli("import", str(second), "--project", "sft")[0] == 0
    assert count(Session, Prompt) == 1520
    engine.dispose()


# --- a full disk: a real, tiny tmpfs (root only) ------------------------------------------


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a filler file until the file system says ENOSPC."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 4096)
        with contextlib.suppress(OSError):  # the last few bytes a page does not hold
            while True:
                fh.write(b"\0")
    return filler


def test_snapshot_on_a_full_disk_writes_nothing_and_keeps_the_labels(sqlite_admin, tmp_path):
    Session = sqlite_admin  # noqa: N806
    rng = random.Random(2)
    assert run_cli("projects", "create", "sft", "--kind", "sft")[0] == 0
    rows = [{"prompt": f"q{i} {noise(50, rng)}", "completion": noise(600, rng)} for i in range(300)]
    assert (
        run_cli("import", str(write_jsonl(tmp_path / "d.jsonl", rows)), "--project", "sft")[0] == 0
    )
    assert count(Session, Demonstration) == 300
    snapshots_dir = Path(os.environ["RLHF_HOME"]) / "snapshots"
    with tiny_tmpfs(snapshots_dir, "64k"):
        code, _out, err = run_cli("snapshot", "create", "--project", "sft", "--kind", "sft")
        assert code == 1
        line = one_sentence(err)
        assert "disk full" in line and "nothing was written" in line
        assert list(snapshots_dir.iterdir()) == []  # the temp dir went with the failure
        assert count(Session, Snapshot) == 0
        assert count(Session, Demonstration) == 300
        subprocess.run(["mount", "-o", "remount,size=64m", str(snapshots_dir)], check=True)
        code, out, err = run_cli("snapshot", "create", "--project", "sft", "--kind", "sft")
        assert code == 0, err
        assert count(Session, Snapshot) == 1


def test_a_claim_on_a_full_disk_shows_a_sentence_in_the_page(tmp_path, sqlite_template,
                                                             monkeypatch):  # fmt: skip
    """The SQLite file on a tmpfs that fills up: the labeler opening the compare page gets
    a sentence (no traceback), their saved draft survives, and once space is freed the
    same page hands out the task."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from app.ui import state
    from labeling import demo
    from labeling import labeler_views as lv
    from labeling.accounts import web_sessions
    from labeling.db import make_engine, make_sessionmaker

    with tiny_tmpfs(tmp_path / "disk", "8m") as disk:
        shutil.copy(sqlite_template, disk / "rlhf.db")
        url = f"sqlite:///{disk / 'rlhf.db'}"
        monkeypatch.setenv("RLHF_DATABASE_URL", url)
        monkeypatch.setenv("RLHF_HOME", str(tmp_path / "home"))
        st.cache_resource.clear()
        engine = make_engine(url)
        Session = make_sessionmaker(engine)  # noqa: N806
        # An open connection keeps the WAL file in place: later commits append to it.
        keeper = engine.connect()
        try:
            with Session.begin() as s:
                demo.seed(s)
                uid = s.scalar(select(User.id).where(User.name == "labeler"))
                wid = s.scalar(select(Project.id).where(Project.name == "demo-write"))
                token = web_sessions.start(s, user_id=uid)
            with Session.begin() as s:
                view = lv.open_task(s, user_id=uid, project_id=wid)
                lv.save_write_draft(s, assignment_id=view.assignment_id, user_id=uid, text="kept")
            filler = fill(disk)

            at = AppTest.from_string(
                "from app.ui.pages import compare\ncompare.render()\n", default_timeout=30
            )
            at.session_state[state.TOKEN] = token
            at.run()
            assert not at.exception, at.exception
            errors = [e.value for e in at.error]
            assert any("disk is full" in e for e in errors), errors
            filler.unlink()
            with Session() as s:
                assert s.scalar(select(Draft.payload).where(Draft.user_id == uid)) == {
                    "text": "kept"
                }
                assert s.scalar(
                    select(func.count()).select_from(Assignment).where(
                        Assignment.user_id == uid, Assignment.project_id != wid
                    )
                ) == 0  # fmt: skip
            at.run()
            assert not at.exception and not at.error
            with Session() as s:
                assert s.scalar(
                    select(func.count()).select_from(Assignment).where(
                        Assignment.user_id == uid, Assignment.project_id != wid
                    )
                ) == 1  # fmt: skip
        finally:
            keeper.close()
            engine.dispose()
            st.cache_resource.clear()


# --- stale temp directories ---------------------------------------------------------------


def test_stale_temp_dirs_are_removed_and_fresh_ones_kept(tmp_path):
    home = tmp_path / "home"
    stale, fresh, kept = [], [], []
    for sub in ("snapshots", "checkpoints", "models"):
        old = home / sub / ".tmp-old"
        (old / "inner").mkdir(parents=True)
        (old / "inner" / "part.parquet").write_bytes(b"x")
        os.chmod(old / "inner" / "part.parquet", 0o444)
        new = home / sub / ".tmp-new"
        new.mkdir()
        (new / "file").write_bytes(b"x")
        done = home / sub / "finished"
        done.mkdir()
        stale.append(old)
        fresh.append(new)
        kept.append(done)
    long_ago = time.time() - 2 * 3600
    for old in stale:
        for p in [old, old / "inner", old / "inner" / "part.parquet"]:
            os.utime(p, (long_ago, long_ago))
        os.utime(done := old.parent / "finished", (long_ago, long_ago))
        assert done.exists()
    # a stale dir whose file was touched a minute ago belongs to a live writer
    live = home / "checkpoints" / ".tmp-live"
    live.mkdir()
    (live / "model.safetensors").write_bytes(b"x")
    os.utime(live, (long_ago, long_ago))

    removed = clean_stale_temp_dirs(home)
    assert sorted(removed) == sorted(stale)
    assert all(not p.exists() for p in stale)
    assert all(p.exists() for p in fresh + kept + [live])


def test_snapshot_create_cleans_what_a_killed_one_left(cli, admin, Session, tmp_path):
    home = Path(os.environ["RLHF_HOME"])
    left = home / "snapshots" / ".tmp-killed"
    left.mkdir(parents=True)
    (left / "train.parquet").write_bytes(b"half a file")
    long_ago = time.time() - 3 * 3600
    os.utime(left / "train.parquet", (long_ago, long_ago))
    os.utime(left, (long_ago, long_ago))
    result = cli("snapshot", "create", "--project", "nope", "--kind", "sft", user=admin)
    assert result.code == 1  # no such project, but the start-up cleanup ran
    assert not left.exists()

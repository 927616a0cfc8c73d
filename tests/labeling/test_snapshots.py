"""Snapshots on SQLite and PostgreSQL: rows, margins, splits, stats, identity, atomicity, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from labeling import snapshots
from labeling.errors import InvalidInput, NotFound
from labeling.hashing import prompt_hash, sha256_text, task_hash
from labeling.models import (
    AuthorKind,
    Demonstration,
    Origin,
    Preference,
    Project,
    ProjectKind,
    Prompt,
    Ranking,
    Response,
    Role,
    Snapshot,
    Task,
    TaskCandidate,
    User,
)
from labeling.settings import load_settings

MATH = [{"role": "user", "content": "What is 2+2?"}]
FRANCE = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Capital of France?"},
]
COLOUR = [{"role": "user", "content": "Name a colour."}]
GOLD = [{"role": "user", "content": "Is water wet?"}]


class Builder:
    """Labels through the ORM, the way the services store them."""

    def __init__(self, s, project_name: str = "demo"):
        self.s = s
        self.project = Project(name=project_name, kind=ProjectKind.pairwise)
        s.add(self.project)
        s.flush()

    def user(self, name: str, role: Role = Role.labeler) -> User:
        user = self.s.scalar(select(User).where(User.name == name))
        if user is None:
            user = User(name=name, role=role)
            self.s.add(user)
            self.s.flush()
        return user

    def prompt(self, messages, split: str) -> Prompt:
        prompt = Prompt(
            project_id=self.project.id,
            messages=messages,
            content_hash=prompt_hash(messages),
            split=split,
        )
        self.s.add(prompt)
        self.s.flush()
        return prompt

    def response(self, prompt: Prompt, text: str) -> Response:
        response = Response(
            prompt_id=prompt.id,
            text=text,
            content_hash=sha256_text(text),
            author_kind=AuthorKind.imported,
        )
        self.s.add(response)
        self.s.flush()
        return response

    def task(self, kind: str, prompt: Prompt, responses=(), *, gold: bool = False, a=None, b=None):
        shas = [r.content_hash for r in responses] + [r.content_hash for r in (a, b) if r]
        task = Task(
            project_id=self.project.id,
            prompt_id=prompt.id,
            kind=kind,
            response_a_id=a.id if a else None,
            response_b_id=b.id if b else None,
            content_hash=task_hash(kind + ("-gold" if gold else ""), prompt.content_hash, shas),
            is_gold=gold,
            gold={"answer": "a"} if gold else None,
        )
        self.s.add(task)
        self.s.flush()
        for position, response in enumerate(responses):
            self.s.add(TaskCandidate(task_id=task.id, position=position, response_id=response.id))
        self.s.flush()
        return task

    def compare(self, prompt, text_a, text_b, *, gold=False):
        a, b = self.response(prompt, text_a), self.response(prompt, text_b)
        return self.task("compare", prompt, a=a, b=b, gold=gold)

    def prefer(self, task, user, choice, strength=None):
        self.s.add(
            Preference(
                task_id=task.id,
                user_id=user.id if user else None,
                origin=Origin.labeler if user else Origin.imported,
                choice=choice,
                strength=strength,
            )
        )
        self.s.flush()

    def rank(self, prompt, texts, order, user):
        responses = [self.response(prompt, t) for t in texts]
        task = self.task("rank", prompt, responses)
        by_text = {r.text: r.id for r in responses}
        self.s.add(Ranking(task_id=task.id, user_id=user.id, order=[by_text[t] for t in order]))
        self.s.flush()
        return task

    def demonstrate(self, prompt, text, user, *, gold=False):
        task = self.task("write", prompt, gold=gold)
        response = self.response(prompt, text)
        self.s.add(
            Demonstration(
                task_id=task.id,
                user_id=user.id if user else None,
                origin=Origin.labeler if user else Origin.imported,
                response_id=response.id,
            )
        )
        self.s.flush()
        return task


def seed(s, project_name: str = "demo") -> Builder:
    """math (train): 3 decided preferences; france (heldout): tie, both_bad, one imported b;
    colour (train): a ranking of 3; gold: one preference and one demonstration on gold tasks;
    demonstrations on math (labeler, train) and france (import, heldout)."""
    b = Builder(s, project_name)
    lab1, lab2 = b.user("lab1"), b.user("lab2")
    math, france = b.prompt(MATH, "train"), b.prompt(FRANCE, "heldout")
    colour, gold = b.prompt(COLOUR, "train"), b.prompt(GOLD, "train")

    t1 = b.compare(math, "4", "5")
    b.prefer(t1, lab1, "a", 3)
    b.prefer(t1, lab2, "b", 1)
    b.prefer(t1, None, "a")  # imported, no strength
    t2 = b.compare(france, "Paris", "Lyon")
    b.prefer(t2, lab1, "tie")
    b.prefer(t2, lab2, "both_bad")
    b.prefer(t2, None, "a", 2)
    b.rank(colour, ["red", "blue", "green"], ["green", "red", "blue"], lab1)
    tg = b.compare(gold, "Yes", "No", gold=True)
    b.prefer(tg, lab1, "a", 2)

    b.demonstrate(math, "2+2 is 4.", lab1)
    b.demonstrate(france, "Paris.", None)
    b.demonstrate(gold, "Wet.", lab2, gold=True)
    return b


def _snap(Session, kind, **kwargs):  # noqa: N803
    with Session.begin() as s:
        project = s.scalar(select(Project).where(Project.name == kwargs.pop("project", "demo")))
        snapshot, created = snapshots.create_snapshot(s, project=project, kind=kind, **kwargs)
        rows = {split: snapshots.read_split(snapshot, split) for split in snapshots.SPLITS}
        return snapshot, created, rows


def _texts(conversation):
    return [m["content"] for m in conversation]


def test_preference_snapshot(Session):  # noqa: N803
    with Session.begin() as s:
        seed(s)
    snapshot, created, rows = _snap(Session, "preference")
    assert created
    assert snapshot.rows == 7 and snapshot.splits == {"train": 6, "heldout": 1}
    assert snapshot.stats == {
        "labels": 7, "preferences": 6, "rankings": 1, "ties": 1, "both_bad": 1,
        "gold_excluded": 1, "ranking_pairs": 3, "identical_pairs": 0, "invalid_rankings": 0,
        "rows": 7,
    }  # fmt: skip
    files = snapshots.snapshot_files(snapshot)
    assert files["train"].parent.parent == load_settings().snapshots_dir
    assert pq.read_schema(files["train"]).names == [
        "prompt", "chosen", "rejected", "margin", "prompt_hash", "task_hash", "label_kind",
        "origin",
    ]  # fmt: skip
    assert all(f.stat().st_mode & 0o222 == 0 for f in files.values())  # written read-only

    train = {
        (r["chosen"][0]["content"], r["rejected"][0]["content"], r["margin"]) for r in rows["train"]
    }
    assert train == {
        ("4", "5", 1.0),  # much better
        ("5", "4", 1 / 3),  # slightly better
        ("4", "5", 0.0),  # imported, no strength
        ("green", "red", 0.0),  # the ranking expands into every ordered pair
        ("green", "blue", 0.0),
        ("red", "blue", 0.0),
    }
    (held,) = rows["heldout"]
    assert held["prompt"] == FRANCE  # system turn kept, prompt is a list of messages
    assert held["chosen"] == [{"role": "assistant", "content": "Paris"}]
    assert held["rejected"] == [{"role": "assistant", "content": "Lyon"}]
    assert held["margin"] == pytest.approx(2 / 3)
    assert held["origin"] == "import" and held["label_kind"] == "preference"
    assert held["prompt_hash"] == prompt_hash(FRANCE)
    ranking_rows = [r for r in rows["train"] if r["label_kind"] == "ranking"]
    assert len(ranking_rows) == 3 and all(r["origin"] == "labeler" for r in ranking_rows)
    # Gold and tie/both_bad judgments never become pairs.
    assert not any(r["chosen"][0]["content"] in {"Yes", "No"} for r in rows["train"])
    keys = [(r["prompt_hash"], r["task_hash"]) for r in rows["train"]]
    assert keys == sorted(keys)

    manifest = json.loads(files["manifest"].read_text())
    assert manifest["sha256"] == snapshot.sha256 and manifest["splits"] == snapshot.splits
    assert manifest["margins"] == {"1": 1 / 3, "2": 2 / 3, "3": 1.0, "none": 0.0}
    assert snapshots.verify_snapshot(snapshot) == snapshot.sha256


def test_kto_snapshot(Session):  # noqa: N803
    with Session.begin() as s:
        seed(s)
    snapshot, created, rows = _snap(Session, "kto")
    assert created and snapshot.splits == {"train": 8, "heldout": 4}
    assert snapshot.stats["ties"] == 1 and snapshot.stats["both_bad"] == 1
    assert snapshot.stats["ranking_middle_left_out"] == 1
    assert pq.read_schema(snapshots.snapshot_files(snapshot)["train"]).field("label").type == "bool"

    def labelled(split):
        return sorted((r["completion"][0]["content"], r["label"]) for r in rows[split])

    # math: a, b, a -> 4 True twice, 5 True once; colour ranking: best True, worst False.
    assert labelled("train") == sorted(
        [("4", True), ("5", False), ("5", True), ("4", False), ("4", True), ("5", False),
         ("green", True), ("blue", False)]
    )  # fmt: skip
    # france: both_bad -> both False; the tie is left out; imported a -> Paris True.
    assert labelled("heldout") == sorted(
        [("Paris", False), ("Lyon", False), ("Paris", True), ("Lyon", False)]
    )
    assert all(r["prompt"] == FRANCE for r in rows["heldout"])


def test_sft_snapshot_and_empty_split(Session):  # noqa: N803
    with Session.begin() as s:
        seed(s)
    snapshot, _, rows = _snap(Session, "sft")
    assert snapshot.splits == {"train": 1, "heldout": 1}
    assert snapshot.stats == {"labels": 2, "demonstrations": 2, "gold_excluded": 1, "rows": 2}
    assert rows["train"][0]["messages"] == MATH + [{"role": "assistant", "content": "2+2 is 4."}]
    assert rows["heldout"][0]["messages"][-1] == {"role": "assistant", "content": "Paris."}
    assert rows["heldout"][0]["origin"] == "import"

    # Only the labeler's demonstration: the heldout split is empty but still a valid file.
    only, created, rows = _snap(Session, "sft", origin="labeler")
    assert created and only.sha256 != snapshot.sha256 and only.filters["origin"] == "labeler"
    assert only.splits == {"train": 1, "heldout": 0} and rows["heldout"] == []
    empty = pq.read_table(snapshots.snapshot_files(only)["heldout"])
    assert empty.num_rows == 0
    assert empty.schema.names == ["messages", "prompt_hash", "task_hash", "label_kind", "origin"]
    assert str(empty.schema.field("messages").type) == (
        "list<element: struct<role: string, content: string>>"
    )


def test_include_gold(Session):  # noqa: N803
    with Session.begin() as s:
        seed(s)
    default, _, _ = _snap(Session, "preference")
    with_gold, created, rows = _snap(Session, "preference", include_gold=True)
    assert created and with_gold.sha256 != default.sha256
    assert with_gold.filters == {"include_gold": True}
    assert with_gold.stats["gold_excluded"] == 0 and with_gold.rows == default.rows + 1
    assert ("Yes", "No") in {
        (r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows["train"]
    }


def test_same_data_same_hash_and_one_more_label_changes_it(Session):  # noqa: N803
    with Session.begin() as s:
        seed(s)
    first, created, _ = _snap(Session, "preference")
    assert created
    again, created_again, _ = _snap(Session, "preference")
    assert not created_again and again.id == first.id and again.sha256 == first.sha256
    assert len([p for p in load_settings().snapshots_dir.iterdir()]) == 1

    # A tie adds no pair but is a label: the stats and so the hash change.
    with Session.begin() as s:
        b = Builder.__new__(Builder)
        b.s, b.project = s, s.scalar(select(Project).where(Project.name == "demo"))
        math = s.scalar(select(Prompt).where(Prompt.content_hash == prompt_hash(MATH)))
        b.prefer(b.compare(math, "four", "five"), b.user("lab3"), "tie")
    tied, created, _ = _snap(Session, "preference")
    assert created and tied.sha256 != first.sha256 and tied.rows == first.rows
    assert tied.stats["ties"] == 2

    with Session.begin() as s:
        b = Builder.__new__(Builder)
        b.s, b.project = s, s.scalar(select(Project).where(Project.name == "demo"))
        math = s.scalar(select(Prompt).where(Prompt.content_hash == prompt_hash(MATH)))
        b.prefer(b.compare(math, "4.", "22"), b.user("lab1"), "a", 2)
    grown, created, rows = _snap(Session, "preference")
    assert created and grown.sha256 not in {first.sha256, tied.sha256}
    assert grown.splits == {"train": 7, "heldout": 1}
    assert ("4.", "22", 2 / 3) in {
        (r["chosen"][0]["content"], r["rejected"][0]["content"], r["margin"]) for r in rows["train"]
    }
    with Session() as s:
        assert len(snapshots.list_snapshots(s)) == 3
        project = s.scalar(select(Project).where(Project.name == "demo"))
        assert [x.id for x in snapshots.list_snapshots(s, project=project)] == [
            grown.id, tied.id, first.id,
        ]  # fmt: skip


def test_hash_is_over_content_not_database_ids(Session):  # noqa: N803
    with Session.begin() as s:
        seed(s, "first")
    # The same labels stored in another order (other ids) in a second project.
    with Session.begin() as s:
        b = Builder(s, "second")
        lab1, lab2 = b.user("lab1"), b.user("lab2")
        tg = b.compare(b.prompt(GOLD, "train"), "Yes", "No", gold=True)
        b.prefer(tg, lab1, "a", 2)
        colour = b.prompt(COLOUR, "train")
        b.rank(colour, ["red", "blue", "green"], ["green", "red", "blue"], lab1)
        france, math = b.prompt(FRANCE, "heldout"), b.prompt(MATH, "train")
        t2 = b.compare(france, "Paris", "Lyon")
        b.prefer(t2, None, "a", 2)
        b.prefer(t2, lab2, "both_bad")
        b.prefer(t2, lab1, "tie")
        t1 = b.compare(math, "4", "5")
        b.prefer(t1, None, "a")
        b.prefer(t1, lab2, "b", 1)
        b.prefer(t1, lab1, "a", 3)
    for kind in ("preference", "kto"):
        one, _, rows_one = _snap(Session, kind, project="first")
        two, created, rows_two = _snap(Session, kind, project="second")
        assert created and one.id != two.id and one.path != two.path
        assert one.sha256 == two.sha256
        assert rows_one == rows_two


def test_tampered_files_fail_verification(Session):  # noqa: N803
    with Session.begin() as s:
        seed(s)
    snapshot, _, rows = _snap(Session, "preference")
    path = snapshots.snapshot_files(snapshot)["heldout"]
    table = pq.read_table(path)
    rows["heldout"][0]["margin"] = 1.0
    path.chmod(0o644)
    pq.write_table(table.from_pylist(rows["heldout"], schema=table.schema), path)
    with pytest.raises(InvalidInput, match="does not match its hash"):
        snapshots.verify_snapshot(snapshot)


def test_no_labels_is_refused(Session):  # noqa: N803
    with Session.begin() as s:
        b = Builder(s, "empty")
        b.compare(b.prompt(MATH, "train"), "4", "5")  # a task, but no labels
    for kind in ("sft", "preference", "kto"):
        with Session.begin() as s:
            with pytest.raises(InvalidInput, match="no labels to snapshot"):
                snapshots.create_snapshot(s, project="empty", kind=kind)
    # Only ties: nothing to train on either, and the message says what was left out.
    with Session.begin() as s:
        b = Builder(s, "ties")
        b.prefer(b.compare(b.prompt(MATH, "train"), "4", "5"), b.user("lab1"), "tie")
    with Session.begin() as s:
        project = s.scalar(select(Project).where(Project.name == "ties"))
        with pytest.raises(InvalidInput, match=r"no labels to snapshot.*\"ties\":1"):
            snapshots.create_snapshot(s, project=project, kind="preference")
        with pytest.raises(InvalidInput, match="unknown snapshot kind"):
            snapshots.create_snapshot(s, project=project, kind="dpo")
    assert not load_settings().snapshots_dir.exists() or not any(
        load_settings().snapshots_dir.iterdir()
    )


def test_failed_flush_removes_the_directory(Session):  # noqa: N803
    with Session.begin() as s:
        seed(s)
    with Session() as s:
        project = s.scalar(select(Project).where(Project.name == "demo"))
        with pytest.raises(IntegrityError):  # created_by names no user: the FK fails
            snapshots.create_snapshot(s, project=project, kind="sft", created_by=10**9)
        s.rollback()
    assert list(load_settings().snapshots_dir.iterdir()) == []  # no dir, no temp dir
    with Session() as s:
        assert s.scalars(select(Snapshot)).all() == []


def test_rolled_back_snapshot_leaves_a_reusable_directory(Session):  # noqa: N803
    with Session.begin() as s:
        seed(s)
    with Session() as s:
        project = s.scalar(select(Project).where(Project.name == "demo"))
        lost, created = snapshots.create_snapshot(s, project=project, kind="sft")
        assert created
        path = snapshots.snapshot_dir(lost)
        s.rollback()  # the caller's transaction failed after the files were in place
    assert path.is_dir()
    snapshot, created, _ = _snap(Session, "sft")
    assert created and snapshots.snapshot_dir(snapshot) == path
    assert snapshots.verify_snapshot(snapshot) == snapshot.sha256

    # Files gone but the row is there: the next create of the same content restores them.
    for file in path.iterdir():
        file.unlink()
    path.rmdir()
    again, created, _ = _snap(Session, "sft")
    assert not created and again.id == snapshot.id and path.is_dir()
    assert snapshots.verify_snapshot(again) == snapshot.sha256


def test_get_snapshot_not_found(Session):  # noqa: N803
    with Session() as s:
        with pytest.raises(NotFound):
            snapshots.get_snapshot(s, 12345)
        with pytest.raises(NotFound, match="no project named"):
            snapshots.create_snapshot(s, project="nope", kind="sft")


# --- the CLI ----------------------------------------------------------------------------


def _user(cli, admin, name, role):
    result = cli(
        "users",
        "add",
        name,
        "--role",
        role,
        "--password-stdin",
        stdin="long-password\n",
        user=admin,
    )
    assert result.code == 0, result.err


def test_cli_create_list_show(cli, admin, Session):  # noqa: N803
    with Session.begin() as s:
        seed(s)
    _user(cli, admin, "eng", "engineer")

    first = cli(
        "snapshot", "create", "--project", "demo", "--kind", "preference", "--json", user="eng"
    )
    assert first.code == 0, first.err
    out = first.json()
    assert {"id", "sha256", "rows", "splits", "path", "created", "stats"} <= set(out)
    assert out["rows"] == 7 and out["splits"] == {"train": 6, "heldout": 1}
    assert out["created"] is True and len(out["sha256"]) == 64
    assert out["stats"]["ties"] == 1 and out["created_by"] == "eng"
    path = Path(out["path"])
    assert path.parent == load_settings().snapshots_dir and path.name.endswith(out["sha256"])
    assert sorted(p.name for p in path.iterdir()) == [
        "heldout.parquet",
        "manifest.json",
        "train.parquet",
    ]
    with Session() as s:
        row = s.get(Snapshot, out["id"])
        assert row.sha256 == out["sha256"] and row.created_by is not None

    again = cli(
        "snapshot", "create", "--project", "demo", "--kind", "preference", "--json", user=admin
    )
    assert again.code == 0 and again.json()["id"] == out["id"]
    assert again.json()["created"] is False

    text = cli("snapshot", "create", "--project", "demo", "--kind", "sft", user=admin)
    assert text.code == 0 and "created snapshot" in text.out and "1 heldout" in text.out

    listed = cli("snapshot", "list", "--json", user="eng")
    assert listed.code == 0
    assert [(r["kind"], r["rows"]) for r in listed.json()] == [("sft", 2), ("preference", 7)]
    assert all({"id", "sha256", "rows", "splits", "path"} <= set(r) for r in listed.json())
    table = cli("snapshot", "list", "--project", "demo", user="eng")
    assert table.code == 0 and "SHA256" in table.out and out["sha256"][:12] in table.out

    shown = cli("snapshot", "show", str(out["id"]), "--json", user="eng")
    assert shown.code == 0
    assert {k: shown.json()[k] for k in ("id", "sha256", "rows", "splits", "path")} == {
        k: out[k] for k in ("id", "sha256", "rows", "splits", "path")
    }
    plain = cli("snapshot", "show", str(out["id"]), user="eng")
    assert plain.code == 0 and out["sha256"] in plain.out and "ties=1" in plain.out


def test_cli_errors_and_roles(cli, admin, Session):  # noqa: N803
    with Session.begin() as s:
        seed(s)
        Builder(s, "nothing")
    _user(cli, admin, "lab", "labeler")

    refused = cli("snapshot", "create", "--project", "demo", "--kind", "sft", "--json", user="lab")
    assert refused.code == 1 and refused.err.startswith("error:") and refused.out == ""
    assert cli("snapshot", "list", user="lab").code == 1
    assert cli("snapshot", "create", "--project", "demo", "--kind", "sft").code == 1  # nobody
    with Session() as s:
        assert s.scalars(select(Snapshot)).all() == []

    empty = cli("snapshot", "create", "--project", "nothing", "--kind", "sft", user=admin)
    assert empty.code == 1 and "error: no labels to snapshot" in empty.err
    unknown = cli("snapshot", "create", "--project", "nope", "--kind", "sft", user=admin)
    assert unknown.code == 1 and "no project named" in unknown.err
    missing = cli("snapshot", "show", "999", user=admin)
    assert missing.code == 1 and "no snapshot with id 999" in missing.err
    bad_kind = cli("snapshot", "create", "--project", "demo", "--kind", "dpo", user=admin)
    assert bad_kind.code == 2
    none = cli("snapshot", "list", user=admin)
    assert none.code == 0 and "(none)" in none.out

"""Quality-aware snapshots on SQLite and PostgreSQL: simulated labelers with known behaviour
(two careful ones, a random clicker, an always-left clicker, a contrarian) on overlap-3 items;
majority and Dawid–Skene aggregation, confidence, min_competence, exclude_labelers, reviews
(rows written directly as models.LabelReview), bad input, the CLI flags and the page."""

from __future__ import annotations

import json
import math
import random
import statistics
from dataclasses import dataclass, field

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from labeling import projects, snapshot_quality, snapshots
from labeling.accounts import users
from labeling.errors import InvalidInput
from labeling.models import (
    Demonstration,
    LabelReview,
    Origin,
    Preference,
    Project,
    Ranking,
    ReviewAction,
    Snapshot,
    Task,
)
from labeling.quality import quality_report
from labeling.settings import load_settings
from labeling.tasks import (
    add_compare_task,
    add_prompt,
    add_rank_task,
    add_response,
    add_write_task,
)

FLIP = {"a": "b", "b": "a"}
BAD = ("random", "always-left", "contrarian")
CALIBRATION, OUTVOTE = 60, 12  # items labeled by both careful ones / by careful-1 and two bad
STRENGTH = {"careful-1": 3, "careful-2": 2}  # the others press 1 ("slightly better")


def behave(name: str, truth: str, left: str, rng: random.Random) -> str:
    if name == "careful-1":
        return truth if rng.random() < 0.95 else FLIP[truth]
    if name == "careful-2":
        return truth if rng.random() < 0.9 else FLIP[truth]
    if name == "random":
        return rng.choice("ab")
    if name == "always-left":
        return left
    if name == "contrarian":
        return FLIP[truth]
    raise AssertionError(name)


@dataclass
class Item:
    task_id: int
    task_hash: str
    truth: str | None
    text: dict[str, str]  # "a" / "b" -> the answer's text
    labels: list[tuple[str, str, int | None, int]] = field(default_factory=list)
    # (labeler, choice, strength, preference id)


@dataclass
class Sim:
    project_id: int
    items: dict[str, Item]  # task hash -> item
    user_ids: dict[str, int]
    outvoted: list[str]  # task hashes: careful-1 right, random and always-left both wrong
    vote_tie: str  # careful-2 against the contrarian only
    tie: str  # three ties
    both_bad: str  # three both_bad


def simulate(Session, name: str = "sim") -> Sim:  # noqa: N803
    """CALIBRATION items labeled by careful-1, careful-2 and one bad labeler in turn; OUTVOTE
    items by careful-1, random and always-left, the wrong answer shown on the left; one item
    only careful-2 and the contrarian labeled; a unanimous tie and a unanimous both_bad; and
    'newbie' alone on 3 items (too few labels for a competence)."""
    rng = random.Random(11)
    items: dict[str, Item] = {}
    with Session.begin() as s:
        p = projects.create_project(s, name=name, kind="pairwise", overlap=3)
        people = ("careful-1", "careful-2", *BAD, "newbie")
        ids = {n: users.add_user(s, name=n, role="labeler", password=None).id for n in people}
        users.add_user(s, name="boss", role="admin", password=None)

        def item(i: int, truth: str | None) -> Item:
            prompt = add_prompt(s, p, f"question {i}?")
            a, b = add_response(s, prompt, f"answer A{i}"), add_response(s, prompt, f"answer B{i}")
            task = add_compare_task(s, p, prompt, a, b)
            it = Item(task.id, task.content_hash, truth, {"a": a.text, "b": b.text})
            items[task.content_hash] = it
            return it

        def label(it: Item, who: str, choice: str, strength: int | None = None, left="a"):
            task = s.get(Task, it.task_id)
            if choice in ("a", "b") and strength is None:
                strength = STRENGTH.get(who, 1)
            pref = Preference(
                task_id=task.id, user_id=ids[who], choice=choice, strength=strength,
                left_response_id=task.response_a_id if left == "a" else task.response_b_id,
                time_spent_ms=rng.randint(2_000, 20_000),
            )  # fmt: skip
            s.add(pref)
            s.flush()
            it.labels.append((who, choice, strength, pref.id))

        for i in range(CALIBRATION):
            it = item(i, rng.choice("ab"))
            for who in ("careful-1", "careful-2", BAD[i % 3]):
                left = rng.choice("ab")
                label(it, who, behave(who, it.truth, left, rng), left=left)
        outvoted = []
        for i in range(CALIBRATION, CALIBRATION + OUTVOTE):
            it = item(i, rng.choice("ab"))
            wrong = FLIP[it.truth]
            for who in ("careful-1", "random", "always-left"):
                label(it, who, behave(who, it.truth, wrong, rng), left=wrong)
            votes = {who: choice for who, choice, _, _ in it.labels}
            if votes["careful-1"] == it.truth and votes["random"] == wrong:
                outvoted.append(it.task_hash)
        vote_tie = item(100, "a")
        label(vote_tie, "careful-2", "a")
        label(vote_tie, "contrarian", "b")
        tie, both_bad = item(101, None), item(102, None)
        for who in ("careful-1", "careful-2", "random"):
            label(tie, who, "tie")
            label(both_bad, who, "both_bad")
        for i in range(103, 106):
            label(item(i, "a"), "newbie", "a")
        pid = p.id
    assert len(outvoted) >= 3  # the seed gives some; the tests below need a few
    return Sim(pid, items, ids, outvoted, vote_tie.task_hash, tie.task_hash, both_bad.task_hash)


def snap(Session, kind="preference", project="sim", **options):  # noqa: N803
    with Session.begin() as s:
        snapshot, created = snapshots.create_snapshot(s, project=project, kind=kind, **options)
        rows = [
            row for split in snapshots.SPLITS for row in snapshots.read_split(snapshot, split)
        ]  # fmt: skip
        return snapshot, created, rows


def chosen(row) -> str:
    return row["chosen"][0]["content"]


def choice_of(item: Item, row) -> str:
    return "a" if chosen(row) == item.text["a"] else "b"


def nothing_written(Session) -> None:  # noqa: N803
    with Session() as s:
        assert s.scalars(select(Snapshot)).all() == []
    root = load_settings().snapshots_dir
    assert not root.exists() or not any(root.iterdir())


@pytest.fixture
def sim(Session):  # noqa: N803
    return simulate(Session)


# --------------------------------------------------------------------------- aggregation


def test_majority_and_dawid_skene_differ_where_they_should(Session, sim):  # noqa: N803
    majority, created, m_rows = snap(Session, aggregate="majority")
    assert created
    dawid, created, d_rows = snap(Session, aggregate="dawid-skene")
    assert created and dawid.sha256 != majority.sha256
    for snapshot, rows in ((majority, m_rows), (dawid, d_rows)):
        names = pq.read_schema(snapshots.snapshot_files(snapshot)["train"]).names
        assert names == [
            "prompt", "chosen", "rejected", "margin", "confidence", "prompt_hash", "task_hash",
            "label_kind", "origin", "labeler",
        ]  # fmt: skip
        assert len({r["task_hash"] for r in rows}) == len(rows)  # one row per item
        assert all(r["labeler"] is None and r["origin"] == "labeler" for r in rows)
        assert all(0.5 <= r["confidence"] <= 1.0 for r in rows)
        # the unanimous tie and both_bad give no pair; 3 labels of newbie are 3 items
        assert not {sim.tie, sim.both_bad} & {r["task_hash"] for r in rows}
        assert snapshot.stats["aggregated_items"] == len(sim.items)
        assert snapshot.stats["ties"] == 1 and snapshot.stats["both_bad"] == 1
        assert snapshot.stats["labels"] == sum(len(it.labels) for it in sim.items.values())
    assert majority.filters == {
        "include_gold": False, "aggregate": "majority", "min_competence": None,
        "exclude_labelers": [], "exclude_rejected": True, "confidence_margin": False,
    }  # fmt: skip
    assert dawid.filters["aggregate"] == "dawid-skene"

    m = {r["task_hash"]: r for r in m_rows}
    d = {r["task_hash"]: r for r in d_rows}
    # Two bad labelers outvote the careful one under majority; Dawid–Skene follows her.
    for task_hash in sim.outvoted:
        item = sim.items[task_hash]
        assert choice_of(item, m[task_hash]) != item.truth
        assert m[task_hash]["confidence"] == pytest.approx(2 / 3, abs=1e-6)
        assert choice_of(item, d[task_hash]) == item.truth
        assert d[task_hash]["confidence"] > 0.8
    # careful-2 against the contrarian: no majority (left out, counted); Dawid–Skene reads
    # the contrarian inverted, so both say "a"
    assert sim.vote_tie not in m and majority.stats["vote_ties"] == 1
    assert choice_of(sim.items[sim.vote_tie], d[sim.vote_tie]) == "a"
    assert d[sim.vote_tie]["confidence"] > 0.9 and dawid.stats["vote_ties"] == 0

    # majority's confidence is the vote share, exactly
    for task_hash, row in m.items():
        votes = [c for _, c, _, _ in sim.items[task_hash].labels]
        top = votes.count(choice_of(sim.items[task_hash], row))
        assert row["confidence"] == pytest.approx(top / len(votes), abs=1e-6)

    # Dawid–Skene is right more often; its fitted reliabilities rank the labelers
    truth = {h: it.truth for h, it in sim.items.items() if it.truth}
    right_m = sum(choice_of(sim.items[h], r) == truth[h] for h, r in m.items() if h in truth)
    right_d = sum(choice_of(sim.items[h], r) == truth[h] for h, r in d.items() if h in truth)
    assert right_d >= right_m + len(sim.outvoted)
    rel = dawid.stats["dawid_skene"]["reliability"]
    assert min(rel["careful-1"], rel["careful-2"]) > 0.8
    assert max(rel["random"], rel["always-left"]) < 0.65 and rel["contrarian"] < 0.2
    assert "dawid_skene" not in majority.stats

    # the same labels give the same aggregated snapshot
    again, created, _ = snap(Session, aggregate="dawid-skene")
    assert not created and again.id == dawid.id


def test_margin_is_the_agreeing_median_and_can_carry_the_confidence(Session, sim):  # noqa: N803
    _, _, plain = snap(Session, aggregate="majority")
    folded, _, rows = snap(Session, aggregate="majority", confidence_margin=True)
    assert folded.filters["confidence_margin"] is True
    plain = {r["task_hash"]: r for r in plain}
    for row in rows:
        item = sim.items[row["task_hash"]]
        winner = choice_of(item, row)
        agreeing = [snapshots.margin_for(st) for _, c, st, _ in item.labels if c == winner]
        expected = statistics.median(agreeing)
        assert plain[row["task_hash"]]["margin"] == pytest.approx(expected)
        assert row["margin"] == pytest.approx(expected * row["confidence"])
    # a unanimous calibration item: careful-1 (3), careful-2 (2), a bad one (1) -> 2/3
    unanimous = [
        r for r in rows
        if len({c for _, c, _, _ in sim.items[r["task_hash"]].labels}) == 1
        and len(sim.items[r["task_hash"]].labels) == 3
    ]  # fmt: skip
    assert unanimous and all(r["margin"] == pytest.approx(2 / 3) for r in unanimous)


def test_kto_aggregated(Session, sim):  # noqa: N803
    snapshot, _, rows = snap(Session, kind="kto", aggregate="majority")
    names = pq.read_schema(snapshots.snapshot_files(snapshot)["train"]).names
    assert names[:4] == ["prompt", "completion", "label", "confidence"] and "labeler" in names
    by_item: dict[str, list] = {}
    for r in rows:
        by_item.setdefault(r["task_hash"], []).append(r)
    # a decided item gives its winner True and the other False, both with the item's confidence
    decided = [h for h, rs in by_item.items() if h != sim.both_bad]
    assert all(sorted(r["label"] for r in by_item[h]) == [False, True] for h in decided)
    assert all(len({r["confidence"] for r in by_item[h]}) == 1 for h in by_item)
    # the unanimous both_bad: both answers False; the tie and the vote tie are left out
    assert sorted(r["label"] for r in by_item[sim.both_bad]) == [False, False]
    assert by_item[sim.both_bad][0]["confidence"] == 1.0
    assert sim.tie not in by_item and sim.vote_tie not in by_item
    assert snapshot.stats["vote_ties"] == 1
    with Session() as s, pytest.raises(InvalidInput, match="no margin column"):
        snapshots.create_snapshot(s, project="sim", kind="kto", aggregate="majority",
                                  confidence_margin=True)  # fmt: skip


# --------------------------------------------------------------------------- filters


def test_min_competence_drops_the_unreliable_labelers(Session, sim):  # noqa: N803
    plain, _, plain_rows = snap(Session)
    assert plain.filters == {"include_gold": False}  # no reviews, no option: as before
    assert "labeler" not in plain_rows[0] and "rejected" not in plain.stats

    trusted, created, rows = snap(Session, min_competence=0.7)
    assert created and trusted.sha256 != plain.sha256
    assert {r["labeler"] for r in rows} == {"careful-1", "careful-2"}
    count = {n: sum(who == n for it in sim.items.values() for who, *_ in it.labels)
             for n in (*BAD, "newbie")}  # fmt: skip
    assert (
        trusted.stats["low_competence"]
        == count["random"] + count["always-left"] + count["contrarian"]
    )
    assert trusted.stats["competence_unmeasured"] == count["newbie"] == 3  # under 10 labels
    assert trusted.stats["competence_dropped"] == ["always-left", "contrarian", "newbie", "random"]
    assert trusted.filters["min_competence"] == 0.7
    # the competences recorded are the Label quality page's (quality_report), rounded
    with Session() as s:
        report = {r["name"]: r["competence"] for r in quality_report(s, "sim", bootstrap=0)[
            "labelers"]}  # fmt: skip
    recorded = trusted.stats["competence"]
    assert recorded["newbie"] is None
    for name in ("careful-1", "careful-2", *BAD):
        assert recorded[name] == pytest.approx(report[name], abs=1e-4)
    assert recorded["careful-2"] > 0.8 and recorded["contrarian"] < 0.2

    # with aggregation the low-competence labels no longer outvote anyone
    both, _, agg = snap(Session, min_competence=0.7, aggregate="majority")
    for task_hash in sim.outvoted:
        row = next(r for r in agg if r["task_hash"] == task_hash)
        assert choice_of(sim.items[task_hash], row) == sim.items[task_hash].truth
        assert row["confidence"] == 1.0  # careful-1 alone is left
    assert both.stats["aggregated_items"] == len(sim.items) - 3  # newbie's items are gone


def test_exclude_labelers(Session, sim):  # noqa: N803
    snapshot, _, rows = snap(Session, exclude_labelers=["random", "contrarian"])
    assert snapshot.filters["exclude_labelers"] == ["contrarian", "random"]
    assert not {"random", "contrarian"} & {r["labeler"] for r in rows}
    assert {"careful-1", "careful-2", "always-left", "newbie"} <= {r["labeler"] for r in rows}
    dropped = sum(who in ("random", "contrarian") for it in sim.items.values()
                  for who, *_ in it.labels)  # fmt: skip
    assert snapshot.stats["excluded_labelers"] == dropped
    # an excluded labeler is not counted again by min_competence
    both, _, _ = snap(Session, exclude_labelers=["random"], min_competence=0.7)
    assert both.stats["excluded_labelers"] == sum(
        who == "random" for it in sim.items.values() for who, *_ in it.labels
    )
    assert "random" not in both.stats["competence_dropped"]
    with Session() as s, pytest.raises(InvalidInput, match="no user named 'zed'"):
        snapshots.create_snapshot(s, project="sim", kind="preference", exclude_labelers=["zed"])


# --------------------------------------------------------------------------- reviews


def review(Session, pref_id: int, action: str, **judgment) -> None:  # noqa: N803
    with Session.begin() as s:
        pref = s.get(Preference, pref_id)
        task = s.get(Task, pref.task_id)
        boss = users.get_user(s, "boss")
        s.add(LabelReview(project_id=task.project_id, task_id=task.id, preference_id=pref.id,
                          action=ReviewAction(action), reviewer_id=boss.id, **judgment))  # fmt: skip


def rows_of(rows, task_hash, labeler):
    return [r for r in rows if r["task_hash"] == task_hash and r["labeler"] == labeler]


def test_reject_and_relabel_change_the_next_snapshot(Session, sim):  # noqa: N803
    plain, _, _ = snap(Session)
    item = sim.items[sim.outvoted[0]]
    (careful,) = [lab for lab in item.labels if lab[0] == "careful-1"]
    (randoms,) = [lab for lab in item.labels if lab[0] == "random"]

    # an accept changes no row, but the snapshot now records the review filters
    review(Session, careful[3], "accept")
    accepted, created, rows = snap(Session)
    assert created and accepted.sha256 != plain.sha256 and accepted.rows == plain.rows
    assert accepted.filters["exclude_rejected"] is True and accepted.stats["rejected"] == 0
    assert len(rows_of(rows, item.task_hash, "random")) == 1

    review(Session, randoms[3], "reject")
    rejected, created, rows = snap(Session)
    assert created and rejected.sha256 not in (plain.sha256, accepted.sha256)
    assert rejected.rows == plain.rows - 1 and rejected.stats["rejected"] == 1
    assert rows_of(rows, item.task_hash, "random") == []
    kept, created, rows = snap(Session, exclude_rejected=False)  # --include-rejected
    assert created and kept.rows == plain.rows and kept.filters["exclude_rejected"] is False
    assert len(rows_of(rows, item.task_hash, "random")) == 1 and kept.stats["rejected"] == 0

    # with the random clicker's vote rejected the item is 1 against 1: a vote tie
    _, _, agg = snap(Session, aggregate="majority")
    assert item.task_hash not in {r["task_hash"] for r in agg}

    # a relabel replaces the label's choice and strength; the row keeps its labeler
    (lefty,) = [lab for lab in item.labels if lab[0] == "always-left"]
    review(Session, lefty[3], "relabel", choice=item.truth, strength=3)
    relabeled, created, rows = snap(Session)
    assert created and relabeled.stats["relabeled"] == 1
    (row,) = rows_of(rows, item.task_hash, "always-left")
    assert choice_of(item, row) == item.truth and row["margin"] == 1.0
    _, _, agg = snap(Session, aggregate="majority")
    (row,) = [r for r in agg if r["task_hash"] == item.task_hash]
    assert choice_of(item, row) == item.truth and row["confidence"] == 1.0  # 2 of 2

    # the latest review is in force: accepting the rejected label brings it back
    review(Session, randoms[3], "accept")
    back, _, rows = snap(Session)
    assert back.stats["rejected"] == 0 and len(rows_of(rows, item.task_hash, "random")) == 1
    # a relabel to a tie leaves no pair
    review(Session, careful[3], "relabel", choice="tie")
    tied, _, rows = snap(Session)
    assert rows_of(rows, item.task_hash, "careful-1") == []
    assert tied.stats["ties"] == back.stats["ties"] + 1


def test_sft_and_ranking_projects(Session):  # noqa: N803
    with Session.begin() as s:
        notes = projects.create_project(s, name="notes", kind="sft")
        ranks = projects.create_project(s, name="ranks", kind="ranking", rank_k=3)
        ann = users.add_user(s, name="ann", role="labeler", password=None)
        bob = users.add_user(s, name="bob", role="labeler", password=None)
        demo_ids = {}
        for i, who in enumerate((ann, bob, ann)):
            prompt = add_prompt(s, notes, f"write {i}")
            task = add_write_task(s, notes, prompt)
            demo = Demonstration(task_id=task.id, user_id=who.id,
                                 response_id=add_response(s, prompt, f"text {i}").id)  # fmt: skip
            s.add(demo)
            s.flush()
            demo_ids[i] = demo.id
        prompt = add_prompt(s, ranks, "rank these")
        answers = [add_response(s, prompt, t) for t in ("one", "two", "three")]
        rank_task = add_rank_task(s, ranks, prompt, answers)
        ranking = Ranking(task_id=rank_task.id, user_id=ann.id, order=[r.id for r in answers])
        s.add(ranking)
        s.flush()
        s.add(LabelReview(project_id=ranks.id, task_id=rank_task.id, ranking_id=ranking.id,
                          action=ReviewAction.relabel,
                          order=[r.id for r in reversed(answers)]))  # fmt: skip
        s.add(LabelReview(project_id=notes.id, task_id=task.id, demonstration_id=demo_ids[2],
                          action=ReviewAction.reject))  # fmt: skip
        notes_id = notes.id

    # demonstrations: the filters apply; the rejected one is gone; no aggregation
    snapshot, _, rows = snap(Session, kind="sft", project="notes", exclude_labelers=["bob"])
    assert [r["labeler"] for r in rows] == ["ann"] and rows[0]["messages"][-1]["content"] == (
        "text 0"
    )
    assert snapshot.stats["rejected"] == 1 and snapshot.stats["excluded_labelers"] == 1
    assert "aggregated_items" not in snapshot.stats and "confidence" not in rows[0]
    # the relabeled ranking: the reviewer's order
    ranked, _, rows = snap(Session, project="ranks")
    assert ranked.stats["relabeled"] == 1
    assert {(chosen(r), r["rejected"][0]["content"]) for r in rows} == {
        ("three", "two"), ("three", "one"), ("two", "one"),
    }  # fmt: skip
    for kind, project, message in [
        ("sft", "notes", "an sft snapshot cannot be aggregated"),
        ("preference", "ranks", "is a ranking project: aggregation"),
    ]:
        with Session() as s, pytest.raises(InvalidInput, match=message):
            snapshots.create_snapshot(s, project=project, kind=kind, aggregate="majority")
    with Session() as s, pytest.raises(InvalidInput, match="measured on comparisons"):
        snapshots.create_snapshot(s, project=notes_id, kind="sft", min_competence=0.5)


def test_bad_input_is_one_sentence_and_writes_nothing(Session, sim):  # noqa: N803
    cases = [
        ({"aggregate": "mean"}, "unknown aggregate 'mean': use one of none, majority"),
        ({"aggregate": "majority", "kind": "sft"}, "sft snapshot cannot be aggregated"),
        ({"min_competence": -0.1}, "min competence must be from 0 to 1, not -0.1"),
        ({"min_competence": 1.5}, "min competence must be from 0 to 1, not 1.5"),
        ({"min_competence": math.nan}, "min competence must be from 0 to 1"),
        ({"min_competence": "high"}, "min competence must be a number"),
        ({"confidence_margin": True}, "needs aggregate majority or dawid-skene"),
        ({"exclude_labelers": ["careful-1", "zed", "zoe"]}, r"no user named 'zed'.*1 more"),
    ]
    for options, message in cases:
        kind = options.pop("kind", "preference")
        with Session() as s:
            with pytest.raises(InvalidInput, match=message) as error:
                snapshots.create_snapshot(s, project="sim", kind=kind, **options)
            assert "\n" not in str(error.value)
            s.rollback()
    nothing_written(Session)
    with Session() as s:  # the labels are all still there
        assert len(s.scalars(select(Preference)).all()) == sum(
            len(it.labels) for it in sim.items.values()
        )
    # everything filtered away: the usual "no labels" sentence, saying why
    with Session() as s, pytest.raises(InvalidInput, match=r"no labels to snapshot.*excluded"):
        snapshots.create_snapshot(s, project="sim", kind="preference",
                                  exclude_labelers=["careful-1", "careful-2", *BAD, "newbie"])  # fmt: skip
    nothing_written(Session)


# --------------------------------------------------------------------------- CLI and page


def test_cli_flags(cli, admin, Session, sim):  # noqa: N803
    from app.cli import snapshot_cmd

    assert snapshot_cmd.AGGREGATES == snapshot_quality.AGGREGATES
    assert snapshot_cmd.LEFT_OUT == snapshot_quality.LEFT_OUT
    r = cli("snapshot", "create", "--project", "sim", "--kind", "preference",
            "--aggregate", "dawid-skene", "--min-competence", "0.7",
            "--exclude-labelers", "newbie, random", "--include-rejected", "--confidence-margin",
            "--json", user=admin)  # fmt: skip
    assert r.code == 0, r.err
    out = r.json()
    assert out["created"] is True
    assert out["filters"] == {
        "include_gold": False, "aggregate": "dawid-skene", "min_competence": 0.7,
        "exclude_labelers": ["newbie", "random"], "exclude_rejected": False,
        "confidence_margin": True,
    }  # fmt: skip
    stats = out["stats"]
    assert stats["excluded_labelers"] == 3 + sum(
        who == "random" for it in sim.items.values() for who, *_ in it.labels
    )
    assert stats["low_competence"] > 0 and "careful-1" in stats["dawid_skene"]["reliability"]
    assert set(stats["competence_dropped"]) == {"always-left", "contrarian"}
    with Session() as s:
        snapshot = s.get(Snapshot, out["id"])
        rows = snapshots.read_split(snapshot, "train")
        assert all(0 <= r["margin"] <= r["confidence"] for r in rows)
        manifest = json.loads(snapshots.snapshot_files(snapshot)["manifest"].read_text())
        assert manifest["filters"] == out["filters"] and "confidence" in manifest["columns"]

    text = cli("snapshot", "create", "--project", "sim", "--kind", "preference",
               "--exclude-labelers", "random", user=admin)  # fmt: skip
    assert text.code == 0, text.err
    assert "left out: excluded labelers" in text.out
    plain = cli("snapshot", "create", "--project", "sim", "--kind", "preference", "--json",
                user=admin)  # fmt: skip
    assert plain.code == 0 and plain.json()["filters"] == {"include_gold": False}

    for argv, message in [
        (("--min-competence", "2"), "error: min competence must be from 0 to 1, not 2"),
        (("--exclude-labelers", "zed"), "error: no user named 'zed'"),
        (("--confidence-margin",), "error: confidence margin folds"),
        (("--aggregate", "majority", "--kind", "sft"), "error: an sft snapshot cannot be"),
    ]:
        args = ["snapshot", "create", "--project", "sim", *argv]
        if "--kind" not in argv:
            args += ["--kind", "preference"]
        bad = cli(*args, user=admin)
        assert bad.code == 1 and bad.err.startswith(message) and bad.out == "", bad.err
    assert cli("snapshot", "create", "--project", "sim", "--kind", "preference",
               "--aggregate", "mean", user=admin).code == 2  # fmt: skip
    both = cli("snapshot", "create", "--project", "sim", "--kind", "preference",
               "--include-rejected", "--exclude-rejected", user=admin)  # fmt: skip
    assert both.code == 2 and "not allowed with" in both.err
    with Session() as s:
        assert len(s.scalars(select(Snapshot)).all()) == 3


def test_snapshots_page_quality_options(sqlite_url):
    from streamlit.testing.v1 import AppTest

    import app.ui.db
    from app.ui import state
    from labeling.accounts import web_sessions
    from labeling.db import make_engine, make_sessionmaker

    app.ui.db._sessionmaker.clear()
    engine = make_engine(sqlite_url)
    try:
        Session = make_sessionmaker(engine)  # noqa: N806
        sim = simulate(Session)
        with Session.begin() as s:
            engineer = users.add_user(s, name="eng", role="engineer", password=None).id
        with app.ui.db.transaction() as s:
            token = web_sessions.start(s, user_id=engineer)
        at = AppTest.from_string(
            "from app.ui.pages import engineer_snapshots\nengineer_snapshots.render()\n",
            default_timeout=30,
        )
        at.session_state[state.TOKEN] = token
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.multiselect(key="snapshots-create-exclude").options == sorted(
            ["careful-1", "careful-2", *BAD, "newbie"]
        )
        at.selectbox(key="snapshots-create-aggregate").set_value("dawid-skene")
        at.multiselect(key="snapshots-create-exclude").set_value(["newbie"])
        at.number_input(key="snapshots-create-min-competence").set_value(0.7)
        at.checkbox(key="snapshots-create-confidence-margin").check()
        at.run()
        at.button(key="snapshots-create-create").click().run()
        assert not at.exception, [e.value for e in at.exception]
        message = " ".join(s.value for s in at.success)
        assert "Created snapshot 1 (preference)" in message, [e.value for e in at.error]
        assert "3 excluded labelers, " in message and " low competence" in message
        with Session() as s:
            snapshot = s.scalar(select(Snapshot))
            assert snapshot.filters["aggregate"] == "dawid-skene"
            assert snapshot.filters["exclude_labelers"] == ["newbie"]
            assert snapshot.filters["min_competence"] == 0.7
            assert snapshot.filters["confidence_margin"] is True
            assert snapshot.stats["vote_ties"] == 0 and snapshot.created_by == engineer
            assert len(sim.outvoted) <= snapshot.rows

        # an option the kind refuses: one sentence on the page, nothing written
        at.selectbox(key="snapshots-create-kind").set_value("kto")
        at.run()
        at.button(key="snapshots-create-create").click().run()
        assert any("no margin column" in e.value for e in at.error)
        with Session() as s:
            assert len(s.scalars(select(Snapshot)).all()) == 1
    finally:
        app.ui.db._sessionmaker.clear()
        engine.dispose()


def test_origin_filter_with_quality_options(Session, sim):  # noqa: N803
    """Anonymous imported labels: kept by min_competence, one pseudo-labeler for Dawid–Skene,
    a "mixed" origin on aggregated rows."""
    item = sim.items[sim.outvoted[0]]
    with Session.begin() as s:
        s.add(Preference(task_id=item.task_id, user_id=None, origin=Origin.imported,
                         choice=item.truth))  # fmt: skip
    snapshot, _, rows = snap(Session, min_competence=0.7)
    imported = [r for r in rows if r["origin"] == "import"]
    assert len(imported) == 1 and imported[0]["labeler"] is None
    _, _, agg = snap(Session, aggregate="dawid-skene")
    (row,) = [r for r in agg if r["task_hash"] == item.task_hash]
    assert row["origin"] == "mixed" and choice_of(item, row) == item.truth
    only, _, agg = snap(Session, aggregate="majority", origin="labeler")
    assert all(r["origin"] == "labeler" for r in agg) and only.filters["origin"] == "labeler"
    with Session() as s:
        project = s.scalar(select(Project).where(Project.name == "sim"))
        assert snapshot_quality.labeler_names(s, project) == sorted(
            ["careful-1", "careful-2", *BAD, "newbie"]
        )

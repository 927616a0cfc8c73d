"""`rlhf review` end to end on both databases: the queue, accept / reject / relabel, the
history, pause and unpause, with --json and as text; the role check; one sentence for each
bad input, and nothing written by a refused one."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import func, select

from labeling import projects, queue
from labeling.accounts import users
from labeling.errors import PermissionDenied
from labeling.models import LabelReview, Preference, Ranking, User
from labeling.tasks import add_compare_task, add_prompt, add_rank_task, add_response


def seed(Session):  # noqa: N803
    """'pairs': 20 items, overlap 3, labeled by two careful labelers and one who always
    presses the left answer; 'ranks': one rank task ranked by ann."""
    rng = random.Random(11)
    with Session.begin() as s:
        p = projects.create_project(s, name="pairs", kind="pairwise", overlap=3)
        truth = {}
        for i in range(20):
            prompt = add_prompt(s, p, f"q{i}?")
            a, b = add_response(s, prompt, f"A{i}"), add_response(s, prompt, f"B{i}")
            truth[add_compare_task(s, p, prompt, a, b).id] = rng.choice("ab")
        rp = projects.create_project(s, name="ranks", kind="ranking", overlap=1, rank_k=3)
        prompt = add_prompt(s, rp, "rank")
        answers = [add_response(s, prompt, t) for t in ("x", "y", "z")]
        add_rank_task(s, rp, prompt, answers)
        ids = {n: users.add_user(s, name=n, role="labeler", password=None).id
               for n in ("ann", "bea", "lefty")}  # fmt: skip
        users.add_user(s, name="eng", role="engineer", password=None)
        pid, rid = p.id, rp.id
        candidates = [r.id for r in answers]
    for name, user_id in ids.items():
        with Session.begin() as s:
            while (a := queue.claim_next(s, project_id=pid, user_id=user_id, rng=rng)) is not None:
                left = "b" if a.swap_sides else "a"
                choice = left if name == "lefty" else truth[a.task_id]
                queue.submit_preference(s, task_id=a.task_id, user_id=user_id, choice=choice,
                                        strength=2, time_spent_ms=7_000)  # fmt: skip
    with Session.begin() as s:
        a = queue.claim_next(s, project_id=rid, user_id=ids["ann"])
        ranking = queue.submit_ranking(s, task_id=a.task_id, user_id=ids["ann"], order=candidates)
        ranking_id = ranking.label.id
    return pid, ids, ranking_id, candidates


def count(Session, model) -> int:  # noqa: N803
    with Session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_review_commands_end_to_end(cli, admin, Session):  # noqa: N803
    pid, ids, ranking_id, candidates = seed(Session)

    q = cli("review", "queue", "--project", "pairs", "--limit", "500", "--json", user="eng")
    assert q.code == 0, q.err
    entries = q.json()
    lefty = [e for e in entries if e["labeler"] == "lefty"]
    assert len(lefty) == 20 and all("flagged_labeler" in e["reasons"] for e in lefty)
    assert {"kind", "label_id", "task_id", "labeler", "choice", "strength", "reasons",
            "posterior", "created_at"} <= set(entries[0])  # fmt: skip
    table = cli("review", "queue", "--project", "pairs", "--limit", "3", user="eng")
    assert table.code == 0 and "LABELER" in table.out and "REASONS" in table.out
    assert len(table.out.strip().splitlines()) == 4  # the header and three entries
    first, second, third = lefty[0]["label_id"], lefty[1]["label_id"], lefty[2]["label_id"]

    r = cli("review", "reject", "preference", str(first), "--note", "always left", "--json",
            user="eng")  # fmt: skip
    assert r.code == 0, r.err
    out = r.json()
    assert out["action"] == "reject" and out["who"] == "eng" and out["when"]
    assert (out["kind"], out["label_id"], out["project_id"]) == ("preference", first, pid)
    assert out["note"] == "always left" and out["judgment"] is None
    r = cli("review", "relabel", "preference", str(first), "--choice", "b", "--strength", "3",
            "--json", user=admin)  # fmt: skip
    assert r.code == 0, r.err
    assert r.json()["judgment"] == {"choice": "b", "strength": 3} and r.json()["who"] == admin
    text = cli("review", "accept", "preference", str(second), user="eng")
    assert text.code == 0 and text.out.startswith(f"accepted preference {second} (review #")
    rank = cli("review", "relabel", "ranking", str(ranking_id), "--order",
               ",".join(map(str, candidates[::-1])), "--json", user="eng")  # fmt: skip
    assert rank.code == 0, rank.err
    assert rank.json()["judgment"] == {"order": candidates[::-1]}

    h = cli("review", "history", "preference", str(first), "--json", user="eng")
    assert h.code == 0, h.err
    assert [(e["who"], e["action"], e["in_force"]) for e in h.json()] == [
        ("eng", "reject", False), (admin, "relabel", True)]  # fmt: skip
    h = cli("review", "history", "preference", str(first), user="eng")
    assert h.code == 0 and "always left" in h.out and "b, strength 3" in h.out
    after = cli("review", "queue", "--project", "pairs", "--limit", "500", "--json", user="eng")
    assert {e["label_id"] for e in after.json()} == {e["label_id"] for e in entries} - {
        first, second}  # fmt: skip
    assert count(Session, LabelReview) == 4

    # refusals: one sentence on stderr, exit 1, nothing written
    for argv, user, message in [
        (("accept", "preference", str(third)), "ann",
         "ann is a labeler; this needs admin or engineer"),
        (("queue", "--project", "pairs"), "ann", "ann is a labeler; this needs admin or engineer"),
        (("pause", "lefty"), "ann", "ann is a labeler; this needs admin or engineer"),
        (("history", "preference", str(first)), "bea", "bea is a labeler"),
        (("accept", "preference", str(third)), None, "who is running this?"),
        (("accept", "preference", "999999"), "eng", "no preference with id 999999"),
        (("relabel", "preference", str(third), "--choice", "tie", "--strength", "2"), "eng",
         "strength applies only when A or B is better"),
        (("relabel", "preference", str(third), "--choice", "best"), "eng",
         "unknown choice 'best'"),
        (("relabel", "ranking", str(ranking_id), "--order", f"{candidates[0]},{candidates[1]}"),
         "eng", "the order must list each of task"),
        (("relabel", "preference", str(third), "--order", "1,2"), "eng", "not an order"),
        (("queue", "--project", "nope"), "eng", "no project named 'nope'"),
        (("pause", "eng"), admin, "eng is an engineer: only labelers can be paused"),
        (("pause", "zed"), "eng", "no user named 'zed'"),
    ]:  # fmt: skip
        bad = cli("review", *argv, "--json", user=user)
        assert bad.code == 1 and message in bad.err, (argv, bad.err)
        assert bad.out == "" and "Traceback" not in bad.err
    own = _own_label(Session, admin)
    bad = cli("review", "reject", "preference", str(own), user=admin)
    assert bad.code == 1 and "is your own label" in bad.err
    assert count(Session, LabelReview) == 4
    for argv in [("relabel", "preference", str(third)),  # neither --choice nor --order
                 ("relabel", "preference", str(third), "--choice", "a", "--order", "1,2"),
                 ("relabel", "ranking", str(ranking_id), "--order", "x,y"),
                 ("accept", "vote", str(third)), ("accept", "preference", "0")]:  # fmt: skip
        bad = cli("review", *argv, user="eng")
        assert bad.code == 2 and bad.out == "", (argv, bad.err)
    assert count(Session, LabelReview) == 4
    assert count(Session, Ranking) == 1 and count(Session, Preference) == 61


def _own_label(Session, name: str) -> int:  # noqa: N803
    """A label given by `name` (staff may label too), on an item of a project of its own."""
    with Session.begin() as s:
        user_id = s.scalar(select(User.id).where(User.name == name))
        p = projects.create_project(s, name="mine", kind="pairwise")
        prompt = add_prompt(s, p, "mine?")
        add_compare_task(s, p, prompt, add_response(s, prompt, "x"), add_response(s, prompt, "y"))
        a = queue.claim_next(s, project_id=p.id, user_id=user_id)
        return queue.submit_preference(s, task_id=a.task_id, user_id=user_id, choice="a").label.id


def test_pause_and_unpause(cli, admin, Session):  # noqa: N803
    pid, ids, _, _ = seed(Session)
    with Session.begin() as s:  # one more item, so that there is something to claim
        p = projects.get_project(s, "pairs")
        prompt = add_prompt(s, p, "fresh?")
        add_compare_task(s, p, prompt, add_response(s, prompt, "x"), add_response(s, prompt, "y"))
    r = cli("review", "pause", "bea", "--json", user="eng")
    assert r.code == 0, r.err
    assert r.json()["name"] == "bea" and r.json()["paused_at"] is not None
    with Session.begin() as s:
        with pytest.raises(PermissionDenied, match="your account is paused by a reviewer: "):
            queue.claim_next(s, project_id=pid, user_id=ids["bea"])
        assert queue.claim_next(s, project_id=pid, user_id=ids["ann"]) is not None  # others go on
    text = cli("review", "pause", "bea", user="eng")  # again: still paused, the same time
    assert text.code == 0 and text.out.startswith("paused bea: no new tasks")
    r = cli("review", "unpause", "bea", "--json", user=admin)
    assert r.code == 0 and r.json()["paused_at"] is None
    with Session.begin() as s:
        assert queue.claim_next(s, project_id=pid, user_id=ids["bea"]) is not None
    text = cli("review", "unpause", "bea", user=admin)
    assert text.code == 0 and text.out.startswith("unpaused bea")

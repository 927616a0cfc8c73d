"""Dashboard queries on SQLite and PostgreSQL: per day, per labeler, burn-down, choice rates."""

from __future__ import annotations

import random
from datetime import timedelta

import pandas as pd

from labeling import importer, projects, queue, stats
from labeling.accounts import users
from labeling.models import utcnow
from labeling.tasks import add_compare_task, add_prompt, add_response


def seed(Session):
    """A pairwise project, overlap 2: 4 tasks and 2 gold items (gold choice a). ann labels
    everything tomorrow (a, tie, both_bad, b; gold right then wrong), bob the day after (all a)."""
    with Session.begin() as s:
        p = projects.create_project(s, name="p", kind="pairwise", overlap=2, gold_rate=0.5)
        task_ids = []
        for i in range(6):
            prompt = add_prompt(s, p, f"question {i}?")
            a = add_response(s, prompt, f"answer A {i}")
            b = add_response(s, prompt, f"answer B {i}")
            gold = "a" if i >= 4 else None
            task_ids.append(add_compare_task(s, p, prompt, a, b, gold_choice=gold).id)
        ann = users.add_user(s, name="ann", role="labeler", password="long-password").id
        bob = users.add_user(s, name="bob", role="labeler", password="long-password").id
        pid = p.id
    today = utcnow()
    plan = {
        ann: (today + timedelta(days=1), dict(zip(task_ids, ["a", "tie", "both_bad", "b", "a", "b"], strict=True))),
        bob: (today + timedelta(days=2), dict.fromkeys(task_ids, "a")),
    }  # fmt: skip
    rng = random.Random(0)
    for user, (day, choices) in plan.items():
        for n in range(10):
            now = day + timedelta(minutes=n)
            with Session.begin() as s:
                assignment = queue.claim_next(s, project_id=pid, user_id=user, now=now, rng=rng)
                if assignment is None:
                    break
                result = queue.submit_preference(
                    s, task_id=assignment.task_id, user_id=user,
                    choice=choices[assignment.task_id], time_spent_ms=2000 + 1000 * (user == bob),
                    now=now + timedelta(seconds=5),
                )  # fmt: skip
                assert result.accepted
    return pid, ann, bob, today


def test_dashboard_numbers(Session):
    pid, ann, bob, today = seed(Session)
    day = [(today + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(3)]
    with Session() as s:
        over = stats.overview(s, pid)
        assert over["tasks"] == 6 and over["gold"] == 2 and over["done"] == 4
        assert over["open"] == 0 and over["labels"] == 12 and over["labels_wanted"] == 0
        assert over["active_leases"] == 0 and over["labelers"] == 2

        per_day = stats.labels_per_day(s, pid)
        assert [d.strftime("%Y-%m-%d") for d in per_day["day"]] == day[1:]
        assert per_day["labels"].tolist() == [6, 6]

        who = stats.labels_per_labeler(s, pid).set_index("labeler")
        assert who.loc["ann", "labels"] == 6 and who.loc["bob", "labels"] == 6
        assert who.loc["ann", "ties"] == 1 and who.loc["ann", "both_bad"] == 1
        assert who.loc["ann", "tie_rate"] == 1 / 6 and who.loc["bob", "tie_rate"] == 0
        assert who.loc["ann", "gold_answered"] == 2 and who.loc["ann", "gold_accuracy"] == 0.5
        assert who.loc["bob", "gold_accuracy"] == 1.0
        assert who.loc["ann", "mean_seconds"] == 2.0 and who.loc["bob", "mean_seconds"] == 3.0

        rates = stats.choice_rates(s, pid)
        assert rates["preferences"] == 12 and rates["a"] == 8 and rates["b"] == 2
        assert rates["tie"] == 1 and rates["both_bad"] == 1
        assert rates["tie_rate"] == 1 / 12

        burn = stats.burndown(s, pid)
        assert [d.strftime("%Y-%m-%d") for d in burn["day"]] == day
        assert burn["added"].tolist() == [4, 0, 0]
        assert burn["finished"].tolist() == [0, 0, 4]  # done when bob's second label lands
        assert burn["open"].tolist() == [4, 4, 0]

        progress = {row["name"]: row for row in stats.project_progress(s)}
        assert progress["p"]["done"] == 4 and progress["p"]["labels"] == 12
        assert progress["p"]["progress"] == 1.0

    # an imported labelled pair counts only when asked for
    with Session.begin() as s:
        importer.import_rows(
            s, project="p", rows=[{"prompt": "new?", "chosen": "yes", "rejected": "no"}]
        )
    with Session() as s:
        assert stats.labels_per_day(s, pid)["labels"].sum() == 12
        assert stats.labels_per_day(s, pid, include_imported=True)["labels"].sum() == 13
        assert stats.choice_rates(s, pid)["preferences"] == 12
        assert stats.choice_rates(s, pid, include_imported=True)["a"] == 9
        assert stats.overview(s, pid)["labels_wanted"] == 1  # overlap 2, one imported label
        assert "(imported)" not in stats.labels_per_labeler(s, pid)["labeler"].tolist()


def test_empty_project(Session):
    with Session.begin() as s:
        pid = projects.create_project(s, name="empty", kind="sft").id
    with Session() as s:
        assert stats.overview(s, pid)["tasks"] == 0
        assert stats.labels_per_day(s, pid).empty
        assert stats.labels_per_labeler(s, pid).empty
        assert stats.burndown(s, pid).empty
        assert stats.choice_rates(s, pid)["tie_rate"] == 0.0
        (row,) = stats.project_progress(s)
        assert row["tasks"] == 0 and row["progress"] == 0.0
        assert isinstance(stats.labels_per_day(s, pid), pd.DataFrame)

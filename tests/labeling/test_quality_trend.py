"""Agreement over time (labeling/quality/trend.py) on SQLite and PostgreSQL: labels with known
days and known agreement give those figures back, per day and per week."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from labeling import projects
from labeling.accounts import users
from labeling.models import Origin, Preference
from labeling.quality import quality_report
from labeling.quality.trend import agreement_over_time
from labeling.tasks import add_compare_task, add_prompt, add_response


def _project(Session, days, *, name="trend"):  # noqa: N803
    """days: {datetime: [(choice of labeler 1, choice of labeler 2), ...]} one item each; the
    answer on the left is always A (so a left win is a choice of "a")."""
    with Session.begin() as s:
        p = projects.create_project(s, name=name, kind="pairwise", overlap=2)
        one = users.add_user(s, name=f"{name}-one", role="labeler", password=None)
        two = users.add_user(s, name=f"{name}-two", role="labeler", password=None)
        i = 0
        for when, items in days.items():
            for first, second in items:
                prompt = add_prompt(s, p, f"question {i}?")
                a, b = add_response(s, prompt, f"A {i}"), add_response(s, prompt, f"B {i}")
                task = add_compare_task(s, p, prompt, a, b)
                for user, choice, late in ((one, first, 0), (two, second, 1)):
                    s.add(Preference(
                        task_id=task.id, user_id=user.id, choice=choice,
                        left_response_id=a.id, created_at=when + timedelta(minutes=late),
                    ))  # fmt: skip
                i += 1
        # an imported label (no labeler to judge) is not counted
        s.add(Preference(task_id=task.id, user_id=None, choice="b", origin=Origin.imported))
        return p.id


def test_agreement_and_left_wins_per_day(Session):  # noqa: N803
    monday = datetime(2026, 11, 2, 23, 50, tzinfo=UTC)  # both labels before midnight UTC
    tuesday = monday + timedelta(days=1)
    pid = _project(Session, {
        monday: [("a", "a")] * 6,  # all agree, all left wins
        tuesday: [("a", "b")] * 3 + [("b", "b")] * 3,  # half agree, 3 of 12 left wins
    })  # fmt: skip
    with Session() as s:
        trend = agreement_over_time(s, pid)
        report = quality_report(s, pid, bootstrap=0)
    assert [t["period"] for t in trend] == ["2026-11-02", "2026-11-03"]
    assert {t["period_kind"] for t in trend} == {"day"}
    mon, tue = trend
    assert (mon["labels"], mon["pairs"], mon["agreement"]) == (12, 6, 1.0)
    assert mon["left_win_rate"] == 1.0 and mon["ci_high"] == 1.0 and mon["ci_low"] < 1.0
    assert (tue["labels"], tue["pairs"], tue["agreement"]) == (12, 6, 0.5)
    assert tue["left_win_rate"] == 3 / 12  # "a" is the left answer: 3 of 12 decisive labels
    assert tue["ci_low"] < 0.5 < tue["ci_high"]
    assert report["over_time"] == trend  # what `rlhf quality --json` prints


def test_long_projects_are_shown_by_week(Session):  # noqa: N803
    start = datetime(2026, 1, 5, 12, tzinfo=UTC)  # a Monday
    days = {start + timedelta(days=d): [("a", "a"), ("a", "b")] for d in (0, 3, 7, 100)}
    pid = _project(Session, days, name="weekly")
    with Session() as s:
        trend = agreement_over_time(s, pid)
    assert [t["period"] for t in trend] == ["2026-01-05", "2026-01-12", "2026-04-13"]
    assert {t["period_kind"] for t in trend} == {"week"}
    assert [t["pairs"] for t in trend] == [4, 2, 2]
    assert all(t["agreement"] == 0.5 for t in trend)


def test_no_labels_no_trend(Session):  # noqa: N803
    with Session.begin() as s:
        pid = projects.create_project(s, name="empty", kind="pairwise").id
    with Session() as s:
        assert agreement_over_time(s, pid) == []


def test_a_pair_counts_on_the_day_of_its_later_label(Session):  # noqa: N803
    """Three labels on one item: a, a on Monday, b on Tuesday. Monday has one pair (agreeing),
    Tuesday two (neither agreeing): 3 pairs in all, never formed one by one."""
    monday = datetime(2026, 11, 2, 9, tzinfo=UTC)
    with Session.begin() as s:
        p = projects.create_project(s, name="three", kind="pairwise", overlap=3)
        prompt = add_prompt(s, p, "question?")
        a, b = add_response(s, prompt, "A"), add_response(s, prompt, "B")
        task = add_compare_task(s, p, prompt, a, b)
        for i, (choice, when) in enumerate(
            [("a", monday), ("a", monday), ("b", monday + timedelta(days=1))]
        ):
            user = users.add_user(s, name=f"l{i}", role="labeler", password=None)
            s.add(Preference(task_id=task.id, user_id=user.id, choice=choice, created_at=when))
        pid = p.id
    with Session() as s:
        trend = agreement_over_time(s, pid)
    assert [(t["period"], t["labels"], t["pairs"], t["agreement"]) for t in trend] == [
        ("2026-11-02", 2, 1, 1.0),
        ("2026-11-03", 1, 2, 0.0),
    ]
    assert all(t["left_win_rate"] is None for t in trend)  # no side recorded

"""Reviews of labels (labeling/quality/review.py) and pausing labelers, on SQLite and
PostgreSQL: actions are recorded with who and when and the latest is in force; bad input
gets one sentence and writes nothing; the review queue finds simulated bad labelers and a
gold miss and drops what was reviewed; a paused labeler claims nothing."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from labeling import labeler_views, projects, queue, undo
from labeling.accounts import users
from labeling.errors import InvalidInput, NotFound, PermissionDenied
from labeling.models import Assignment, LabelReview, Preference, Ranking, ReviewAction
from labeling.quality import quality_report, review
from labeling.tasks import add_compare_task, add_prompt, add_rank_task, add_response

ITEMS, GOLD = 30, 4
FLIP = {"a": "b", "b": "a"}
KEYS = {"kind", "label_id", "task_id", "labeler", "choice", "order", "strength", "reasons",
        "posterior", "created_at"}  # fmt: skip


def world(Session):  # noqa: N803
    """Pairwise project 'pairs' (30 items and 4 gold, every labeler labels all): three
    careful labelers (ann misses one gold item on purpose), one who always presses the left
    answer, one contrarian; an engineer 'eng' who labels one item, an admin 'boss'."""
    rng = random.Random(5)
    truth: dict[int, str] = {}
    with Session.begin() as s:
        p = projects.create_project(s, name="pairs", kind="pairwise", overlap=6, gold_rate=0.1)
        for i in range(ITEMS + GOLD):
            prompt = add_prompt(s, p, f"question {i}?")
            a, b = add_response(s, prompt, f"A{i}"), add_response(s, prompt, f"B{i}")
            answer = rng.choice("ab")
            gold = answer if i >= ITEMS else None
            truth[add_compare_task(s, p, prompt, a, b, gold_choice=gold).id] = answer
        ids = {n: users.add_user(s, name=n, role="labeler", password=None).id
               for n in ("ann", "bea", "cal", "lefty", "contra")}  # fmt: skip
        ids["eng"] = users.add_user(s, name="eng", role="engineer", password=None).id
        ids["boss"] = users.add_user(s, name="boss", role="admin", password=None).id
        pid = p.id
    gold_tasks = sorted(truth)[ITEMS:]
    for name in ("ann", "bea", "cal", "lefty", "contra"):
        with Session.begin() as s:
            while (
                a := queue.claim_next(s, project_id=pid, user_id=ids[name], rng=rng)
            ) is not None:
                left = "b" if a.swap_sides else "a"
                right = truth[a.task_id]
                choice = {"lefty": left, "contra": FLIP[right]}.get(name, right)
                if name == "ann" and a.task_id == gold_tasks[0]:
                    choice = FLIP[right]  # the one gold miss of a careful labeler
                queue.submit_preference(s, task_id=a.task_id, user_id=ids[name], choice=choice,
                                        strength=2, time_spent_ms=8_000)  # fmt: skip
    with Session.begin() as s:  # the engineer labels one item (an own label to refuse)
        a = queue.claim_next(s, project_id=pid, user_id=ids["eng"], rng=rng)
        queue.submit_preference(
            s, task_id=a.task_id, user_id=ids["eng"], choice=truth[a.task_id], strength=1,
            time_spent_ms=8_000,
        )  # fmt: skip
    return pid, ids, truth, gold_tasks


def label_of(s, user_id: int, task_id: int | None = None) -> Preference:
    query = select(Preference).where(Preference.user_id == user_id).order_by(Preference.id)
    if task_id is not None:
        query = query.where(Preference.task_id == task_id)
    return s.scalars(query).first()


def reviews(s) -> int:
    return s.scalar(select(func.count()).select_from(LabelReview))


def test_review_actions_are_recorded_and_the_latest_is_in_force(Session):  # noqa: N803
    pid, ids, _, _ = world(Session)
    with Session.begin() as s:
        label = label_of(s, ids["lefty"])
        first = review.review_label(
            s, reviewer_id=ids["eng"], kind="preference", label_id=label.id, action="reject",
            note="  always left ",
        )  # fmt: skip
        assert (first.project_id, first.task_id) == (pid, label.task_id)
        assert first.preference_id == label.id
        assert first.reviewer_id == ids["eng"] and first.note == "always left"
        assert first.created_at is not None and first.action == ReviewAction.reject
        label_id, task_id = label.id, label.task_id
    with Session.begin() as s:
        second = review.review_label(
            s, reviewer_id=ids["boss"], kind="preference", label_id=label_id, action="relabel",
            choice="b", strength=3,
        )  # fmt: skip
        assert second.choice.value == "b" and second.strength == 3 and second.order is None
    with Session() as s:
        forced = review.in_force(s, pid)
        assert list(forced) == [("preference", label_id)]
        assert forced[("preference", label_id)].action == ReviewAction.relabel
        steps = review.history(s, kind="preference", label_id=label_id)
        assert [(h["who"], h["action"], h["in_force"]) for h in steps] == [
            ("eng", "reject", False), ("boss", "relabel", True)]  # fmt: skip
        assert steps[0]["when"] <= steps[1]["when"] and steps[0]["note"] == "always left"
        assert steps[0]["judgment"] is None
        assert steps[1]["judgment"] == {"choice": "b", "strength": 3}
        assert steps[1]["task_id"] == task_id and steps[1]["kind"] == "preference"
        other = label_of(s, ids["bea"])
        assert review.history(s, kind="preference", label_id=other.id) == []
        # the label row itself never changes
        assert s.get(Preference, label_id).choice.value in ("a", "b")


def test_rankings_relabel_with_a_permutation_and_demonstrations_do_not(Session):  # noqa: N803
    with Session.begin() as s:
        rp = projects.create_project(s, name="ranks", kind="ranking", overlap=1, rank_k=3)
        prompt = add_prompt(s, rp, "rank these")
        answers = [add_response(s, prompt, t) for t in ("one", "two", "three")]
        task = add_rank_task(s, rp, prompt, answers)
        sp = projects.create_project(s, name="notes", kind="sft")
        from labeling.tasks import add_write_task

        add_write_task(s, sp, add_prompt(s, sp, "write"))
        lab = users.add_user(s, name="lab", role="labeler", password=None).id
        eng = users.add_user(s, name="eng", role="engineer", password=None).id
        ids = [r.id for r in answers]
        task_id, rp_id, sp_id = task.id, rp.id, sp.id
    with Session.begin() as s:
        a = queue.claim_next(s, project_id=rp_id, user_id=lab)
        ranking = queue.submit_ranking(s, task_id=a.task_id, user_id=lab, order=ids).label.id
        w = queue.claim_next(s, project_id=sp_id, user_id=lab)
        demo = queue.submit_demonstration(s, task_id=w.task_id, user_id=lab, text="mine").label.id
    with Session.begin() as s:
        row = review.review_label(s, reviewer_id=eng, kind="ranking", label_id=ranking,
                                  action="relabel", order=[ids[2], ids[0], ids[1]])  # fmt: skip
        assert row.order == [ids[2], ids[0], ids[1]] and row.ranking_id == ranking
        assert row.task_id == task_id and row.project_id == rp_id
        assert review.review_label(s, reviewer_id=eng, kind="demonstration", label_id=demo,
                                   action="reject").demonstration_id == demo  # fmt: skip
    with Session() as s:
        assert review.history(s, kind="ranking", label_id=ranking)[0]["judgment"] == {
            "order": [ids[2], ids[0], ids[1]]
        }
    bad = [
        (dict(kind="ranking", label_id=ranking, action="relabel", order=ids[:2]),
         InvalidInput, "must list each of task"),
        (dict(kind="ranking", label_id=ranking, action="relabel", order=[ids[0]] * 3),
         InvalidInput, "exactly once"),
        (dict(kind="ranking", label_id=ranking, action="relabel", order=[*ids[:2], 999_999]),
         InvalidInput, "exactly once"),
        (dict(kind="ranking", label_id=ranking, action="relabel"), InvalidInput, "needs an order"),
        (dict(kind="ranking", label_id=ranking, action="relabel", choice="a", order=ids),
         InvalidInput, "not a choice"),
        (dict(kind="demonstration", label_id=demo, action="relabel", choice="a"),
         InvalidInput, "cannot be relabeled: reject it instead"),
        (dict(kind="demonstration", label_id=demo + 1000, action="accept"),
         NotFound, "no demonstration with id"),
    ]  # fmt: skip
    for kwargs, error, message in bad:
        with Session.begin() as s:
            before = reviews(s)
            with pytest.raises(error, match=message):
                review.review_label(s, reviewer_id=eng, **kwargs)
            assert reviews(s) == before, kwargs
    with Session() as s:
        assert reviews(s) == 2


def test_bad_reviews_get_one_sentence_and_write_nothing(Session):  # noqa: N803
    _, ids, _, _ = world(Session)
    with Session() as s:
        label = label_of(s, ids["bea"]).id
        own = label_of(s, ids["eng"]).id
    bad = [
        (dict(reviewer_id=ids["eng"], kind="preference", label_id=10**9, action="accept"),
         NotFound, f"no preference with id {10**9}"),
        (dict(reviewer_id=ids["eng"], kind="vote", label_id=label, action="accept"),
         InvalidInput, "unknown label kind 'vote': use preference, ranking, demonstration"),
        (dict(reviewer_id=ids["eng"], kind="preference", label_id=label, action="approve"),
         InvalidInput, "unknown review action 'approve'"),
        (dict(reviewer_id=ids["eng"], kind="preference", label_id=label, action="relabel",
              choice="c"), InvalidInput, "unknown choice 'c': use a, b, tie, both_bad"),
        (dict(reviewer_id=ids["eng"], kind="preference", label_id=label, action="relabel"),
         InvalidInput, "needs a choice"),
        (dict(reviewer_id=ids["eng"], kind="preference", label_id=label, action="relabel",
              choice="tie", strength=2), InvalidInput, "strength applies only when A or B"),
        (dict(reviewer_id=ids["eng"], kind="preference", label_id=label, action="relabel",
              choice="a", strength=5), InvalidInput, "strength must be 1"),
        (dict(reviewer_id=ids["eng"], kind="preference", label_id=label, action="relabel",
              choice="a", order=[1, 2]), InvalidInput, "not an order"),
        (dict(reviewer_id=ids["eng"], kind="preference", label_id=label, action="accept",
              choice="a"), InvalidInput, "accept takes no judgment"),
        (dict(reviewer_id=ids["eng"], kind="preference", label_id=own, action="reject"),
         PermissionDenied, "is your own label"),
        (dict(reviewer_id=ids["ann"], kind="preference", label_id=label, action="reject"),
         PermissionDenied, "ann is a labeler; this needs admin or engineer"),
        (dict(reviewer_id=ids["eng"], kind="preference", label_id=label, action="reject",
              note="x" * 20_001), InvalidInput, "longer than 20000 characters"),
    ]  # fmt: skip
    for kwargs, error, message in bad:
        with Session.begin() as s:
            with pytest.raises(error, match=message):
                review.review_label(s, **kwargs)
            assert reviews(s) == 0, kwargs
    with Session() as s:
        with pytest.raises(NotFound, match="no preference with id 0"):
            review.history(s, kind="preference", label_id=0)
        with pytest.raises(InvalidInput, match="unknown label kind"):
            review.history(s, kind="votes", label_id=label)
    # the admin may review the engineer's own label
    with Session.begin() as s:
        assert review.review_label(s, reviewer_id=ids["boss"], kind="preference", label_id=own,
                                   action="accept").reviewer_id == ids["boss"]  # fmt: skip


def _score(entry) -> int:
    return sum(review.REASON_WEIGHTS[r] for r in entry["reasons"])


def test_review_queue_finds_bad_labelers_and_a_gold_miss_and_drops_reviewed(Session):  # noqa: N803
    pid, ids, truth, gold_tasks = world(Session)
    with Session() as s:
        entries = review.review_queue(s, "pairs", limit=1000)
        # the page hands over the report it already computed (with a bootstrap): same queue
        report = quality_report(s, "pairs", bootstrap=20)
        assert review.review_queue(s, "pairs", limit=1000, report=report) == entries
        by = {}
        for e in entries:
            assert KEYS <= set(e), e
            by.setdefault(e["labeler"], []).append(e)
        labels = {n: s.scalar(select(func.count()).select_from(Preference)
                              .where(Preference.user_id == ids[n])) for n in ids}  # fmt: skip
    # every label of the always-left clicker and of the contrarian, flagged by the report
    assert len(by["lefty"]) == labels["lefty"] == ITEMS + GOLD
    assert len(by["contra"]) == labels["contra"] == ITEMS + GOLD
    assert all("flagged_labeler" in e["reasons"] for e in by["lefty"] + by["contra"])
    assert all("position_bias" in e["labeler_flags"] for e in by["lefty"])
    # the contrarian goes against the Dawid–Skene answer on every item, and misses all gold
    assert all("disagrees_with_majority" in e["reasons"] for e in by["contra"])
    contra_gold = [e for e in by["contra"] if "disagrees_with_gold" in e["reasons"]]
    assert sorted(e["task_id"] for e in contra_gold) == gold_tasks
    # ann's one gold miss is there although ann is not flagged; the careful ones' other
    # labels are not (they agree with each other and with gold: nothing to look at)
    assert [(e["task_id"], e["reasons"]) for e in by["ann"]] == [
        (gold_tasks[0], ["disagrees_with_gold", "disagrees_with_majority"])]  # fmt: skip
    assert "bea" not in by and "cal" not in by
    # one label says little: Dawid–Skene's prior keeps the engineer's competence low (flagged)
    assert [e["reasons"] for e in by["eng"]] == [["flagged_labeler"]]
    ann = by["ann"][0]
    assert ann["choice"] == FLIP[truth[gold_tasks[0]]] and ann["strength"] == 2
    assert ann["order"] is None and 0.7 <= ann["posterior"] <= 1
    # most suspicious first: the reasons' weights never increase down the list
    scores = [_score(e) for e in entries]
    assert scores == sorted(scores, reverse=True) and scores[0] == 14  # gold+majority+flagged
    assert len(entries) == len({(e["kind"], e["label_id"]) for e in entries})
    with Session() as s:
        top = review.review_queue(s, pid, limit=5)
    assert [e["label_id"] for e in top] == [e["label_id"] for e in entries[:5]]

    # a reviewed label leaves the queue, whatever the verdict
    with Session.begin() as s:
        review.review_label(s, reviewer_id=ids["eng"], kind="preference",
                            label_id=ann["label_id"], action="accept")  # fmt: skip
        review.review_label(s, reviewer_id=ids["boss"], kind="preference",
                            label_id=top[0]["label_id"], action="reject")  # fmt: skip
    with Session() as s:
        after = review.review_queue(s, pid, limit=1000)
    gone = {ann["label_id"], top[0]["label_id"]}
    assert {e["label_id"] for e in after} == {e["label_id"] for e in entries} - gone
    with Session() as s:
        four = review.review_queue(s, pid, limit=4)
    assert [e["label_id"] for e in four] == [e["label_id"] for e in after[:4]]

    with Session() as s:
        with pytest.raises(InvalidInput, match="limit must be a whole number of 1 or more"):
            review.review_queue(s, pid, limit=0)
        with pytest.raises(NotFound, match="no project named 'nope'"):
            review.review_queue(s, "nope")


def test_review_queue_of_rankings_and_empty_and_sft_projects(Session):  # noqa: N803
    with Session.begin() as s:
        projects.create_project(s, name="empty", kind="pairwise", overlap=2)
        projects.create_project(s, name="notes", kind="sft")
        rp = projects.create_project(s, name="ranks", kind="ranking", overlap=2, rank_k=3)
        tasks = []
        for i in range(12):
            prompt = add_prompt(s, rp, f"rank {i}")
            answers = [add_response(s, prompt, f"{t}{i}") for t in ("x", "y", "z")]
            tasks.append(add_rank_task(s, rp, prompt, answers))
        fast = users.add_user(s, name="fast", role="labeler", password=None).id
        slow = users.add_user(s, name="slow", role="labeler", password=None).id
        rp_id = rp.id
    for uid, ms in ((fast, 500), (slow, 20_000)):  # "fast" is too fast to have read them
        with Session.begin() as s:
            while (a := queue.claim_next(s, project_id=rp_id, user_id=uid)) is not None:
                view = labeler_views._view(s, a)
                queue.submit_ranking(s, task_id=a.task_id, user_id=uid, time_spent_ms=ms,
                                     order=[c.response_id for c in view.candidates])  # fmt: skip
    with Session() as s:
        assert review.review_queue(s, "empty") == []
        with pytest.raises(InvalidInput, match="'notes' is an sft project"):
            review.review_queue(s, "notes")
        entries = review.review_queue(s, "ranks", limit=100)
    assert len(entries) == 12 and {e["labeler"] for e in entries} == {"fast"}
    assert all(e["kind"] == "ranking" and e["reasons"] == ["flagged_labeler"]
               and e["posterior"] is None and e["choice"] is None and len(e["order"]) == 3
               and "too_fast" in e["labeler_flags"] for e in entries)  # fmt: skip
    with Session.begin() as s:
        eng = users.add_user(s, name="eng", role="engineer", password=None).id
        review.review_label(s, reviewer_id=eng, kind="ranking",
                            label_id=entries[0]["label_id"], action="accept")  # fmt: skip
    with Session() as s:
        assert len(review.review_queue(s, "ranks", limit=100)) == 11
        assert s.scalar(select(func.count()).select_from(Ranking)) == 24


def test_pause_stops_claims_and_renewals_and_unpause_restores(Session):  # noqa: N803
    with Session.begin() as s:
        p = projects.create_project(s, name="pairs", kind="pairwise", overlap=1)
        for i in range(4):
            prompt = add_prompt(s, p, f"q{i}")
            add_compare_task(s, p, prompt, add_response(s, prompt, f"a{i}"),
                             add_response(s, prompt, f"b{i}"))  # fmt: skip
        lab = users.add_user(s, name="lab", role="labeler", password=None).id
        eng = users.add_user(s, name="eng", role="engineer", password=None).id
        users.add_user(s, name="boss", role="admin", password=None)
        pid = p.id
    with Session.begin() as s:
        held = queue.claim_next(s, project_id=pid, user_id=lab)
        held_id, held_task, held_until = held.id, held.task_id, held.expires_at
    with Session.begin() as s:
        user = review.pause_labeler(s, by_user_id=eng, name="lab")
        assert user.paused_at is not None
        first = user.paused_at
    with Session.begin() as s:  # pausing again keeps the first time
        assert review.pause_labeler(s, by_user_id=eng, name="lab").paused_at == first

    later = held_until - timedelta(seconds=60)
    with Session.begin() as s:
        # the task in hand stays in sight (a reload shows it again), as it is
        assert queue.claim_next(s, project_id=pid, user_id=lab, now=later).id == held_id
        with pytest.raises(queue.AccountPaused, match="until a reviewer unpauses it"):
            queue.renew(s, assignment_id=held_id, user_id=lab, now=later)
    with Session.begin() as s:  # once its lease is over, nothing comes back
        with pytest.raises(PermissionDenied, match="your account is paused by a reviewer: "):
            queue.claim_next(s, project_id=pid, user_id=lab,
                             now=held_until + timedelta(seconds=1))  # fmt: skip
    with Session.begin() as s:
        with pytest.raises(queue.AccountPaused):  # what the labeling pages call
            labeler_views.open_task(s, user_id=lab, project_id=pid,
                                    now=held_until + timedelta(seconds=1))  # fmt: skip
    with Session() as s:
        lease = s.get(Assignment, held_id)
        assert lease.expires_at == held_until and lease.status.value == "active"  # not renewed
    # the task in hand may still be finished: the label counts and no next task comes
    with Session.begin() as s:
        outcome = labeler_views.submit_compare(
            s, assignment_id=held_id, user_id=lab, screen_choice="a"
        )
        assert outcome.accepted and outcome.next is None
    with Session() as s:
        assert label_of(s, lab, held_task) is not None
        assert s.scalar(select(func.count()).select_from(Assignment)) == 1  # nothing claimed
    with Session.begin() as s:  # nor taken back: it waits for a reviewer as it is
        with pytest.raises(queue.AccountPaused):
            undo.undo_last(s, user_id=lab, project_id=pid, task_id=held_task)
    with Session() as s:
        assert label_of(s, lab, held_task) is not None

    for by, name, error, message in [
        (eng, "boss", InvalidInput, "boss is an admin: only labelers can be paused"),
        (eng, "eng", InvalidInput, "eng is an engineer: only labelers can be paused"),
        (eng, "zed", NotFound, "no user named 'zed'"),
        (lab, "lab", PermissionDenied, "lab is a labeler; this needs admin or engineer"),
    ]:
        with Session.begin() as s:
            with pytest.raises(error, match=message):
                review.pause_labeler(s, by_user_id=by, name=name)
    with Session.begin() as s:
        with pytest.raises(PermissionDenied, match="lab is a labeler"):
            review.unpause_labeler(s, by_user_id=lab, name="lab")

    with Session.begin() as s:
        assert review.unpause_labeler(s, by_user_id=eng, name="lab").paused_at is None
    with Session.begin() as s:
        again = queue.claim_next(s, project_id=pid, user_id=lab)
        assert again is not None and again.task_id != held_task

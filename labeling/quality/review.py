"""Reviews of labels: a reviewer (admin or engineer) accepts, rejects or relabels one label.

Reviews are append-only rows (models.LabelReview); the latest one per label is in force.
Snapshots read `in_force` to leave rejected labels out and to use a relabel's judgment.

    review = review_label(s, reviewer_id=me.id, kind="preference", label_id=12,
                          action="relabel", choice="b", strength=2, note="B answers it")
    entries = review_queue(s, "my-project", limit=50)   # what needs a look, worst first
    history(s, kind="preference", label_id=12)          # who did what, oldest first
    pause_labeler(s, by_user_id=me.id, name="lefty")    # no more claims until unpaused

Who may review is the policy action "review" (labeling.accounts.policies). Only labelers can
be paused: an admin or engineer is managed through their role or their active flag
(`rlhf users`), and a reviewer cannot lock out another reviewer this way.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling import queue
from labeling.errors import InvalidInput, NotFound, PermissionDenied
from labeling.kinds import with_article
from labeling.models import (
    Choice,
    Demonstration,
    LabelReview,
    Preference,
    Ranking,
    ReviewAction,
    Role,
    Task,
    TaskCandidate,
    User,
    utcnow,
)

LABEL_KINDS = ("preference", "ranking", "demonstration")
_MODELS = {"preference": Preference, "ranking": Ranking, "demonstration": Demonstration}
MAX_NOTE_CHARS = 20_000
# An item whose Dawid–Skene posterior gives no answer this much probability is uncertain.
UNCERTAIN_BELOW = 0.7
# How much each reason weighs in the queue's order (most suspicious first); ties go to the
# label the model finds least likely to be right.
REASON_WEIGHTS = {
    "disagrees_with_gold": 8,
    "disagrees_with_majority": 4,
    "flagged_labeler": 2,
    "uncertain_item": 1,
}
# The report's labeler flags that put all of a labeler's labels up for review.
LABELER_FLAGS = ("position_bias", "low_competence", "too_fast", "low_gold",
                 "reward_disagreement")  # fmt: skip


def label_key(review: LabelReview) -> tuple[str, int]:
    """("preference", 12): which label a review is about."""
    for kind in LABEL_KINDS:
        label_id = getattr(review, f"{kind}_id")
        if label_id is not None:
            return kind, label_id
    raise ValueError(f"review {review.id} names no label")


def in_force(session: Session, project_id: int) -> dict[tuple[str, int], LabelReview]:
    """The review in force for each reviewed label of the project: {(kind, label id): review}."""
    reviews = session.scalars(
        select(LabelReview).where(LabelReview.project_id == project_id).order_by(LabelReview.id)
    )
    return {label_key(review): review for review in reviews}  # later ids overwrite earlier


# --------------------------------------------------------------------------- actions


def _kind(kind: str) -> str:
    if kind not in _MODELS:
        raise InvalidInput(f"unknown label kind {kind!r}: use {', '.join(LABEL_KINDS)}")
    return kind


def _label(session: Session, kind: str, label_id: int) -> Preference | Ranking | Demonstration:
    label = session.get(_MODELS[_kind(kind)], label_id)
    if label is None:
        raise NotFound(f"no {kind} with id {label_id}")
    return label


def _reviewer(session: Session, user_id_or_name: int | str) -> User:
    from labeling.accounts import policies
    from labeling.accounts.users import require_role

    return require_role(session, user_id_or_name, *policies.allowed("review"))


def _note(note: str | None) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise InvalidInput("a review note must be text")
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(f"the note is longer than {MAX_NOTE_CHARS} characters")
    if "\x00" in note:
        raise InvalidInput("the note contains a NUL character")
    return note.strip() or None


def review_label(
    session: Session,
    *,
    reviewer_id: int,
    kind: str,
    label_id: int,
    action: str | ReviewAction,
    choice: str | Choice | None = None,
    strength: int | None = None,
    order: list[int] | None = None,
    note: str | None = None,
) -> LabelReview:
    """Record one review of one label; it is the one in force until the next. Every check
    runs before anything is written: a refusal leaves the database as it was."""
    reviewer = _reviewer(session, reviewer_id)
    try:
        action = ReviewAction(action)
    except ValueError:
        raise InvalidInput(
            f"unknown review action {action!r}: use {', '.join(a.value for a in ReviewAction)}"
        ) from None
    label = _label(session, kind, label_id)
    if label.user_id is not None and label.user_id == reviewer.id:
        raise PermissionDenied(
            f"{kind} {label_id} is your own label: another reviewer has to review it"
        )
    if action != ReviewAction.relabel:
        if choice is not None or strength is not None or order is not None:
            raise InvalidInput(
                f"{action.value} takes no judgment: a choice, strength or order is only for a "
                "relabel"
            )
    elif kind == "demonstration":
        raise InvalidInput(
            "a written answer cannot be relabeled: reject it instead (and write a better one "
            "as a new demonstration if you like)"
        )
    elif kind == "preference":
        choice, strength = _preference_judgment(choice, strength, order)
    else:
        order = _ranking_judgment(session, label, choice, strength, order)
    task = session.get(Task, label.task_id)
    review = LabelReview(
        project_id=task.project_id, task_id=task.id, action=action,
        choice=choice, strength=strength, order=order, note=_note(note),
        reviewer_id=reviewer.id, created_at=utcnow(),
        **{f"{kind}_id": label.id},
    )  # fmt: skip
    session.add(review)
    session.flush()
    return review


def _preference_judgment(choice, strength, order) -> tuple[Choice, int | None]:
    if order is not None:
        raise InvalidInput("a preference is relabeled with a choice, not an order")
    if choice is None:
        raise InvalidInput("a relabel of a preference needs a choice: a, b, tie or both_bad")
    return queue.check_judgment(choice, strength)  # the rule labelers' submits follow


def _ranking_judgment(session: Session, label: Ranking, choice, strength, order) -> list[int]:
    if choice is not None or strength is not None:
        raise InvalidInput("a ranking is relabeled with an order, not a choice or strength")
    if order is None:
        raise InvalidInput("a relabel of a ranking needs an order: the answers' ids, best first")
    try:
        order = [int(r) for r in order]
    except (TypeError, ValueError):
        raise InvalidInput("an order is a list of the task's answer ids, best first") from None
    candidates = list(
        session.scalars(
            select(TaskCandidate.response_id)
            .where(TaskCandidate.task_id == label.task_id)
            .order_by(TaskCandidate.position)
        )
    )
    if len(order) != len(set(order)) or set(order) != set(candidates):
        raise InvalidInput(
            f"the order must list each of task {label.task_id}'s answers exactly once "
            f"({', '.join(map(str, candidates))}), best first"
        )
    return order


def describe(review: LabelReview, reviewer: str | None) -> dict[str, Any]:
    """One review as plain values (what `rlhf review ... --json` prints, a history entry)."""
    kind, label_id = label_key(review)
    judgment = None
    if review.action == ReviewAction.relabel:
        judgment = (
            {"order": [int(r) for r in review.order]}
            if review.order is not None
            else {"choice": review.choice.value, "strength": review.strength}
        )
    return {
        "review_id": review.id,
        "kind": kind,
        "label_id": label_id,
        "project_id": review.project_id,
        "task_id": review.task_id,
        "who": reviewer,
        "when": review.created_at,
        "action": review.action.value,
        "judgment": judgment,
        "note": review.note,
    }


def history(session: Session, *, kind: str, label_id: int) -> list[dict[str, Any]]:
    """Every review of one label, oldest first; the last one is in force ("in_force")."""
    _label(session, kind, label_id)
    column = getattr(LabelReview, f"{kind}_id")
    rows = session.execute(
        select(LabelReview, User.name)
        .outerjoin(User, User.id == LabelReview.reviewer_id)
        .where(column == label_id)
        .order_by(LabelReview.id)
    ).all()
    out = [describe(review, name) | {"in_force": False} for review, name in rows]
    if out:
        out[-1]["in_force"] = True
    return out


# --------------------------------------------------------------------------- pausing


def _labeler(session: Session, by_user_id: int, name: str) -> User:
    from labeling.accounts.users import get_user

    _reviewer(session, by_user_id)
    user = get_user(session, name)  # "no user named ..."
    if user.role != Role.labeler:
        raise InvalidInput(
            f"{user.name} is {with_article(user.role.value)}: only labelers can be paused "
            "(change the role or deactivate the account with `rlhf users` instead)"
        )
    return user


def pause_labeler(session: Session, *, by_user_id: int, name: str) -> User:
    """The labeler claims no new tasks (and renews no lease) until unpaused; they can still
    log in, see their history and finish the task they hold while its lease lasts. Pausing a
    paused labeler keeps the first time."""
    user = _labeler(session, by_user_id, name)
    if user.paused_at is None:
        user.paused_at = utcnow()
    session.flush()
    return user


def unpause_labeler(session: Session, *, by_user_id: int, name: str) -> User:
    """Claims work again. Any role can be unpaused (a labeler paused, then made an engineer,
    must not stay locked); unpausing someone not paused changes nothing."""
    from labeling.accounts.users import get_user

    _reviewer(session, by_user_id)
    user = get_user(session, name)
    user.paused_at = None
    session.flush()
    return user


# --------------------------------------------------------------------------- the queue


def review_queue(
    session: Session, project: str | int, *, limit: int = 50, report: dict | None = None
) -> list[dict]:
    """Labels that need a look and have no review in force, most suspicious first:

    disagrees_with_gold      on a gold task, not among its accepted answers
    disagrees_with_majority  on an item with two labels or more, not the Dawid–Skene
                             posterior's most likely answer
    flagged_labeler          its labeler is flagged by the quality report ("labeler_flags")
    uncertain_item           the item's posterior gives no answer UNCERTAIN_BELOW or more

    Each entry: {kind, label_id, task_id, labeler, choice, order, strength, reasons,
    labeler_flags, posterior, created_at}; `choice`/`strength` are None for a ranking,
    `order` None for a preference; `posterior` is the item's largest posterior probability
    (None for rankings, which have no Dawid–Skene model). The report is computed once (no
    bootstrap; or `report`, the project's quality_report a caller already has: the flags do
    not depend on the bootstrap); everything per label is numpy over the label arrays, and
    only the entries returned are read as rows.
    """
    from labeling.projects import get_project
    from labeling.quality.report import quality_report

    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidInput("the review queue's limit must be a whole number of 1 or more")
    p = get_project(session, project)
    if report is None or report.get("project") != p.name:
        report = quality_report(session, p.id, bootstrap=0)  # refuses sft in a sentence
    flags = {
        row["user_id"]: [f for f in row["flags"] if f in LABELER_FLAGS]
        for row in report["labelers"]
    }
    flagged = {u for u, f in flags.items() if f}
    if report["kind"] == "ranking":
        return _ranking_queue(session, p.id, flagged, flags, limit)
    if not report["labels"]:
        return []
    return _preference_queue(session, p.id, flagged, flags, limit)


def _reviewed(session: Session, project_id: int, column) -> set[int]:
    return set(
        session.scalars(
            select(column).where(LabelReview.project_id == project_id, column.is_not(None))
        )
    )


def _preference_queue(session, project_id, flagged, flags, limit) -> list[dict]:
    from labeling.quality import competence, data

    prefs = data.preferences(session, project_id)
    n = len(prefs)
    # Dawid–Skene as labeling.quality.item_posteriors fits it, over these same arrays (one
    # read of the labels, and every label has its item's posterior)
    tasks, item = np.unique(prefs.task, return_inverse=True)
    users, user = np.unique(prefs.user, return_inverse=True)
    fit = competence.fit(item, user, prefs.choice, len(tasks), len(users), len(data.CHOICES))
    posterior = fit.posterior[item]
    best = posterior.max(1)
    own = posterior[np.arange(n), prefs.choice]  # P(this label's answer is the true one)
    labels_on_item = np.bincount(item, minlength=len(tasks))[item]

    gold = data.gold_answers(session, project_id)
    gold_miss = np.zeros(n, bool)
    if gold:  # each gold task's accepted answers as bits, found for every label by bisection
        gold_tasks = np.array(sorted(gold), np.int64)
        masks = np.array([sum(1 << c for c in gold[int(t)]) for t in gold_tasks], np.int64)
        where = np.minimum(np.searchsorted(gold_tasks, prefs.task), len(gold_tasks) - 1)
        on_gold = gold_tasks[where] == prefs.task
        gold_miss = on_gold & (((masks[where] >> prefs.choice) & 1) == 0)
    majority_miss = (labels_on_item >= 2) & (prefs.choice != posterior.argmax(1))
    by_flagged = np.isin(prefs.user, np.fromiter(flagged, np.int64, len(flagged)))
    uncertain = best < UNCERTAIN_BELOW
    reasons = np.stack([gold_miss, majority_miss, by_flagged, uncertain], 1)
    weights = np.array(list(REASON_WEIGHTS.values()))
    score = reasons.astype(np.int64) @ weights
    candidates = np.nonzero(score > 0)[0]
    ordered = candidates[np.lexsort((prefs.user[candidates], prefs.task[candidates],
                                     own[candidates], -score[candidates]))]  # fmt: skip

    reviewed = sorted(_reviewed(session, project_id, LabelReview.preference_id))
    reviewed_pairs = set()  # labels are unique per (task, user): the arrays' key
    for start in range(0, len(reviewed), 10_000):  # bounded IN lists
        chunk = reviewed[start : start + 10_000]
        reviewed_pairs.update(
            session.execute(
                select(Preference.task_id, Preference.user_id).where(Preference.id.in_(chunk))
            ).all()
        )
    picked = []
    for i in ordered:
        if (int(prefs.task[i]), int(prefs.user[i])) not in reviewed_pairs:
            picked.append(i)
            if len(picked) == limit:
                break
    if not picked:
        return []
    rows = {
        (r.task_id, r.user_id): r
        for r in session.execute(
            select(Preference.id, Preference.task_id, Preference.user_id, Preference.choice,
                   Preference.strength, Preference.created_at, User.name)
            .join(User, User.id == Preference.user_id)
            .where(Preference.task_id.in_({int(prefs.task[i]) for i in picked}))
        )
    }  # fmt: skip
    names = list(REASON_WEIGHTS)
    out = []
    for i in picked:
        row = rows.get((int(prefs.task[i]), int(prefs.user[i])))
        if row is None:  # withdrawn (undone) since the arrays were read
            continue
        out.append({
            "kind": "preference", "label_id": row.id, "task_id": row.task_id,
            "labeler": row.name, "choice": row.choice.value, "order": None,
            "strength": row.strength,
            "reasons": [names[k] for k in range(len(names)) if reasons[i, k]],
            "labeler_flags": flags.get(row.user_id, []),
            "posterior": float(best[i]), "created_at": row.created_at,
        })  # fmt: skip
    return out


def _ranking_queue(session, project_id, flagged, flags, limit) -> list[dict]:
    """Rankings have no gold and no Dawid–Skene model: the flagged labelers' labels, newest
    first."""
    if not flagged:
        return []
    reviewed = select(LabelReview.ranking_id).where(
        LabelReview.project_id == project_id, LabelReview.ranking_id.is_not(None)
    )
    rows = session.execute(
        select(Ranking.id, Ranking.task_id, Ranking.user_id, Ranking.order, Ranking.created_at,
               User.name)
        .join(Task, Task.id == Ranking.task_id)
        .join(User, User.id == Ranking.user_id)
        .where(Task.project_id == project_id, Ranking.user_id.in_(flagged),
               Ranking.id.not_in(reviewed))
        .order_by(Ranking.created_at.desc(), Ranking.id.desc())
        .limit(limit)
    ).all()  # fmt: skip
    return [
        {
            "kind": "ranking", "label_id": r.id, "task_id": r.task_id, "labeler": r.name,
            "choice": None, "order": _order(r.order), "strength": None,
            "reasons": ["flagged_labeler"], "labeler_flags": flags.get(r.user_id, []),
            "posterior": None, "created_at": r.created_at,
        }
        for r in rows
    ]  # fmt: skip


def _order(value) -> list[int]:
    value = json.loads(value) if isinstance(value, str) else value
    return [int(x) for x in value or []]


__all__ = [
    "LABEL_KINDS",
    "describe",
    "history",
    "in_force",
    "label_key",
    "pause_labeler",
    "review_label",
    "review_queue",
    "unpause_labeler",
]

"""The quality options of a snapshot (labeling/snapshots.py's docstring says what each does):
which labels pass (excluded labelers, reviews in force, a minimum Dawid–Skene competence) and
how they are aggregated. Validated here in one sentence each before anything is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling.errors import InvalidInput
from labeling.models import (
    Demonstration,
    LabelReview,
    Preference,
    Project,
    ProjectKind,
    Ranking,
    ReviewAction,
    SnapshotKind,
    Task,
    User,
)
from labeling.projects import get_project
from labeling.quality import competence
from labeling.quality import data as quality_data
from labeling.quality.review import in_force as review_in_force

# --- quality options --------------------------------------------------------------------

AGGREGATES = ("none", "majority", "dawid-skene")
#: a labeler needs this many labeler labels in the project for min_competence to trust them
#: (the Quality page's pairwise kappa asks as many shared items)
MIN_COMPETENCE_LABELS = 10
CONFIDENCE_DECIMALS = 6
COMPETENCE_DECIMALS = 4
NO_LABELER = "(no labeler)"  # the pseudo-labeler of anonymous (imported) labels in stats
QUALITY_STATS = (
    "rejected",
    "relabeled",
    "excluded_labelers",
    "low_competence",
    "competence_unmeasured",
)
AGGREGATE_STATS = ("aggregated_items", "vote_ties")
#: what a quality-aware snapshot left out, as the CLI and the page sum it up
LEFT_OUT = ("excluded_labelers", "rejected", "low_competence", "competence_unmeasured", "vote_ties")


@dataclass
class QualityOptions:
    """The quality options of one create_snapshot call, validated, and what they did."""

    aggregate: str = "none"
    min_competence: float | None = None
    exclude_labelers: tuple[str, ...] = ()
    exclude_rejected: bool = True
    confidence_margin: bool = False
    excluded_ids: frozenset[int] = frozenset()
    reviews: dict[tuple[str, int], LabelReview] = field(default_factory=dict)
    competence: dict[int, float | None] = field(default_factory=dict)  # user id -> competence
    names: dict[int, str] = field(default_factory=dict)  # user id -> name, for labelers met
    reviewed_seen: bool = False  # a label in the scope has a review in force
    dawid_skene: dict[str, Any] | None = None

    @property
    def aggregated(self) -> bool:
        return self.aggregate != "none"

    @property
    def non_default(self) -> bool:
        return bool(
            self.aggregated
            or self.min_competence is not None
            or self.exclude_labelers
            or not self.exclude_rejected
            or self.confidence_margin
        )

    @property
    def active(self) -> bool:
        """Quality-aware: filters, stats and the labeler column are recorded."""
        return self.non_default or self.reviewed_seen

    def filters(self) -> dict[str, Any]:
        return {
            "aggregate": self.aggregate,
            "min_competence": self.min_competence,
            "exclude_labelers": sorted(self.exclude_labelers),
            "exclude_rejected": self.exclude_rejected,
            "confidence_margin": self.confidence_margin,
        }

    def admit(self, kind: str, label_id: int, user_id: int | None, name: str | None, stats):
        """(kept, review in force or None) for one label; a dropped label is counted once."""
        if user_id is not None and name is not None:
            self.names[user_id] = name
        review = self.reviews.get((kind, label_id))
        if review is not None:
            self.reviewed_seen = True
        if user_id is not None and user_id in self.excluded_ids:
            stats["excluded_labelers"] += 1
            return False, None
        if review is not None and review.action == ReviewAction.reject and self.exclude_rejected:
            stats["rejected"] += 1
            return False, None
        if self.min_competence is not None and user_id is not None:
            value = self.competence.get(user_id)
            if value is None:
                stats["competence_unmeasured"] += 1
                return False, None
            if value < self.min_competence:
                stats["low_competence"] += 1
                return False, None
        relabel = review is not None and review.action == ReviewAction.relabel
        return True, review if relabel else None

    def competence_stats(self) -> dict[str, Any]:
        met = sorted(self.names.items(), key=lambda item: item[1])
        values = {name: self.competence.get(uid) for uid, name in met}
        dropped = [
            name
            for uid, name in met
            if uid not in self.excluded_ids
            and (self.competence.get(uid) is None or self.competence[uid] < self.min_competence)
        ]
        return {"competence": values, "competence_dropped": dropped}


def quality_options(
    session: Session,
    project: Project,
    kind: SnapshotKind,
    *,
    aggregate: str,
    min_competence: float | None,
    exclude_labelers,
    exclude_rejected: bool,
    confidence_margin: bool,
) -> QualityOptions:
    """Validate the options (one sentence each; nothing is read or written before) and load
    what they need: the reviews in force, the competences."""
    aggregate = str(aggregate).strip().lower() if aggregate is not None else "none"
    if aggregate not in AGGREGATES:
        raise InvalidInput(f"unknown aggregate {aggregate!r}: use one of {', '.join(AGGREGATES)}")
    if aggregate != "none" and kind == SnapshotKind.sft:
        raise InvalidInput(
            f"an sft snapshot cannot be aggregated ({aggregate}): demonstrations are written "
            "answers, not votes; use aggregate none (the other quality filters still apply)"
        )
    if aggregate != "none" and project.kind == ProjectKind.ranking:
        raise InvalidInput(
            f"project {project.name!r} is a ranking project: aggregation ({aggregate}) needs "
            "pairwise preferences, and no consensus of rankings is implemented; use aggregate "
            "none"
        )
    if confidence_margin and aggregate == "none":
        raise InvalidInput(
            "confidence margin folds an aggregated item's confidence into its margin: it needs "
            "aggregate majority or dawid-skene"
        )
    if confidence_margin and kind != SnapshotKind.preference:
        raise InvalidInput(
            f"a {kind.value} snapshot has no margin column: confidence margin needs a "
            "preference snapshot"
        )
    if min_competence is not None:
        try:
            min_competence = float(min_competence)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"min competence must be a number from 0 to 1, not {min_competence!r}"
            ) from None
        if not (0.0 <= min_competence <= 1.0):  # NaN fails this too
            raise InvalidInput(f"min competence must be from 0 to 1, not {min_competence:g}")
        if project.kind not in (ProjectKind.pairwise, ProjectKind.arena):
            raise InvalidInput(
                f"project {project.name!r} is a {project.kind.value} project: min competence "
                "needs Dawid–Skene competence, which is measured on comparisons (a pairwise or "
                "arena project)"
            )
    if isinstance(exclude_labelers, str):
        exclude_labelers = exclude_labelers.split(",")
    names = tuple(sorted({str(n).strip() for n in (exclude_labelers or ()) if str(n).strip()}))
    found = dict(session.execute(select(User.name, User.id).where(User.name.in_(names))).all())
    unknown = [n for n in names if n not in found]
    if unknown:
        raise InvalidInput(
            f"no user named {unknown[0]!r}: exclude labelers takes labelers' names"
            + (f" ({len(unknown) - 1} more unknown)" if len(unknown) > 1 else "")
        )
    quality = QualityOptions(
        aggregate=aggregate,
        min_competence=min_competence,
        exclude_labelers=names,
        exclude_rejected=bool(exclude_rejected),
        confidence_margin=bool(confidence_margin),
        excluded_ids=frozenset(found.values()),
        reviews=review_in_force(session, project.id),
    )
    if min_competence is not None:
        quality.competence = competences(session, project)
    return quality


def competences(session: Session, project: Project) -> dict[int, float | None]:
    """Each labeler's Dawid–Skene competence as quality_report reports it: the same fit
    (labeling.quality.item_posteriors) over the same labels (quality.data.preferences),
    rounded; None for a labeler with fewer than MIN_COMPETENCE_LABELS of them."""
    prefs = quality_data.preferences(session, project.id)
    if len(prefs) == 0:
        return {}
    tasks, item = np.unique(prefs.task, return_inverse=True)
    user_ids, user, counts = np.unique(prefs.user, return_inverse=True, return_counts=True)
    C = len(quality_data.CHOICES)
    fit = competence.fit(item, user, prefs.choice, len(tasks), len(user_ids), C)
    out: dict[int, float | None] = {}
    for uid, n, reliability in zip(user_ids, counts, fit.reliability, strict=True):
        enough = n >= MIN_COMPETENCE_LABELS and np.isfinite(reliability)
        out[int(uid)] = round(float(reliability), COMPETENCE_DECIMALS) if enough else None
    return out


def labeler_names(session: Session, project: Project | str | int) -> list[str]:
    """The names of everyone who gave a label in the project (for exclude_labelers), sorted."""
    if not isinstance(project, Project):
        project = get_project(session, project)
    names: set[str] = set()
    for label_cls in (Preference, Ranking, Demonstration):
        names.update(
            session.scalars(
                select(User.name)
                .join(label_cls, label_cls.user_id == User.id)
                .join(Task, Task.id == label_cls.task_id)
                .where(Task.project_id == project.id)
                .distinct()
            )
        )
    return sorted(names)

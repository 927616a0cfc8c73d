"""Reviews of labels: a reviewer (admin or engineer) accepts, rejects or relabels one label.

Reviews are append-only rows (models.LabelReview); the latest one per label is in force.
Snapshots read `in_force` to leave rejected labels out and to use a relabel's judgment.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling.models import LabelReview

LABEL_KINDS = ("preference", "ranking", "demonstration")


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

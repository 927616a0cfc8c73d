"""Label quality: can a project's labels be trusted, and whose?

    report = quality_report(session, "my-project", bootstrap=1000)   # what `rlhf quality` prints
    fit = item_posteriors(session, project_id)    # Dawid–Skene per item, for aggregation

data.py         the labels as numpy arrays (one SQL query; COPY on PostgreSQL)
agreement.py    raw agreement, Fleiss' kappa, Krippendorff's alpha, Cohen's kappa, Kendall's tau
bias.py         Wilson intervals, exact binomial tests, Benjamini–Hochberg, group medians
competence.py   Dawid–Skene by EM, vectorised
report.py       the report itself (its docstring says what every field means)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from labeling.quality import competence, data
from labeling.quality.report import DEFAULT_BOOTSTRAP, FLAG_Q, TOO_FAST_SECONDS, quality_report

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "FLAG_Q",
    "TOO_FAST_SECONDS",
    "ItemPosteriors",
    "item_posteriors",
    "quality_report",
]


@dataclass
class ItemPosteriors:
    """Dawid–Skene over a pairwise project's labeler labels: one row per labeled task."""

    task_ids: np.ndarray  # (items,)
    posterior: np.ndarray  # (items, 4): P(true choice) in data.CHOICES order
    user_ids: np.ndarray  # (labelers,)
    reliability: np.ndarray  # (labelers,) P(label == true choice)
    classes: tuple[str, ...] = data.CHOICES


def item_posteriors(session: Session, project_id: int) -> ItemPosteriors:
    prefs = data.preferences(session, project_id)
    tasks, item = np.unique(prefs.task, return_inverse=True)
    users, user = np.unique(prefs.user, return_inverse=True)
    fit = competence.fit(item, user, prefs.choice, len(tasks), len(users), len(data.CHOICES))
    return ItemPosteriors(tasks, fit.posterior, users, fit.reliability)

"""Agreement over time: is a project's labeling getting better or worse, day by day?

Per UTC day (weeks, starting on Monday, once the labels span more than WEEKS_AFTER_DAYS days):
  labels           labels given that day
  pairs            pairs of labels on the same item whose later label came that day
  agreement        the share of those pairs that agree (same choice), Wilson 95% interval
  left_win_rate    the share of that day's decisive labels won by the answer shown on the left

From the arrays labeling/quality/data.py reads (the same labels as the rest of the report),
in O(n log n): a pair is counted at its later label, so a label adds "the labels before it on
its item" to the pairs of its day and "those with its choice" to the agreeing ones. Both
are positions in a sort, by (item, day) and by (item, choice, day): no pair is ever formed,
which matters on gold items that every labeler answers.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from labeling.quality import bias, data

WEEKS_AFTER_DAYS = 60
_EPOCH = date(1970, 1, 1)  # a Thursday: day d is weekday (d + 3) % 7, Monday 0


def _positions(keys: list[np.ndarray], group: np.ndarray) -> np.ndarray:
    """Each label's position within its `group` once sorted by `keys` (last key first, as
    np.lexsort): the number of labels of its group sorted before it."""
    order = np.lexsort(keys)
    g = group[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    out = np.empty(len(g), dtype=np.int64)
    out[order] = np.arange(len(g)) - first
    return out


def over_time(prefs: data.Preferences) -> list[dict[str, Any]]:
    """One entry per period, oldest first (see the module docstring); [] without labels."""
    if len(prefs) == 0:
        return []
    day = prefs.day
    weekly = int(day.max() - day.min()) > WEEKS_AFTER_DAYS
    period = day - (day + 3) % 7 if weekly else day
    periods, at = np.unique(period, return_inverse=True)
    n = len(periods)

    earlier = _positions([day, prefs.task], prefs.task)
    same = _positions([day, prefs.choice, prefs.task], prefs.task * 4 + prefs.choice)
    pairs = np.bincount(at, weights=earlier, minlength=n)
    agreeing = np.bincount(at, weights=same, minlength=n)
    labels = np.bincount(at, minlength=n)
    decisive = (prefs.choice <= 1) & (prefs.left_is_a >= 0)
    left_won = decisive & ((prefs.choice == 0) == (prefs.left_is_a == 1))
    n_decisive = np.bincount(at, weights=decisive, minlength=n)
    n_left = np.bincount(at, weights=left_won, minlength=n)
    low, high = bias.wilson(agreeing, pairs)

    out = []
    for i, p in enumerate(periods):
        has_pairs = pairs[i] > 0
        out.append({
            "period": (_EPOCH + timedelta(days=int(p))).isoformat(),
            "period_kind": "week" if weekly else "day",
            "labels": int(labels[i]),
            "pairs": int(pairs[i]),
            "agreement": float(agreeing[i] / pairs[i]) if has_pairs else None,
            "ci_low": float(low[i]) if has_pairs else None,
            "ci_high": float(high[i]) if has_pairs else None,
            "left_win_rate": float(n_left[i] / n_decisive[i]) if n_decisive[i] else None,
        })  # fmt: skip
    return out


def agreement_over_time(session: Session, project_id: int) -> list[dict[str, Any]]:
    """over_time of a project's labels (quality_report passes the arrays it has read)."""
    return over_time(data.preferences(session, project_id))

"""Agreement over time: is a project's labeling getting better or worse, day by day?

Per UTC day (weeks once the labels span more than WEEKS_AFTER_DAYS days):
  labels           labels given that day
  pairs            pairs of labels on the same item whose later label came that day
  agreement        the share of those pairs that agree (same choice), Wilson 95% interval
  left_win_rate    the share of that day's decisive labels won by the answer shown on the left

Two grouped SQL queries (no row per label crosses over): a day's pairs are counted in the
database by a self-join of the item's labels, so a million labels with overlap 3 are 10^6
pairs at most. The labels counted are the ones labeling/quality/data.py reads.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from labeling.quality import bias

WEEKS_AFTER_DAYS = 60

# A UTC day as 'YYYY-MM-DD' text: SQLite stores naive UTC text, PostgreSQL timestamptz.
_DAY = {
    "sqlite": "substr({col}, 1, 10)",
    "postgresql": "to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}
_LATER = {
    "sqlite": "max(p1.created_at, p2.created_at)",
    "postgresql": "GREATEST(p1.created_at, p2.created_at)",
}
_COUNTED = "{p}.user_id IS NOT NULL"  # as data.py: in-app labels and imported ones with a labeler

_PAIRS = """
SELECT {day} AS day, count(*) AS pairs, sum(CASE WHEN p1.choice = p2.choice THEN 1 ELSE 0 END)
FROM preferences p1
JOIN preferences p2 ON p2.task_id = p1.task_id AND p2.id > p1.id
JOIN tasks t ON t.id = p1.task_id
WHERE t.project_id = :project_id AND {counted1} AND {counted2}
GROUP BY day"""

_LABELS = """
SELECT {day} AS day, count(*),
       sum(CASE WHEN p.choice IN ('a', 'b') AND p.left_response_id IS NOT NULL THEN 1 ELSE 0 END),
       sum(CASE WHEN (p.choice = 'a' AND p.left_response_id = t.response_a_id)
                  OR (p.choice = 'b' AND p.left_response_id = t.response_b_id) THEN 1 ELSE 0 END)
FROM preferences p JOIN tasks t ON t.id = p.task_id
WHERE t.project_id = :project_id AND {counted}
GROUP BY day"""


def agreement_over_time(session: Session, project_id: int) -> list[dict[str, Any]]:
    """One entry per period, oldest first (see the module docstring); [] without labels."""
    dialect = "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"
    day = _DAY[dialect]
    params = {"project_id": project_id}
    labels = session.execute(
        text(_LABELS.format(day=day.format(col="p.created_at"), counted=_COUNTED.format(p="p"))),
        params,
    ).all()
    if not labels:
        return []
    pairs = session.execute(
        text(
            _PAIRS.format(
                day=day.format(col=_LATER[dialect]),
                counted1=_COUNTED.format(p="p1"),
                counted2=_COUNTED.format(p="p2"),
            )
        ),
        params,
    ).all()
    days = sorted({d for d, *_ in labels} | {d for d, *_ in pairs})
    first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
    weekly = (last - first).days > WEEKS_AFTER_DAYS

    def period(day_text: str) -> date:
        d = date.fromisoformat(day_text)
        return d - timedelta(days=d.weekday()) if weekly else d  # weeks start on Monday

    sums: dict[date, np.ndarray] = {}  # labels, decisive, left wins, pairs, agreeing
    for d, n, decisive, left in labels:
        sums.setdefault(period(d), np.zeros(5))[:3] += (n, decisive or 0, left or 0)
    for d, n, agreeing in pairs:
        sums.setdefault(period(d), np.zeros(5))[3:] += (n, agreeing or 0)
    periods = sorted(sums)
    table = np.array([sums[p] for p in periods])
    low, high = bias.wilson(table[:, 4], table[:, 3])
    out = []
    for i, start in enumerate(periods):
        n_labels, decisive, left, n_pairs, agreeing = table[i]
        out.append({
            "period": start.isoformat(),
            "period_kind": "week" if weekly else "day",
            "labels": int(n_labels),
            "pairs": int(n_pairs),
            "agreement": float(agreeing / n_pairs) if n_pairs else None,
            "ci_low": float(low[i]) if n_pairs else None,
            "ci_high": float(high[i]) if n_pairs else None,
            "left_win_rate": float(left / decisive) if decisive else None,
        })  # fmt: skip
    return out

"""One project's label-quality report (what `rlhf quality --json` prints and the Quality page
shows), computed from the arrays of labeling/quality/data.py.

Pairwise and arena projects (Preference labels):
  agreement   on items with >= 2 labels: raw agreement, Fleiss' kappa, Krippendorff's alpha
              nominal over {a, b, tie, both_bad} and ordinal over the signed strength scale
              (B much better -3 .. tie 0 .. A much better +3; both_bad is no point on it and
              is left out; a decided label without a strength counts as 2, the page's
              default), each with a bootstrap 95% interval; Cohen's kappa per pair of
              labelers with MIN_PAIR_ITEMS shared items or more.
  labelers    gold accuracy (Wilson interval), position bias (exact binomial test of "the
              answer shown on the left won" against 1/2 over decisive labels, Benjamini–
              Hochberg across labelers, flagged at q < FLAG_Q), speed, Dawid–Skene
              competence, pooled kappa with everyone they share items with, and agreement
              with a reward model where it is confident.
  items       counts, the Dawid–Skene prior, and the least certain items.
  over_time   per day (or week): labels, pairs of labels on one item, their agreement with a
              Wilson interval, and the left-answer win rate (labeling/quality/trend.py).
Dawid–Skene runs over all four choices, not only the decisive ones: "tie" and "both bad" are
answers a careless labeler can hide behind, and dropping them would hide it.

Ranking projects: Kendall's tau-b between labelers on shared items and to the consensus
(each label against the mean rank the *other* labelers gave: with overlap 3, a consensus
that includes the label itself would be a third of the label), speed; the pairwise-only
fields are null.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from labeling.errors import InvalidInput, NotFound
from labeling.models import Project, ProjectKind
from labeling.quality import agreement as ag
from labeling.quality import bias, competence, data, trend

DEFAULT_BOOTSTRAP = 1000
FLAG_Q = 0.01  # Benjamini–Hochberg q below which a labeler is flagged
# A decision in under 3 s cannot have followed reading two answers (a short answer alone is
# ~40 words, ~10 s at reading speed): such submits are clicks, not judgments.
TOO_FAST_SECONDS = 3.0
TOO_FAST_FLAG_SHARE = 0.25  # flagged "too_fast" when more than this share of submits are
MIN_PAIR_ITEMS = 10  # Cohen's kappa of a pair of labelers needs this many shared items
MAX_PAIRS = 200  # pairs listed (least agreeing first); the count of all is reported
UNCERTAIN_ITEMS = 20  # the least certain items listed
# The reward model counts where it is confident: |sigmoid(r_a - r_b) - 1/2| > this.
REWARD_CONFIDENCE = 0.2
# Below this Dawid–Skene reliability (P(label == true class)) a labeler is flagged: a coin
# between A and B scores about 1/2, and 0.6 is barely better than one.
LOW_COMPETENCE = 0.6
LOW_GOLD = 0.5  # flagged when the Wilson upper end of gold accuracy is below this
STRENGTH_DEFAULT = 2  # what the Compare page preselects

# scores(rows) -> r_a - r_b per row; rows as labeling.quality.data.pairs_to_score gives them
RewardScorer = Callable[[list[dict[str, Any]]], list[float]]


def _f(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def quality_report(
    session: Session,
    project: str | int,
    *,
    labeler: str | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    reward_scorer: RewardScorer | None = None,
    reward_checkpoint: int | None = None,
) -> dict[str, Any]:
    """The report for a project (name or id); `labeler` keeps only that labeler's row (every
    metric is still computed over all labels: competence and agreement need them)."""
    from labeling.projects import get_project

    if bootstrap < 0:
        raise InvalidInput("bootstrap rounds must be 0 or more")
    p = get_project(session, project)
    if labeler is not None:  # before any work: an unknown name is told at once
        from labeling.accounts.users import get_user

        get_user(session, labeler)  # "no user named ..."
    rng = np.random.default_rng(seed)
    if p.kind in (ProjectKind.pairwise, ProjectKind.arena):
        report = _pairwise(session, p, bootstrap, rng, reward_scorer)
    elif p.kind == ProjectKind.ranking:
        if reward_scorer is not None:
            raise InvalidInput(
                f"project {p.name!r} is a ranking project: comparing labelers with a reward "
                "model needs a pairwise or arena project"
            )
        report = _ranking(session, p, bootstrap, rng)
        report["over_time"] = None  # pairs of rankings do not agree or disagree as choices do
    else:
        raise InvalidInput(
            f"project {p.name!r} is an {p.kind.value} project (written answers): label quality "
            "needs comparisons (a pairwise or arena project) or rankings"
        )
    report["reward_checkpoint"] = reward_checkpoint if reward_scorer is not None else None
    report["bootstrap"] = bootstrap
    if labeler is not None:
        rows = [r for r in report["labelers"] if r["name"] == labeler]
        if not rows:
            raise NotFound(f"{labeler} has given no labels in project {p.name!r}")
        report["labelers"] = rows
    return report


def _empty(p: Project, kind: str, note: str) -> dict[str, Any]:
    return {
        "project": p.name, "kind": kind, "labels": 0, "agreement": None,
        "position_bias": None, "speed": None, "labelers": [],
        "items": {"labeled": 0, "with_overlap": 0}, "reward": None, "notes": [note],
        "over_time": [],
    }  # fmt: skip


def _speed(user: np.ndarray, ms: np.ndarray, n_users: int):
    """Per user and overall: median seconds and the share of timed submits under the floor."""
    timed = ms >= 0
    seconds = ms[timed] / 1000.0
    medians = bias.group_medians(user[timed], ms[timed], n_users) / 1000.0
    fast = np.bincount(user[timed], weights=seconds < TOO_FAST_SECONDS, minlength=n_users)
    n = np.bincount(user[timed], minlength=n_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = fast / n
    overall = {
        "timed_labels": int(timed.sum()),
        "median_seconds": _f(np.median(seconds)) if len(seconds) else None,
        "too_fast_share": _f((seconds < TOO_FAST_SECONDS).mean()) if len(seconds) else None,
        "too_fast_seconds": TOO_FAST_SECONDS,
    }
    return medians, share, overall


def _pairwise(
    session: Session,
    p: Project,
    bootstrap: int,
    rng: np.random.Generator,
    reward_scorer: RewardScorer | None,
) -> dict[str, Any]:
    prefs = data.preferences(session, p.id)
    kind = p.kind.value
    if len(prefs) == 0:
        return _empty(p, kind, f"project {p.name!r} has no labels from labelers yet")
    notes: list[str] = []
    tasks, item = np.unique(prefs.task, return_inverse=True)
    users, user = np.unique(prefs.user, return_inverse=True)
    n_items, n_users, C = len(tasks), len(users), len(data.CHOICES)
    names = data.user_names(session, users)
    labels = np.bincount(user, minlength=n_users)

    # --- agreement
    counts = ag.count_matrix(item, prefs.choice, n_items, C)
    overlap_items = int((counts.sum(1) >= 2).sum())
    nominal = ag.agreement(counts, metric="nominal", bootstrap=bootstrap, rng=rng)
    pairs = ag.pair_tables(item, user, prefs.choice, n_users, C)
    if nominal is None:
        agreement = None
        notes.append(
            f"no item of project {p.name!r} has two labels yet, so there is no agreement to "
            "measure: set the project's overlap to 2 or more"
        )
        pooled = np.full(n_users, np.nan)
    else:
        decided = prefs.choice <= 2  # a, b, tie lie on the strength scale; both_bad does not
        strength = np.where(prefs.strength > 0, prefs.strength, STRENGTH_DEFAULT)
        signed = np.select([prefs.choice == 0, prefs.choice == 1], [strength, -strength], 0)
        ordinal_counts = ag.count_matrix(item[decided], signed[decided] + 3, n_items, 7)
        ordinal = ag.agreement(ordinal_counts, metric="ordinal", bootstrap=bootstrap, rng=rng)
        agreement = {
            "items": overlap_items,
            "labels": int(counts[counts.sum(1) >= 2].sum()),
            "raw": nominal["raw"],
            "fleiss_kappa": nominal["fleiss_kappa"],
            "alpha_nominal": nominal["alpha"],
            "alpha_ordinal": ordinal["alpha"] if ordinal else None,
            **_pairs_json(pairs, names, bootstrap, rng),
        }
        pooled = ag.cohen_kappa(pairs.pooled)

    # --- gold
    gold = data.gold_answers(session, p.id)
    if gold:
        gold_tasks = np.fromiter(gold, dtype=np.int64)
        masks = np.array([sum(1 << c for c in gold[t]) for t in gold_tasks], np.int64)
        order = np.argsort(gold_tasks)
        at = np.searchsorted(gold_tasks[order], prefs.task)
        at = np.minimum(at, len(gold_tasks) - 1)
        on_gold = gold_tasks[order][at] == prefs.task
        correct = on_gold & (((masks[order][at] >> prefs.choice) & 1) == 1)
        gold_n = np.bincount(user, weights=on_gold, minlength=n_users)
        gold_right = np.bincount(user, weights=correct, minlength=n_users)
        gold_low, gold_high = bias.wilson(gold_right, gold_n)
        with np.errstate(invalid="ignore", divide="ignore"):
            gold_acc = gold_right / gold_n
    else:
        notes.append(f"project {p.name!r} has no gold items: gold accuracy is not measured")
        gold_n = gold_acc = gold_low = gold_high = None

    # --- position bias: the answer shown on the left won a decisive label
    decisive = (prefs.choice <= 1) & (prefs.left_is_a >= 0)
    left_won = decisive & ((prefs.choice == 0) == (prefs.left_is_a == 1))
    n_dec = np.bincount(user, weights=decisive, minlength=n_users)
    k_left = np.bincount(user, weights=left_won, minlength=n_users)
    p_left = bias.binomial_two_sided(k_left, n_dec)
    q_left = bias.benjamini_hochberg(p_left)
    left_low, left_high = bias.wilson(k_left, n_dec)
    total_dec, total_left = int(decisive.sum()), int(left_won.sum())
    project_p = _f(bias.binomial_two_sided(total_left, total_dec)) if total_dec else None
    position = {
        "decisive": total_dec,
        "left_wins": total_left,
        "left_win_rate": total_left / total_dec if total_dec else None,
        "p_value": project_p,
        "position_bias": bool(project_p is not None and project_p < FLAG_Q),
        "flagged_labelers": int(np.sum(q_left < FLAG_Q)),
    }

    medians, too_fast, speed = _speed(user, prefs.ms, n_users)

    # --- competence (Dawid–Skene over all four choices)
    ds = competence.fit(item, user, prefs.choice, n_items, n_users, C)
    reliability = ds.reliability

    # --- reward model
    reward = _reward(session, prefs, user, n_users, reward_scorer) if reward_scorer else None

    rows = []
    for j in range(n_users):
        flags = []
        if q_left[j] < FLAG_Q:
            flags.append("position_bias")
        if too_fast[j] > TOO_FAST_FLAG_SHARE:
            flags.append("too_fast")
        if reliability[j] < LOW_COMPETENCE:
            flags.append("low_competence")
        if gold_n is not None and gold_n[j] > 0 and gold_high[j] < LOW_GOLD:
            flags.append("low_gold")
        if reward is not None and reward["flag"][j]:
            flags.append("reward_disagreement")
        rows.append({
            "name": names[j],
            "user_id": int(users[j]),
            "labels": int(labels[j]),
            "gold_accuracy": None if gold_n is None else _f(gold_acc[j]),
            "gold_n": None if gold_n is None else int(gold_n[j]),
            "gold_ci_low": None if gold_n is None else _f(gold_low[j]),
            "gold_ci_high": None if gold_n is None else _f(gold_high[j]),
            "left_win_rate": _f(k_left[j] / n_dec[j]) if n_dec[j] else None,
            "left_ci_low": _f(left_low[j]),
            "left_ci_high": _f(left_high[j]),
            "left_p_value": _f(p_left[j]),
            "left_q_value": _f(q_left[j]),
            "decisive": int(n_dec[j]),
            "position_bias": bool(q_left[j] < FLAG_Q),
            "median_seconds": _f(medians[j]),
            "too_fast_share": _f(too_fast[j]),
            "competence": _f(reliability[j]),
            "kappa_with_others": _f(pooled[j]),
            "agreement_with_reward": None if reward is None else _f(reward["rate"][j]),
            "reward_n": None if reward is None else int(reward["n"][j]),
            "reward_q_value": None if reward is None else _f(reward["q"][j]),
            "flags": flags,
        })  # fmt: skip
    rows.sort(key=lambda r: (-r["labels"], r["name"]))
    return {
        "project": p.name,
        "kind": kind,
        "labels": len(prefs),
        "agreement": agreement,
        "position_bias": position,
        "speed": speed,
        "labelers": rows,
        "items": _items_json(tasks, counts, ds, gold, overlap_items),
        "reward": None if reward is None else reward["summary"],
        "notes": notes,
        "over_time": trend.over_time(prefs),
    }


def _pairs_json(
    pairs: ag.PairTables, names: list[str], bootstrap: int, rng: np.random.Generator
) -> dict[str, Any]:
    shared = pairs.shared
    keep = np.nonzero(shared >= MIN_PAIR_ITEMS)[0]
    kappas = ag.cohen_kappa(pairs.tables[keep])
    order = keep[np.argsort(np.where(np.isfinite(kappas), kappas, np.inf), kind="stable")]
    listed = order[:MAX_PAIRS]
    low, high = ag.cohen_intervals(pairs.tables[listed], bootstrap, rng)
    kappa_listed = ag.cohen_kappa(pairs.tables[listed])
    finite = kappas[np.isfinite(kappas)]
    return {
        "cohen_kappa_pairs": [
            {
                "a": names[pairs.first[k]],
                "b": names[pairs.second[k]],
                "items": int(shared[k]),
                "kappa": _f(kappa_listed[i]),
                "ci_low": _f(low[i]),
                "ci_high": _f(high[i]),
            }
            for i, k in enumerate(listed)
        ],  # fmt: skip
        "pairs_sharing_items": int(len(shared)),
        "pairs_qualifying": int(len(keep)),
        "min_pair_items": MIN_PAIR_ITEMS,
        "cohen_kappa_mean": _f(finite.mean()) if len(finite) else None,
    }


def _items_json(tasks, counts, ds: competence.DawidSkene, gold, overlap_items) -> dict[str, Any]:
    labeled = counts.sum(1)
    multi = labeled >= 2
    unanimous = multi & (counts.max(1) == labeled)
    best = ds.posterior.max(1)
    top_votes = counts.max(1, keepdims=True)
    clear_majority = (counts == top_votes).sum(1) == 1
    majority = counts.argmax(1)
    differs = multi & clear_majority & (majority != ds.posterior.argmax(1))
    candidates = np.nonzero(multi)[0]
    uncertain = candidates[np.argsort(best[candidates], kind="stable")[:UNCERTAIN_ITEMS]]
    return {
        "labeled": int(len(tasks)),
        "with_overlap": overlap_items,
        "gold": len(gold),
        "unanimous_share": _f(unanimous.sum() / multi.sum()) if multi.any() else None,
        "majority_differs_from_dawid_skene": int(differs.sum()),
        "mean_confidence": _f(best.mean()),
        "dawid_skene": {
            "classes": list(data.CHOICES),
            "prior": {c: _f(v) for c, v in zip(data.CHOICES, ds.prior, strict=True)},
            "iterations": ds.iterations,
            "log_likelihood": _f(ds.log_likelihood),
        },
        "uncertain": [
            {
                "task_id": int(tasks[i]),
                "labels": {c: int(v) for c, v in zip(data.CHOICES, counts[i], strict=True)},
                "posterior": {c: _f(v) for c, v in zip(data.CHOICES, ds.posterior[i], strict=True)},
            }
            for i in uncertain
        ],  # fmt: skip
    }


def _reward(session, prefs: data.Preferences, user, n_users, scorer) -> dict[str, Any]:
    """Each labeler's agreement with a reward model on their decisive labels where the model
    is confident; flagged when it is credibly below everyone else's pooled rate (one-sided
    exact binomial test, Benjamini–Hochberg, q < FLAG_Q)."""
    decisive = prefs.choice <= 1
    task_ids = np.unique(prefs.task[decisive])
    rows = data.pairs_to_score(session, [int(t) for t in task_ids])
    diffs = np.asarray(scorer(rows) if rows else [], float)  # no model load for nothing
    if len(diffs) != len(rows):
        raise InvalidInput(f"the reward model scored {len(diffs)} of {len(rows)} pairs")
    scored = np.array([r["task_id"] for r in rows], np.int64)
    order = np.argsort(scored)
    prob = np.full(len(prefs), 0.5)
    at = np.minimum(np.searchsorted(scored[order], prefs.task), max(len(scored) - 1, 0))
    if len(scored):
        hit = scored[order][at] == prefs.task
        prob = np.where(hit, 1 / (1 + np.exp(-diffs[order][at])), 0.5)
    confident = decisive & (np.abs(prob - 0.5) > REWARD_CONFIDENCE)
    agree = confident & (prefs.choice == np.where(prob > 0.5, 0, 1))
    n = np.bincount(user, weights=confident, minlength=n_users)
    k = np.bincount(user, weights=agree, minlength=n_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = k / n
        others = (k.sum() - k) / (n.sum() - n)
    p_value = bias.binomial_less(k, n, np.clip(np.nan_to_num(others, nan=0.5), 0, 1))
    q = bias.benjamini_hochberg(p_value)
    flag = (q < FLAG_Q) & (rate < others)
    return {
        "rate": rate, "n": n, "q": q, "flag": flag,
        "summary": {"scored_pairs": len(rows), "confident_labels": int(confident.sum()),
                    "agreement": _f(k.sum() / n.sum()) if n.sum() else None,
                    "confidence_margin": REWARD_CONFIDENCE},
    }  # fmt: skip


# --------------------------------------------------------------------------- rankings


def _ranking(session: Session, p: Project, bootstrap: int, rng: np.random.Generator):
    r = data.rankings(session, p.id)
    if len(r.task) == 0:
        return _empty(p, p.kind.value, f"project {p.name!r} has no rankings from labelers yet")
    notes: list[str] = []
    tasks, item = np.unique(r.task, return_inverse=True)
    users, user = np.unique(r.user, return_inverse=True)
    n_users = len(users)
    names = data.user_names(session, users)
    labels = np.bincount(user, minlength=n_users)
    per_item = np.bincount(item)
    pair_tau, pair_item, pair_first, pair_second = [], [], [], []
    loo_tau = np.full(len(item), np.nan)
    # rankings of the same size together: one array per size (k candidates)
    sizes = np.array([len(x) for x in r.ranks])
    for k in np.unique(sizes):
        idx = np.nonzero(sizes == k)[0]
        R = np.stack([r.ranks[i] for i in idx])
        first, second = ag.label_pairs(item[idx], user[idx])
        pair_tau.append(ag.kendall_tau_b(R[first], R[second]))
        pair_item.append(item[idx][first])
        pair_first.append(user[idx][first])
        pair_second.append(user[idx][second])
        # leave-one-out consensus: the mean rank of the item's other labels
        sums = np.zeros((len(tasks), k))
        np.add.at(sums, item[idx], R)
        m = np.bincount(item[idx], minlength=len(tasks))[item[idx]]
        multi = m >= 2
        others = (sums[item[idx]] - R)[multi] / (m[multi] - 1)[:, None]
        loo_tau[idx[multi]] = ag.kendall_tau_b(R[multi], others)
    tau = np.concatenate(pair_tau) if pair_tau else np.zeros(0)
    if len(tau) == 0:
        agreement = None
        notes.append(
            f"no item of project {p.name!r} has two rankings yet, so there is no agreement to "
            "measure: set the project's overlap to 2 or more"
        )
    else:
        pi, pf, ps = map(np.concatenate, (pair_item, pair_first, pair_second))
        key = pf.astype(np.int64) * n_users + ps
        keys, inv = np.unique(key, return_inverse=True)
        ok = np.isfinite(tau)
        shared = np.bincount(inv, minlength=len(keys))
        mean_tau = np.bincount(inv[ok], weights=tau[ok], minlength=len(keys)) / np.maximum(
            np.bincount(inv[ok], minlength=len(keys)), 1
        )
        keep = np.nonzero(shared >= MIN_PAIR_ITEMS)[0]
        keep = keep[np.argsort(mean_tau[keep], kind="stable")][:MAX_PAIRS]
        agreement = {
            "items": int((per_item >= 2).sum()),
            "kendall_tau": ag.bootstrap_mean(tau, pi, bootstrap, rng),
            "kendall_tau_to_consensus": ag.bootstrap_mean(loo_tau, item, bootstrap, rng),
            "kendall_tau_pairs": [
                {
                    "a": names[keys[k] // n_users],
                    "b": names[keys[k] % n_users],
                    "items": int(shared[k]),
                    "tau": _f(mean_tau[k]),
                }
                for k in keep
            ],  # fmt: skip
            "pairs_sharing_items": int(len(keys)),
            "min_pair_items": MIN_PAIR_ITEMS,
        }
    ok = np.isfinite(loo_tau)
    consensus = np.bincount(user[ok], weights=loo_tau[ok], minlength=n_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        consensus /= np.bincount(user[ok], minlength=n_users)
    medians, too_fast, speed = _speed(user, r.ms, n_users)
    notes.append(
        "rankings have no gold answers, no sides and no Dawid–Skene model: those fields are null"
    )
    rows = []
    for j in range(n_users):
        rows.append({
            "name": names[j], "user_id": int(users[j]), "labels": int(labels[j]),
            "gold_accuracy": None, "gold_n": None, "left_win_rate": None,
            "left_p_value": None, "position_bias": False,
            "median_seconds": _f(medians[j]), "too_fast_share": _f(too_fast[j]),
            "competence": None, "agreement_with_reward": None,
            "kendall_tau_to_consensus": _f(consensus[j]),
            "flags": ["too_fast"] if too_fast[j] > TOO_FAST_FLAG_SHARE else [],
        })  # fmt: skip
    rows.sort(key=lambda row: (-row["labels"], row["name"]))
    return {
        "project": p.name, "kind": p.kind.value, "labels": int(len(r.task)),
        "agreement": agreement, "position_bias": None, "speed": speed, "labelers": rows,
        "items": {"labeled": int(len(tasks)), "with_overlap": int((per_item >= 2).sum())},
        "reward": None, "notes": notes,
    }  # fmt: skip

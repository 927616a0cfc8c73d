"""Label quality (labeling/quality) on SQLite and PostgreSQL: simulated labelers with known
behaviour label through the real queue, and the metrics must find each of them; the
statistics match textbook examples and direct formulas; bad input gets one sentence."""

from __future__ import annotations

import random
from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from labeling import projects, queue
from labeling.accounts import users
from labeling.errors import InvalidInput, NotFound
from labeling.models import Preference, Task
from labeling.quality import agreement as ag
from labeling.quality import bias, competence, item_posteriors, quality_report
from labeling.tasks import add_compare_task, add_prompt, add_rank_task, add_response

# --------------------------------------------------------------------------- simulation

ITEMS, GOLD = 90, 10  # every labeler labels all 100: the always-left one 100 times
FLIP = {"a": "b", "b": "a"}


def careful(accuracy):
    def choose(truth, left, rng):
        return truth if rng.random() < accuracy else FLIP[truth]

    return choose, (6_000, 20_000)


LABELERS = {
    "careful-92": careful(0.92),
    "careful-85": careful(0.85),
    "careful-78": careful(0.78),
    "random": (lambda truth, left, rng: rng.choice("ab"), (800, 2_500)),
    "always-left": (lambda truth, left, rng: left, (4_000, 9_000)),
    "contrarian": (lambda truth, left, rng: FLIP[truth], (6_000, 15_000)),
}


def simulate(Session, *, items=ITEMS, gold=GOLD, name="sim", queue_path=True):  # noqa: N803
    """A pairwise project whose labelers behave as LABELERS says. queue_path: every label
    through queue.claim_next / queue.submit_preference (the side shown is the queue's own
    coin); otherwise the same labels are written as rows directly (fast, for the tests
    that are not about the queue)."""
    truth: dict[int, str] = {}
    rng = random.Random(7)
    with Session.begin() as s:
        p = projects.create_project(
            s, name=name, kind="pairwise", overlap=len(LABELERS), gold_rate=0.1 if gold else 0.0
        )
        tasks = []
        for i in range(items + gold):
            prompt = add_prompt(s, p, f"question {i}?")
            a, b = add_response(s, prompt, f"answer A {i}"), add_response(s, prompt, f"B {i}")
            answer = rng.choice("ab")
            task = add_compare_task(s, p, prompt, a, b, gold_choice=answer if i >= items else None)
            truth[task.id] = answer
            tasks.append(task)
        pid = p.id
        ids = {n: users.add_user(s, name=n, role="labeler", password=None).id for n in LABELERS}
        if not queue_path:
            for n, (choose, (fast, slow)) in LABELERS.items():
                for task in tasks:
                    swap = rng.random() < 0.5
                    s.add(Preference(
                        task_id=task.id, user_id=ids[n], choice=choose(
                            truth[task.id], "b" if swap else "a", rng),
                        left_response_id=task.response_b_id if swap else task.response_a_id,
                        time_spent_ms=rng.randint(fast, slow),
                    ))  # fmt: skip
            return pid, truth
    for n, (choose, (fast, slow)) in LABELERS.items():
        with Session.begin() as s:
            while (a := queue.claim_next(s, project_id=pid, user_id=ids[n], rng=rng)) is not None:
                task = s.get(Task, a.task_id)
                left = "b" if a.swap_sides else "a"
                queue.submit_preference(
                    s, task_id=task.id, user_id=ids[n], choice=choose(truth[task.id], left, rng),
                    strength=rng.choice((1, 2, 3)), time_spent_ms=rng.randint(fast, slow),
                )  # fmt: skip
    return pid, truth


@pytest.fixture
def simulated(Session):  # noqa: N803
    pid, truth = simulate(Session)
    with Session() as s:
        return quality_report(s, pid, bootstrap=200), pid, truth


def by_name(report):
    return {r["name"]: r for r in report["labelers"]}


def test_the_metrics_find_each_simulated_labeler(simulated):
    report, _, _ = simulated
    rows = by_name(report)
    assert set(rows) == set(LABELERS)
    assert all(r["labels"] == ITEMS + GOLD for r in rows.values())  # every item and gold

    # position bias: the always-left clicker, and nobody else
    left = rows["always-left"]
    assert left["left_win_rate"] == 1.0 and left["left_p_value"] < 1e-20
    assert left["position_bias"] and "position_bias" in left["flags"]
    assert [n for n, r in rows.items() if r["position_bias"]] == ["always-left"]
    assert all(0.3 < r["left_win_rate"] < 0.7 for n, r in rows.items() if n != "always-left")

    # speed: the random clicker is too fast to have read both answers
    assert rows["random"]["median_seconds"] < 3 and rows["random"]["too_fast_share"] > 0.5
    assert [n for n, r in rows.items() if "too_fast" in r["flags"]] == ["random"]
    assert rows["careful-92"]["too_fast_share"] == 0.0

    # Dawid–Skene: careful ones above the coins above the contrarian
    c = {n: r["competence"] for n, r in rows.items()}
    assert min(c["careful-92"], c["careful-85"], c["careful-78"]) > max(
        c["random"], c["always-left"]
    )
    assert max(c["random"], c["always-left"]) > c["contrarian"]
    assert c["careful-92"] > c["careful-78"]
    assert abs(c["careful-92"] - 0.92) < 0.08 and c["contrarian"] < 0.15
    assert abs(c["random"] - 0.5) < 0.12 and abs(c["always-left"] - 0.5) < 0.12
    assert {n for n, r in rows.items() if "low_competence" in r["flags"]} == {
        "contrarian",
        "random",
        "always-left",
    }  # coins carry no information either

    # gold: the contrarian never matches it, the best careful one nearly always
    assert rows["contrarian"]["gold_accuracy"] == 0.0 and rows["contrarian"]["gold_n"] >= 5
    assert "low_gold" in rows["contrarian"]["flags"]
    best = rows["careful-92"]
    assert best["gold_accuracy"] >= 0.7 and best["gold_ci_low"] <= best["gold_accuracy"]
    assert best["gold_ci_high"] <= 1.0

    # agreement: careful pairs agree, the contrarian disagrees with them
    agreement = report["agreement"]
    assert agreement["items"] == ITEMS + GOLD
    pairs = {(p["a"], p["b"]): p for p in agreement["cohen_kappa_pairs"]}
    assert len(pairs) == 15 and agreement["pairs_qualifying"] == 15
    kappa = {frozenset(k): v["kappa"] for k, v in pairs.items()}
    assert kappa[frozenset(("careful-92", "careful-85"))] > 0.3  # expected 0.59, SE ~0.08
    assert kappa[frozenset(("careful-92", "contrarian"))] < -0.5
    for p in pairs.values():
        assert p["ci_low"] <= p["kappa"] <= p["ci_high"]
    for key in ("raw", "fleiss_kappa", "alpha_nominal", "alpha_ordinal"):
        v = agreement[key]
        assert v["ci_low"] <= v["value"] <= v["ci_high"], key
    assert rows["careful-92"]["kappa_with_others"] > rows["contrarian"]["kappa_with_others"]

    # the project as a whole shows no left bias beyond one labeler's share
    assert report["position_bias"]["flagged_labelers"] == 1
    assert report["items"]["with_overlap"] == ITEMS + GOLD
    assert len(report["items"]["uncertain"]) == 20


def test_reward_model_agreement_flags_the_labeler_far_below_the_others(Session):  # noqa: N803
    pid, truth = simulate(Session, gold=0, items=60, name="rm", queue_path=False)

    def scorer(rows):  # a reward model that knows the truth, confident on 5 of 6 pairs
        return [(3.0 if truth[r["task_id"]] == "a" else -3.0) * (r["task_id"] % 6 != 0)
                for r in rows]  # fmt: skip

    with Session() as s:
        report = quality_report(s, pid, bootstrap=0, reward_scorer=scorer, reward_checkpoint=9)
    rows = by_name(report)
    assert report["reward_checkpoint"] == 9 and report["reward"]["scored_pairs"] == 60
    assert rows["contrarian"]["agreement_with_reward"] == 0.0
    assert rows["careful-92"]["agreement_with_reward"] > 0.8
    assert rows["careful-92"]["reward_n"] == 50  # the 10 unconfident pairs are left out
    assert {n for n, r in rows.items() if "reward_disagreement" in r["flags"]} == {"contrarian"}
    # no gold items in this project: gold fields are null, with a note
    assert all(r["gold_accuracy"] is None and r["gold_n"] is None for r in rows.values())
    assert any("no gold items" in n for n in report["notes"])


def test_clear_messages_for_bad_input(Session):  # noqa: N803
    with Session.begin() as s:
        p = projects.create_project(s, name="single", kind="pairwise", overlap=1)
        for i in range(3):
            prompt = add_prompt(s, p, f"q{i}?")
            add_compare_task(
                s, p, prompt, add_response(s, prompt, "x"), add_response(s, prompt, "y")
            )
        sft = projects.create_project(s, name="notes", kind="sft")
        pid, sft_id = p.id, sft.id
        ann = users.add_user(s, name="ann", role="labeler", password=None).id
        users.add_user(s, name="bob", role="labeler", password=None)
    with Session() as s:  # nothing labeled yet
        empty = quality_report(s, pid)
        assert empty["labelers"] == [] and empty["agreement"] is None
        assert empty["notes"] == ["project 'single' has no labels from labelers yet"]
    with Session.begin() as s:
        while (a := queue.claim_next(s, project_id=pid, user_id=ann)) is not None:
            queue.submit_preference(s, task_id=a.task_id, user_id=ann, choice="a")
    with Session() as s:
        with pytest.raises(NotFound, match="no project named 'nope'"):
            quality_report(s, "nope")
        with pytest.raises(NotFound, match="no user named 'zed'"):
            quality_report(s, pid, labeler="zed")
        with pytest.raises(NotFound, match="bob has given no labels in project 'single'"):
            quality_report(s, pid, labeler="bob")
        with pytest.raises(InvalidInput, match="'notes' is an sft project .*comparisons"):
            quality_report(s, sft_id)
        with pytest.raises(InvalidInput, match="bootstrap rounds must be 0 or more"):
            quality_report(s, pid, bootstrap=-1)
        report = quality_report(s, pid, labeler="ann")
    # overlap 1: nothing to agree on; no gold: gold fields null
    assert report["agreement"] is None
    assert any("no item of project 'single' has two labels" in n for n in report["notes"])
    (row,) = report["labelers"]
    assert row["name"] == "ann" and row["labels"] == 3 and row["gold_accuracy"] is None
    assert row["kappa_with_others"] is None


def test_rankings_kendall_tau_between_labelers_and_to_the_consensus(Session):  # noqa: N803
    with Session.begin() as s:
        p = projects.create_project(s, name="ranks", kind="ranking", overlap=4, rank_k=3)
        for i in range(12):
            prompt = add_prompt(s, p, f"q{i}?")
            add_rank_task(s, p, prompt, [add_response(s, prompt, f"r{i}.{k}") for k in range(3)])
        pid = p.id
        ids = {n: users.add_user(s, name=n, role="labeler", password=None).id
               for n in ("one", "two", "three", "reverser")}  # fmt: skip
    for name, user_id in ids.items():
        with Session.begin() as s:
            while (a := queue.claim_next(s, project_id=pid, user_id=user_id)) is not None:
                from labeling.models import TaskCandidate

                order = [c.response_id for c in s.query(TaskCandidate)
                         .filter_by(task_id=a.task_id).order_by(TaskCandidate.position)]  # fmt: skip
                queue.submit_ranking(
                    s, task_id=a.task_id, user_id=user_id,
                    order=order[::-1] if name == "reverser" else order, time_spent_ms=5_000,
                )  # fmt: skip
    with Session() as s:
        report = quality_report(s, pid, bootstrap=100)
        with pytest.raises(InvalidInput, match="ranking project: comparing labelers with a reward"):
            quality_report(s, pid, reward_scorer=lambda rows: [])
    rows = by_name(report)
    # the others' mean rank keeps the order for the three, reverses it for the reverser
    assert rows["one"]["kendall_tau_to_consensus"] == 1.0
    assert rows["reverser"]["kendall_tau_to_consensus"] == -1.0
    pairs = {
        frozenset((q["a"], q["b"])): q["tau"] for q in report["agreement"]["kendall_tau_pairs"]
    }
    assert len(pairs) == 6 and pairs[frozenset(("one", "two"))] == 1.0
    assert pairs[frozenset(("one", "reverser"))] == -1.0
    assert report["agreement"]["kendall_tau"]["value"] == pytest.approx(0.0)  # 3 pairs +1, 3 -1
    assert report["agreement"]["kendall_tau_to_consensus"]["value"] == pytest.approx(0.5)
    assert rows["one"]["competence"] is None and rows["one"]["median_seconds"] == 5.0


def test_item_posteriors_follow_the_careful_labelers(Session):  # noqa: N803
    pid, truth = simulate(Session, gold=0, items=40, name="post", queue_path=False)
    with Session() as s:
        fit = item_posteriors(s, pid)
    guessed = np.array(["a", "b", "tie", "both_bad"])[fit.posterior.argmax(1)]
    right = np.mean([g == truth[int(t)] for g, t in zip(guessed, fit.task_ids, strict=True)])
    assert right >= 0.9 and len(fit.user_ids) == len(LABELERS)


# --------------------------------------------------------------------------- the statistics


# Fleiss (1971) via Wikipedia's worked example: 10 subjects, 14 raters, 5 categories.
FLEISS = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
          [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]  # fmt: skip
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 observers,
# 12 units, values 1..5, None missing. Published: nominal .743, ordinal .815, interval .849.
KRIPPENDORFF = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def _units(observers):
    counts = np.zeros((len(observers[0]), 5), int)
    for row in observers:
        for unit, v in enumerate(row):
            if v is not None:
                counts[unit, v - 1] += 1
    return counts


def _alpha_direct(observers, metric):
    """Krippendorff's alpha from its definition over pairable values: 1 - D_o / D_e with
    D_o the mean distance within units (pairs weighted 1 / (m_u - 1)), D_e over all pairs."""
    units = [[row[u] for row in observers if row[u] is not None] for u in range(len(observers[0]))]
    units = [u for u in units if len(u) >= 2]
    values = [v for u in units for v in u]
    n = len(values)
    freq = {c: values.count(c) for c in range(1, 6)}

    def d(c, k):
        if metric == "nominal":
            return float(c != k)
        lo, hi = min(c, k), max(c, k)
        return (sum(freq[g] for g in range(lo, hi + 1)) - (freq[c] + freq[k]) / 2) ** 2

    d_o = sum(d(x, y) / (len(u) - 1) for u in units for i, x in enumerate(u)
              for j, y in enumerate(u) if i != j) / n  # fmt: skip
    d_e = sum(d(x, y) for i, x in enumerate(values) for j, y in enumerate(values) if i != j)
    return 1 - d_o / (d_e / (n * (n - 1)))


def test_kappa_and_alpha_match_the_textbook_examples():
    assert ag.fleiss_kappa(np.array(FLEISS)) == pytest.approx(0.20993, abs=5e-5)
    counts = _units(KRIPPENDORFF)
    assert ag.krippendorff_alpha(counts, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert ag.krippendorff_alpha(counts, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert ag.krippendorff_alpha(counts, "interval") == pytest.approx(0.849, abs=5e-4)
    for metric in ("nominal", "ordinal"):
        direct = _alpha_direct(KRIPPENDORFF, metric)
        assert ag.krippendorff_alpha(counts, metric) == pytest.approx(direct, rel=1e-12)
    # Cohen (Wikipedia's example): 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> 0.4
    assert ag.cohen_kappa(np.array([[20, 5], [10, 15]])) == pytest.approx(0.4)
    # Fleiss' kappa on two raters per item is Scott's pi: check against its formula
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    y[:120] = x[:120]
    table = np.zeros((3, 3))
    np.add.at(table, (x, y), 1)
    p_o = np.trace(table) / 200
    p_e = np.square((table.sum(0) + table.sum(1)) / 400).sum()
    two = ag.count_matrix(np.r_[np.arange(200), np.arange(200)], np.r_[x, y], 200, 3)
    assert ag.fleiss_kappa(two) == pytest.approx((p_o - p_e) / (1 - p_e))


def test_cohen_kappa_per_pair_matches_sklearn_style_direct_counts():
    rng = np.random.default_rng(2)
    item = np.repeat(np.arange(300), 3)
    labeler = np.concatenate([rng.choice(5, 3, replace=False) for _ in range(300)])
    value = rng.integers(0, 4, len(item))
    tables = ag.pair_tables(item, labeler, value, 5, 4)
    pairs = list(zip(tables.first.tolist(), tables.second.tolist(), strict=True))
    got = dict(zip(pairs, ag.cohen_kappa(tables.tables), strict=True))
    assert len(got) == 10
    for a, b in combinations(range(5), 2):
        va, vb = {}, {}
        for i, who, v in zip(item, labeler, value, strict=True):
            (va if who == a else vb if who == b else {})[i] = v
        shared = sorted(set(va) & set(vb))
        xa, xb = np.array([va[i] for i in shared]), np.array([vb[i] for i in shared])
        p_o = np.mean(xa == xb)
        p_e = sum(np.mean(xa == c) * np.mean(xb == c) for c in range(4))
        assert got[(a, b)] == pytest.approx((p_o - p_e) / (1 - p_e))
    # each labeler's pooled table is the sum of their pairs' tables
    pooled = np.zeros((5, 4, 4))
    np.add.at(pooled, tables.first, tables.tables)
    np.add.at(pooled, tables.second, tables.tables.transpose(0, 2, 1))
    assert np.array_equal(pooled, tables.pooled)
    # one item labeled by 60 (a gold item): left out of the pairs, kept in the pooled tables
    item60 = np.r_[item, np.full(60, 300)]
    labeler60 = np.r_[labeler, np.arange(5, 65)]
    value60 = np.r_[value, np.zeros(60, int)]
    wide = ag.pair_tables(item60, labeler60, value60, 65, 4)
    assert wide.shared.sum() == tables.shared.sum()
    assert wide.pooled[5].sum() == 59 and wide.pooled[:5].sum() == tables.pooled.sum()


def test_pattern_bootstrap_agrees_with_resampling_items():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 400)
    counts = np.zeros((400, 4), int)
    for i in range(400):
        for _ in range(3):
            counts[i, truth[i] if rng.random() < 0.75 else rng.integers(0, 4)] += 1
    fast = ag.agreement(counts, metric="nominal", bootstrap=2000, rng=np.random.default_rng(4))
    naive = []
    for _ in range(400):  # the slow way: resample the items themselves
        naive.append(ag.krippendorff_alpha(counts[rng.integers(0, 400, 400)], "nominal"))
    lo, hi = np.quantile(naive, [0.025, 0.975])
    assert fast["alpha"]["ci_low"] == pytest.approx(lo, abs=0.02)
    assert fast["alpha"]["ci_high"] == pytest.approx(hi, abs=0.02)
    assert fast["alpha"]["value"] == pytest.approx(ag.krippendorff_alpha(counts, "nominal"))


def test_binomial_benjamini_hochberg_and_wilson_match_scipy():
    k, n = np.array([0, 3, 50, 61, 100, 7]), np.array([10, 10, 100, 100, 100, 9])
    ours = bias.binomial_two_sided(k, n)
    for i in range(len(k)):
        assert ours[i] == pytest.approx(stats.binomtest(int(k[i]), int(n[i])).pvalue, rel=1e-9)
    p = np.array([0.001, 0.04, 0.03, 0.2, 0.0005, np.nan])
    q = bias.benjamini_hochberg(p)
    assert np.isnan(q[-1])
    assert q[:-1] == pytest.approx(stats.false_discovery_control(p[:-1]))
    low, high = bias.wilson(np.array([8, 0]), np.array([10, 5]))
    assert (low[0], high[0]) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert (low[1], high[1]) == pytest.approx((0.0, 0.4345), abs=1e-4)
    med = bias.group_medians(np.array([0, 0, 0, 1, 1, 2]), np.array([3, 1, 2, 5, 7, 9]), 4)
    assert med[:3].tolist() == [2.0, 6.0, 9.0] and np.isnan(med[3])


def test_dawid_skene_recovers_known_reliabilities():
    rng = np.random.default_rng(5)
    items, labelers, overlap = 3000, 25, 5
    accuracy = np.linspace(0.35, 0.95, labelers)
    truth = rng.choice(4, items, p=[0.42, 0.42, 0.1, 0.06])
    item = np.repeat(np.arange(items), overlap)
    labeler = np.concatenate([rng.choice(labelers, overlap, replace=False) for _ in range(items)])
    right = rng.random(len(item)) < accuracy[labeler]
    value = np.where(right, truth[item], (truth[item] + rng.integers(1, 4, len(item))) % 4)
    fit = competence.fit(item, labeler, value, items, labelers, 4)
    assert np.abs(fit.reliability - accuracy).max() < 0.06
    assert stats.spearmanr(fit.reliability, accuracy).statistic > 0.97
    plurality = competence.majority(item, value, items, 4).argmax(1)
    assert (fit.posterior.argmax(1) == truth).mean() > (plurality == truth).mean()
    assert fit.prior == pytest.approx([0.42, 0.42, 0.1, 0.06], abs=0.03)

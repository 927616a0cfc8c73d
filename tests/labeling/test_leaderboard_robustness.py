"""How fragile a leaderboard is (labeling.ratings.robustness): flip votes (greedy against the
exhaustive search), provisional models, sampling shares, and `rlhf leaderboard --robustness`.

Battles are synthetic and known, so each flip count can be worked out by hand: between two
models only the win/loss balance matters (ties count as half to each side), so A with W wins
and L losses against B is swapped after removing W − L of A's wins.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from labeling.errors import InvalidInput
from labeling.ratings.leaderboard import fit, make_battles
from labeling.ratings.robustness import (
    _refit_setup,
    flip_votes_exact,
    flip_votes_greedy,
    robustness,
)


def duel(wins: int, losses: int, ties: int = 0, a: str = "A", b: str = "B"):
    winners = ["model_a"] * wins + ["model_b"] * losses + ["tie"] * ties
    return make_battles([a] * len(winners), [b] * len(winners), winners)


def combine(*parts):
    return make_battles(
        np.concatenate([p.model_a for p in parts]),
        np.concatenate([p.model_b for p in parts]),
        np.concatenate([p.winner for p in parts]),
    )


def rows(report):
    return {r.model: r for r in report.rows}


def random_small(rng, ties="half"):
    m, n = int(rng.integers(3, 6)), int(rng.integers(6, 13))
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    names = np.array([f"m{i}" for i in range(m)], dtype=object)
    outcome = rng.choice(3, n, p=[0.45, 0.35, 0.2])
    winner = np.array(["model_a", "model_b", "tie"], dtype=object)[outcome]
    return fit(make_battles(names[a], names[b], winner), ci="sandwich", ties=ties)


def test_two_models_one_vote_apart_need_one_removal():
    for exact in (True, False):  # the exhaustive search is too big here, so both are greedy
        report = robustness(fit(duel(200, 199), ci="sandwich"), exact=exact)
        top = rows(report)["A"]
        assert (top.flip_votes, top.flip_with, top.method) == (1, "B", "greedy")
        assert rows(report)["B"].flip_votes is None  # the last has nobody below it
    # 1 of 399 votes is under 1%: the warning names the rank and the count.
    assert any(w.startswith("rank 1 (A) rests on 1 vote:") for w in report.warnings)


def test_well_separated_models_need_many_removals():
    report = robustness(fit(duel(300, 100, ties=50), ci="sandwich"))
    top = rows(report)["A"]
    # 300-100: removing 200 of A's wins leaves 100-100; ties never help the swap.
    assert top.flip_votes == 200 and top.method == "greedy"
    assert not any("rests on" in w for w in report.warnings)
    close = robustness(fit(duel(210, 190, ties=50), ci="sandwich"))
    assert rows(close)["A"].flip_votes == 20 < top.flip_votes


def test_close_pair_is_fragile_and_far_pair_is_not_among_several_models():
    rng = np.random.default_rng(3)
    strength = {"top": 2.0, "second": 0.05, "third": 0.0, "last": -2.0}
    names = list(strength)
    a = rng.integers(0, 4, 8_000)
    b = (a + rng.integers(1, 4, 8_000)) % 4
    d = np.array([strength[names[i]] - strength[names[j]] for i, j in zip(a, b, strict=True)])
    winner = np.where(rng.random(8_000) < 1 / (1 + np.exp(-d)), "model_a", "model_b")
    named = np.array(names, dtype=object)
    lb = fit(make_battles(named[a], named[b], winner.astype(object)), ci="sandwich")
    report = robustness(lb)
    by = rows(report)
    assert [r.model for r in report.rows][0] == "top"
    close = by["second"] if by["second"].rating > by["third"].rating else by["third"]
    assert close.flip_votes < 150  # 0.05 nats apart (9 Elo): under 2% of the votes
    assert by["top"].flip_votes > 1_000  # two points of log-odds: a thousand votes and more
    # Each answer is verified: removing that many votes (greedy) really swaps the pair...
    refit = _refit_setup(lb)
    index = {m: i for i, m in enumerate(lb.models)}
    pairs = [(index[r.model], index[r.flip_with]) for r in report.rows if r.flip_with]
    assert flip_votes_greedy(refit, pairs) == [r.flip_votes for r in report.rows if r.flip_with]


def test_greedy_is_an_upper_bound_and_mostly_exact_on_small_inputs():
    rng = np.random.default_rng(0)
    same = total = 0
    for trial in range(60):
        lb = random_small(rng, ties="davidson" if trial % 3 == 0 else "half")
        if len(lb.models) < 2:
            continue
        refit = _refit_setup(lb)
        pairs = [(i, i + 1) for i in range(len(lb.models) - 1)]
        exact = flip_votes_exact(refit, pairs)
        assert exact is not None  # at most 12 votes: at most 4096 removal vectors
        greedy = flip_votes_greedy(refit, pairs)
        for g, e in zip(greedy, exact, strict=True):
            total += 1
            if e is None:
                assert g is None
            else:
                assert g is not None and g >= e
                same += g == e
    assert total > 100 and same / total > 0.9
    # On small data the report uses the exhaustive search.
    small = combine(duel(3, 1, a="A", b="B"), duel(2, 1, a="B", b="C"))
    report = robustness(fit(small, ci="sandwich"), provisional_votes=1)
    assert [r.method for r in report.rows] == ["exact", "exact", None]


def test_exact_by_hand_and_with_davidson_ties():
    # 3-1 with a tie: remove two of A's wins (1-1 and the tie): 2 votes; the tie cannot help.
    for ties in ("half", "davidson"):
        report = robustness(fit(duel(3, 1, ties=1), ci="sandwich", ties=ties), provisional_votes=1)
        assert (rows(report)["A"].flip_votes, rows(report)["A"].method) == (2, "exact")
    # A chain A > B > C: A's place over B rests on its direct wins, B's on its wins over C.
    chain = combine(duel(3, 1, a="A", b="B"), duel(4, 1, a="B", b="C"))
    report = robustness(fit(chain, ci="sandwich"), provisional_votes=1)
    refit = _refit_setup(fit(chain, ci="sandwich"))
    assert flip_votes_greedy(refit, [(0, 1), (1, 2)]) == flip_votes_exact(refit, [(0, 1), (1, 2)])
    assert [r.flip_votes for r in report.rows] == flip_votes_exact(refit, [(0, 1), (1, 2)]) + [None]


def test_provisional_below_the_vote_threshold_is_listed_apart():
    battles = combine(
        duel(60, 20, a="A", b="B"), duel(60, 15, a="B", b="C"), duel(3, 2, a="new", b="A")
    )
    lb = fit(battles, ci="sandwich")
    report = robustness(lb, provisional_votes=30)
    order = [r.model for r in report.rows]
    by = rows(report)
    assert by["new"].provisional and by["new"].rank is None and by["new"].flip_votes is None
    assert by["new"].provisional_reason == "5 votes, fewer than 30"
    assert order[-1] == "new"  # after the ranked models whatever its rating
    assert [by[m].rank for m in ("A", "B", "C")] == [1, 2, 3]
    assert not any(by[m].provisional for m in ("A", "B", "C"))
    # The flip pairs skip the provisional model, but its votes are still in the refit.
    assert by["A"].flip_with == "B" and by["B"].flip_with == "C" and by["C"].flip_votes is None
    assert any("1 provisional model" in w and "new" in w for w in report.warnings)
    # Below the threshold nothing is provisional on vote count.
    assert not rows(robustness(lb, provisional_votes=1))["new"].provisional
    with pytest.raises(InvalidInput, match="at least 1"):
        robustness(lb, provisional_votes=0)


def test_a_wide_interval_alone_does_not_make_a_model_provisional():
    """Four models of about equal strength: every interval covers the others. None may be set
    apart for it (that left the weakest as the only ranked model)."""
    even = combine(*(duel(40, 38, a=a, b=b) for a, b in ("AB", "BC", "CD", "DA", "AC", "BD")))
    report = robustness(fit(even, ci="sandwich"), provisional_votes=10)
    assert not any(r.provisional for r in report.rows)
    assert sorted(r.rank for r in report.rows) == [1, 1, 1, 1]  # no model significantly better


def test_sampling_shares_sum_to_one_and_uneven_sampling_is_said():
    even = combine(
        duel(10, 10, a="A", b="B"), duel(10, 10, a="B", b="C"), duel(10, 10, a="C", b="A")
    )
    report = robustness(fit(even, ci="sandwich"))
    assert sum(r.battle_share for r in report.rows) == pytest.approx(1.0)
    assert {r.model: r.battle_share for r in report.rows} == pytest.approx(
        {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}
    )
    assert report.sampling_ratio == pytest.approx(1.0)
    assert not any("uneven" in w for w in report.warnings)
    # 'A' meets everyone 40 times, B and C meet only A; 'rare' is unranked (min_votes) yet
    # counted: shares are over every battle.
    skewed = combine(
        duel(20, 20, a="A", b="B"), duel(20, 20, a="A", b="C"), duel(1, 0, a="rare", b="A")
    )
    report = robustness(fit(skewed, ci="sandwich", min_votes=2))
    shares = {r.model: r.battle_share for r in report.rows}
    assert sum(shares.values()) == pytest.approx(1.0) and set(shares) == {"A", "B", "C", "rare"}
    assert shares["A"] == pytest.approx(81 / 162)
    assert report.sampling_ratio == pytest.approx(81)
    assert any(w.startswith("sampling is uneven: A appears in 50.0%") for w in report.warnings)
    assert rows(report)["rare"].votes == 1 and not rows(report)["rare"].ranked


def test_style_controlled_boards_say_flip_votes_are_not_computed():
    style = [[100, 0, 0, 0]] * 30
    battles = make_battles(
        ["A"] * 30, ["B"] * 30, ["model_a"] * 20 + ["model_b"] * 10, style_a=style, style_b=style
    )
    report = robustness(fit(battles, ci="sandwich", style=True), provisional_votes=1)
    assert all(r.flip_votes is None for r in report.rows)
    assert any("style-controlled" in w for w in report.warnings)


def test_empty_and_single_model_boards():
    assert robustness(fit(make_battles([], [], []))).rows == []
    report = robustness(fit(duel(3, 1), ci="sandwich"))  # both provisional: nothing to flip
    assert all(r.provisional and r.flip_votes is None for r in report.rows)
    json.dumps(report.to_json(), allow_nan=False)


ROBUST_KEYS = {
    "model", "rating", "ci_low", "ci_high", "rank", "votes", "flip_votes", "flip_with",
    "flip_method", "provisional", "provisional_reason", "battle_share",
}  # fmt: skip


def test_cli_robustness_json_and_text(cli, admin, tmp_path):
    path = tmp_path / "votes.csv"
    lines = ["x,y,model_a"] * 41 + ["x,y,model_b"] * 40 + ["y,z,model_a"] * 60
    lines += ["y,z,model_b"] * 20 + ["w,x,tie"] * 3
    path.write_text("model_a,model_b,winner\n" + "\n".join(lines) + "\n")
    plain = cli("leaderboard", "--battles", str(path), "--json", "--ci", "sandwich")
    assert plain.code == 0, plain.err
    assert [set(r) for r in plain.json()] == [
        {"model", "rating", "ci_low", "ci_high", "rank", "votes"}
    ] * 4  # the contract without --robustness
    r = cli("leaderboard", "--battles", str(path), "--json", "--ci", "sandwich", "--robustness")
    assert r.code == 0, r.err
    out = r.json()
    assert set(out) == {"models", "warnings", "votes", "sampling_ratio"}
    assert all(set(row) == ROBUST_KEYS for row in out["models"])
    by = {row["model"]: row for row in out["models"]}
    assert [row["model"] for row in out["models"]] == ["x", "y", "z", "w"]
    assert by["x"]["flip_votes"] == 1 and by["x"]["flip_with"] == "y"  # 41-40
    assert by["y"]["flip_votes"] > 20 and by["z"]["flip_votes"] is None
    assert by["w"]["provisional"] and by["w"]["rank"] is None
    assert by["w"]["provisional_reason"] == "3 votes, fewer than 30"
    assert sum(row["battle_share"] for row in out["models"]) == pytest.approx(1.0)
    assert any(w.startswith("rank 1 (x) rests on 1 vote") for w in out["warnings"])
    # --provisional-votes moves the threshold; the text output has the column and warnings.
    low = cli("leaderboard", "--battles", str(path), "--json", "--ci", "sandwich",
              "--robustness", "--provisional-votes", "1")  # fmt: skip
    reasons = {row["model"]: row["provisional_reason"] for row in low.json()["models"]}
    assert set(reasons.values()) == {None}  # w's 3 votes are enough now
    text = cli("leaderboard", "--battles", str(path), "--ci", "sandwich", "--robustness")
    assert text.code == 0 and "FLIP VOTES" in text.out.splitlines()[0]
    assert "provisional: 3 votes, fewer than 30" in text.out
    assert "warning: rank 1 (x) rests on 1 vote" in text.err
    by_category = cli("leaderboard", "--battles", str(path), "--json", "--ci", "sandwich",
                      "--robustness", "--by-category")  # fmt: skip
    assert set(by_category.json()["all"]["models"][0]) == ROBUST_KEYS
    refused = cli("leaderboard", "--battles", str(path), "--robustness",
                  "--provisional-votes", "0")  # fmt: skip
    assert refused.code != 0 and refused.out == "" and "--provisional-votes" in refused.err

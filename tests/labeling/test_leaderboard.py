"""Bradley–Terry leaderboard maths (labeling.ratings.leaderboard) on synthetic votes: no database.

Battles come from known strengths, so the fit can be checked against the truth, against
scipy's L-BFGS-B on the same objective, and against itself (warm vs cold, anchored vs centred).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.stats import spearmanr

from labeling.errors import InvalidInput, NotFound
from labeling.ratings.leaderboard import (
    DEFAULT_ANCHOR_RATING,
    ELO_SCALE,
    RIDGE,
    STYLE_FEATURES,
    WINNERS,
    BattleCounts,
    Battles,
    expected_information,
    fit,
    fit_by_category,
    load_battles,
    make_battles,
    read_battles,
    style_features,
)


def simulate(m, n, seed, *, nu=None, length_effect=0.0, spread=0.8):
    """n battles among m models with strengths ~ N(0, spread) (natural-log units).

    Bradley–Terry outcomes, or Davidson ties when nu is given; with length_effect, the winner
    also depends on (length_a − length_b)/(length_a + length_b) and models differ in verbosity.
    Returns (battles, strengths, names).
    """
    rng = np.random.default_rng(seed)
    strength = rng.normal(0, spread, m)
    names = np.array([f"m{i:02d}" for i in range(m)], dtype=object)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    verbosity = rng.normal(5.0, 0.6, m)
    style_a = np.column_stack([rng.lognormal(verbosity[a], 0.3), rng.poisson(1.0, (n, 3))])
    style_b = np.column_stack([rng.lognormal(verbosity[b], 0.3), rng.poisson(1.0, (n, 3))])
    f_length = (style_a[:, 0] - style_b[:, 0]) / (style_a[:, 0] + style_b[:, 0])
    d = strength[a] - strength[b] + length_effect * f_length
    if nu is None:
        code = np.where(rng.random(n) < 1 / (1 + np.exp(-d)), 0, 1)
    else:
        z = np.exp(d / 2) + np.exp(-d / 2) + nu
        u = rng.random(n) * z
        code = np.where(u < np.exp(d / 2), 0, np.where(u < np.exp(d / 2) + nu, 2, 1))
    winner = np.array(WINNERS, dtype=object)[code]
    battles = make_battles(names[a], names[b], winner, style_a=style_a, style_b=style_b)
    return battles, strength, list(names)


def true_ratings(strength):
    return ELO_SCALE * (strength - strength.mean()) + DEFAULT_ANCHOR_RATING


def by_model(lb):
    return {r.model: r for r in lb.rows}


@pytest.fixture(scope="module")
def bt_data():
    """20 models, 20k battles, no ties: Bradley–Terry is the true model."""
    return simulate(20, 20_000, seed=1)


def assert_json_clean(lb):
    rows = lb.to_json()
    json.dumps(rows, allow_nan=False)
    json.dumps(lb.win_rate_table(), allow_nan=False)
    for row in rows:
        assert list(row) == ["model", "rating", "ci_low", "ci_high", "rank", "votes"]
    assert lb.messages


@pytest.mark.parametrize("ci", ["bootstrap", "sandwich"])
def test_recovers_true_strengths_with_covering_intervals(bt_data, ci):
    battles, strength, names = bt_data
    lb = fit(battles, ci=ci, bootstrap=100)
    rows = by_model(lb)
    fitted = np.array([rows[name].rating for name in names])
    truth = true_ratings(strength)
    assert spearmanr(fitted, truth).statistic >= 0.95
    covered = [rows[n].ci_low <= t <= rows[n].ci_high for n, t in zip(names, truth, strict=True)]
    assert np.mean(covered) >= 0.8
    assert fitted.mean() == pytest.approx(DEFAULT_ANCHOR_RATING, abs=1e-9)
    # Rows by rating, ranks by Chatbot Arena's rule.
    ratings = [r.rating for r in lb.rows]
    assert ratings == sorted(ratings, reverse=True)
    for r in lb.rows:
        assert r.ranked and r.ci_low <= r.rating <= r.ci_high
        assert r.rank == 1 + sum(o.ci_low > r.ci_high for o in lb.rows)
    assert lb.models == [r.model for r in lb.rows]
    assert lb.covariance.shape == (20, 20) and np.isfinite(lb.covariance).all()
    assert lb.settings["ci"] == ci
    assert_json_clean(lb)


def test_sandwich_and_bootstrap_intervals_agree(bt_data):
    battles, _, _ = bt_data
    boot = by_model(fit(battles, bootstrap=200))
    sandwich = by_model(fit(battles, ci="sandwich"))
    ratio = [
        (sandwich[n].ci_high - sandwich[n].ci_low) / (boot[n].ci_high - boot[n].ci_low)
        for n in boot
    ]
    assert 0.85 < np.median(ratio) < 1.15
    assert max(abs(sandwich[n].rating - boot[n].rating) for n in boot) < 1e-9


def test_matches_scipy_lbfgs_on_the_same_objective():
    battles, _, names = simulate(12, 5_000, seed=2, nu=0.6)  # with ties, counted as half
    index = {name: i for i, name in enumerate(names)}
    a = np.array([index[x] for x in battles.model_a])
    b = np.array([index[x] for x in battles.model_b])
    y = np.select([battles.winner == "model_a", battles.winner == "model_b"], [1.0, 0.0], 0.5)

    def objective(theta):
        d = theta[a] - theta[b]
        loss = (y * np.logaddexp(0, -d) + (1 - y) * np.logaddexp(0, d)).sum()
        g = 1 / (1 + np.exp(-d)) - y
        grad = np.bincount(a, g, len(names)) - np.bincount(b, g, len(names)) + RIDGE * theta
        return loss + 0.5 * RIDGE * theta @ theta, grad

    result = minimize(
        objective,
        np.zeros(len(names)),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-10, "ftol": 0, "maxiter": 10_000},
    )
    reference = ELO_SCALE * (result.x - result.x.mean()) + DEFAULT_ANCHOR_RATING
    rows = by_model(fit(battles, ci="sandwich"))
    ours = np.array([rows[name].rating for name in names])
    assert np.abs(ours - reference).max() < 0.01


def test_ties_count_as_half_a_win_either_kind():
    winners = ["model_a"] * 3 + ["model_b", "tie", "tie (bothbad)"]
    lb = fit(make_battles(["A"] * 6, ["B"] * 6, winners), ci="sandwich")
    rows = by_model(lb)
    # A scored 4 of 6: the odds are 2:1, ELO_SCALE·ln 2 ≈ 120.4 points (the prior: ~0.1 point).
    assert rows["A"].rating - rows["B"].rating == pytest.approx(ELO_SCALE * np.log(2), abs=0.5)
    assert (rows["A"].wins, rows["A"].losses, rows["A"].ties, rows["A"].votes) == (3, 1, 2, 6)
    same = fit(make_battles(["A"] * 6, ["B"] * 6, winners[:-1] + ["tie"]), ci="sandwich")
    assert by_model(same)["A"].rating == pytest.approx(rows["A"].rating, abs=1e-9)
    assert "ties count as half" in lb.messages[0]
    assert lb.win_rate_table()[0] == {"model": "A", "A": None, "B": pytest.approx(4 / 6)}


def test_davidson_recovers_nu():
    battles, strength, names = simulate(15, 20_000, seed=3, nu=0.8)
    lb = fit(battles, ties="davidson", ci="sandwich")
    nu = lb.settings["davidson_nu"]
    assert nu == pytest.approx(0.8, abs=0.08)
    low, high = lb.settings["davidson_nu_ci"]
    assert low < nu < high
    rows = by_model(lb)
    fitted = np.array([rows[name].rating for name in names])
    assert np.abs(fitted - true_ratings(strength)).max() < 60
    assert lb.settings["ties"] == "davidson" and any("ν" in m for m in lb.messages)
    boot = fit(battles, ties="davidson", bootstrap=30)
    assert boot.settings["davidson_nu"] == pytest.approx(nu, abs=1e-9)
    assert_json_clean(boot)


def test_anchor_pins_its_rating(bt_data):
    battles, _, _ = bt_data
    centred = by_model(fit(battles, ci="sandwich"))
    for ci in ("sandwich", "bootstrap"):
        lb = fit(battles, ci=ci, bootstrap=20, anchor="m03", anchor_rating=1200.0)
        rows = by_model(lb)
        assert rows["m03"].rating == rows["m03"].ci_low == rows["m03"].ci_high == 1200.0
        for name, row in rows.items():
            expected = centred[name].rating - centred["m03"].rating + 1200.0
            assert row.rating == pytest.approx(expected, abs=1e-9)
        assert "m03 pinned at 1200" in lb.messages[0]


def test_anchor_must_be_ranked():
    battles = make_battles(["A", "A", "C", "X"], ["B", "B", "B", "Y"], ["model_a"] * 4)
    with pytest.raises(InvalidInput, match="anchor 'nobody' is not among the ranked models"):
        fit(battles, anchor="nobody")
    with pytest.raises(InvalidInput, match="anchor 'C'.*min_votes=2"):
        fit(battles, anchor="C", min_votes=2)
    # A smaller, disconnected group is ranked when it holds the anchor.
    lb = fit(battles, anchor="X", ci="sandwich")
    assert [r.model for r in lb.rows if r.ranked] == ["X", "Y"]


def test_no_votes():
    lb = fit(make_battles([], [], []))
    assert lb.rows == [] and lb.n_battles == 0
    assert "no votes" in lb.messages[0]
    assert lb.to_json() == []
    assert expected_information(lb).shape == (0, 0)


def test_single_model_with_enough_votes():
    battles = make_battles(["A"] * 10, ["B"] * 5 + ["C"] * 5, ["model_a", "tie"] * 5)
    lb = fit(battles, min_votes=6)
    assert not any(r.ranked for r in lb.rows)
    rows = by_model(lb)
    assert rows["A"].note == "no battles against other models with enough votes"
    assert rows["B"].note == "5 votes, fewer than min_votes=6"
    assert "only A has enough votes" in lb.messages[0]
    assert_json_clean(lb)


def test_disconnected_graph_ranks_the_group_with_most_battles():
    battles = make_battles(
        ["A", "B", "C", "A", "D", "E"],
        ["B", "C", "A", "C", "E", "D"],
        ["model_a", "model_b", "tie", "model_a", "model_a", "model_a"],
    )
    lb = fit(battles, bootstrap=20)
    rows = by_model(lb)
    assert {r.model for r in lb.rows if r.ranked} == {"A", "B", "C"}
    assert rows["D"].rating is None and "not connected" in rows["D"].note
    message = next(m for m in lb.messages if "disconnected" in m)
    assert "3 models with 4 battles" in message and "2 models with 2 battles (D, E)" in message
    assert [r.ranked for r in lb.rows] == [True, True, True, False, False]
    assert_json_clean(lb)


def _two_groups():
    """The issue's case: 7 models with 83 battles, 6 models with 1,977; they never met."""
    few, _, _ = simulate(7, 83, seed=11)
    many, _, _ = simulate(6, 1977, seed=12)
    rename = np.vectorize(lambda name: "big-" + name, otypes=[object])
    return make_battles(
        np.concatenate([few.model_a, rename(many.model_a)]),
        np.concatenate([few.model_b, rename(many.model_b)]),
        np.concatenate([few.winner, many.winner]),
    )


def test_disconnected_graph_never_silently_ranks_the_smaller_group():
    battles = _two_groups()
    lb = fit(battles, ci="sandwich")
    ranked = [r for r in lb.rows if r.ranked]
    assert {r.model for r in ranked} == {f"big-m{i:02d}" for i in range(6)}
    assert sum(r.votes for r in ranked) == 2 * 1977
    # Centred within the ranked group.
    assert np.mean([r.rating for r in ranked]) == pytest.approx(DEFAULT_ANCHOR_RATING)
    message = next(m for m in lb.messages if "disconnected" in m)
    assert "the group with the most battles, 6 models with 1,977 battles" in message
    assert "7 models with 83 battles (m00, m01, m02 and 4 more)" in message
    assert "--anchor" in message
    small = by_model(lb)["m00"]
    assert small.rating is None and "7 models, 83 battles" in small.note
    assert_json_clean(lb)
    # The anchor's group is the reference, even the smaller one.
    anchored = fit(battles, ci="sandwich", anchor="m03", anchor_rating=1500.0)
    ranked = {r.model: r for r in anchored.rows if r.ranked}
    assert set(ranked) == {f"m{i:02d}" for i in range(7)}
    assert ranked["m03"].rating == 1500.0
    assert any("the anchor m03's group, 7 models with 83 battles" in m for m in anchored.messages)
    # Without the other group the ranked group's ratings are the same: it is fitted alone.
    alone = fit(battles.select(np.char.startswith(battles.model_a.astype(str), "big-")),
                ci="sandwich")  # fmt: skip
    for row in lb.rows:
        if row.ranked:
            assert row.rating == pytest.approx(by_model(alone)[row.model].rating, abs=1e-6)


def test_a_model_that_always_wins_stays_finite():
    battles, _, names = simulate(6, 600, seed=4)
    extra = make_battles(["top"] * 30, [names[i % 6] for i in range(30)], ["model_a"] * 30)
    both = BattleCounts.from_battles(battles).add(extra)
    for ci in ("bootstrap", "sandwich"):
        lb = fit(both, ci=ci, bootstrap=30)
        top = lb.rows[0]
        assert top.model == "top" and top.rank == 1 and np.isfinite(top.rating)
        assert 200 < top.rating - lb.rows[1].rating < 3000
        assert any("top (30-0-0 W-L-T)" in m and "prior" in m for m in lb.messages)
        assert_json_clean(lb)
        assert np.isfinite(expected_information(lb)).all()


def test_min_votes_leaves_rare_models_out():
    battles, _, names = simulate(5, 500, seed=5)
    rare = make_battles(["rare", names[0]], [names[1], "rare"], ["model_a", "tie"])
    lb = fit(BattleCounts.from_battles(battles).add(rare), min_votes=5, ci="sandwich")
    rows = by_model(lb)
    assert not rows["rare"].ranked and rows["rare"].rank is None
    assert rows["rare"].note == "2 votes, fewer than min_votes=5"
    assert rows["rare"].votes == 2 and rows["rare"].ties == 1
    assert any("fewer than 5 votes" in m and "rare" in m for m in lb.messages)
    without = by_model(fit(battles, ci="sandwich"))
    for name in names:
        assert rows[name].rating == pytest.approx(without[name].rating, abs=1e-9)
    assert lb.rows[-1].model == "rare"


def test_bad_battles_are_rejected_with_the_row():
    with pytest.raises(InvalidInput, match=r"row 2: winner 'draw' is not one of"):
        make_battles(["a", "a"], ["b", "b"], ["model_a", "draw"])
    with pytest.raises(InvalidInput, match=r"row 3 \(and 1 more rows\): model_a and model_b"):
        make_battles(["a", "b", "c", "d"], ["b", "a", "c", "d"], ["tie"] * 4)
    with pytest.raises(InvalidInput, match="row 2: model_b is missing or an empty model name"):
        make_battles(["a", "a"], ["b", "  "], ["tie"] * 2)
    with pytest.raises(InvalidInput, match="row 1: model_a is missing"):
        make_battles([None], ["b"], ["tie"])
    with pytest.raises(InvalidInput, match="equal lengths"):
        make_battles(["a"], ["b", "c"], ["tie"])
    with pytest.raises(InvalidInput, match="style_a must have one row per battle"):
        make_battles(["a"], ["b"], ["tie"], style_a=[[1, 2]], style_b=[[1, 2]])
    with pytest.raises(InvalidInput, match="both style_a and style_b"):
        make_battles(["a"], ["b"], ["tie"], style_a=[[1, 2, 3, 4]])
    battles = make_battles(["a"], ["b"], ["tie"])
    with pytest.raises(InvalidInput, match="style control needs style features"):
        fit(battles, style=True)
    with pytest.raises(InvalidInput, match="ci must be"):
        fit(battles, ci="normal")
    with pytest.raises(InvalidInput, match="ties must be"):
        fit(battles, ties="ignore")
    with pytest.raises(InvalidInput, match="at least 2 rounds"):
        fit(battles, bootstrap=1)


ARENA_ROWS = [
    {
        "model_a": "gpt-x",
        "model_b": "llama-y",
        "winner": "model_a",
        "category": "code",
        "tstamp": 1_700_000_000.5,
        "conv_metadata": {
            "sum_assistant_a_tokens": 300,
            "sum_assistant_b_tokens": 100,
            "header_count_a": {"h1": 1, "h2": 2, "h3": 0, "h4": 0, "h5": 0, "h6": 0},
            "header_count_b": {"h1": 0, "h2": 0, "h3": 0, "h4": 0, "h5": 0, "h6": 0},
            "list_count_a": {"ordered": 3, "unordered": 4},
            "list_count_b": {"ordered": 0, "unordered": 1},
            "bold_count_a": {"**": 5, "__": 0},
            "bold_count_b": {"**": 0, "__": 1},
        },
    },
    {
        "model_a": "llama-y",
        "model_b": "claude-z",
        "winner": "tie (bothbad)",
        "category": None,
        "tstamp": 1_700_000_100.0,
        "conv_metadata": {
            "sum_assistant_a_tokens": 50,
            "sum_assistant_b_tokens": 70,
            "header_count_a": {"h1": 0, "h2": 0, "h3": 0, "h4": 0, "h5": 0, "h6": 0},
            "header_count_b": {"h1": 0, "h2": 1, "h3": 0, "h4": 0, "h5": 0, "h6": 0},
            "list_count_a": {"ordered": 0, "unordered": 0},
            "list_count_b": {"ordered": 2, "unordered": 0},
            "bold_count_a": {"**": 0, "__": 0},
            "bold_count_b": {"**": 1, "__": 0},
        },
    },
]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".json", ".csv"])
def test_read_battles_formats(tmp_path, suffix):
    path = tmp_path / f"battles{suffix}"
    frame = pd.DataFrame(ARENA_ROWS)
    if suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in ARENA_ROWS) + "\n")
    elif suffix == ".json":
        path.write_text(json.dumps(ARENA_ROWS))
    else:
        frame.assign(conv_metadata=[json.dumps(r["conv_metadata"]) for r in ARENA_ROWS]).to_csv(
            path, index=False
        )
    battles = read_battles(path)
    assert list(battles.model_a) == ["gpt-x", "llama-y"]
    assert list(battles.winner) == ["model_a", "tie (bothbad)"]
    assert list(battles.category) == ["code", None]
    assert battles.timestamp.tolist() == [1_700_000_000.5, 1_700_000_100.0]
    assert battles.style_a.tolist() == [[300, 3, 7, 5], [50, 0, 0, 0]]
    assert battles.style_b.tolist() == [[100, 0, 1, 1], [70, 1, 2, 1]]


def test_read_battles_plain_csv_and_errors(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("model_a,model_b,winner\nA,B,tie\nB,C,model_b\n")
    battles = read_battles(plain)
    assert len(battles) == 2 and battles.style_a is None and battles.category is None
    missing = tmp_path / "missing.csv"
    missing.write_text("model_a,loser\nA,B\n")
    with pytest.raises(InvalidInput, match=r"missing\.csv: missing required column\(s\) model_b"):
        read_battles(missing)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"model_a": "A", "model_b": "B", "winner": "tie"}\n{"model_a": "A"\n')
    with pytest.raises(InvalidInput, match="bad.jsonl: line 2: not valid JSON"):
        read_battles(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("model_a,model_b,winner\nA,B,tie\nA,A,tie\n")
    with pytest.raises(InvalidInput, match="wrong.csv: line 3: model_a and model_b are both 'A'"):
        read_battles(wrong)
    sheet = tmp_path / "battles.xlsx"
    sheet.write_text("")
    with pytest.raises(InvalidInput, match="unsupported file type"):
        read_battles(sheet)
    with pytest.raises(NotFound):
        read_battles(tmp_path / "nope.parquet")


BAD_ROWS_JSONL = [
    '{"model_a": "A", "model_b": "B", "winner": "model_a"}',
    '{"model_a": "A", "model_b": "A", "winner": "tie"}',  # against itself
    '{"model_a": "B", "model_b": "C", "winner": "draw"}',  # unknown outcome
    '{"model_a": "B", "winner": "model_b"}',  # model_b missing
    '{"model_a": " ", "model_b": "C", "winner": "model_b"}',  # empty name
    '{"model_a": "C", "model_b": "A", "winner"',  # not JSON
    '{"model_a": "C", "model_b": "B"}',  # winner missing
    '["A", "B", "tie"]',  # not an object
    '{"model_a": "C", "model_b": "A", "winner": "tie (bothbad)"}',
]


def test_battles_file_with_bad_rows_is_refused_or_skipped(tmp_path):
    path = tmp_path / "votes.jsonl"
    path.write_text("\n".join(BAD_ROWS_JSONL) + "\n")
    with pytest.raises(InvalidInput) as refused:
        read_battles(path)
    message = str(refused.value)
    assert message.count("line ") == 3 and "line 2: model_a and model_b are both 'A'" in message
    assert "(and 4 more invalid rows)" in message and "--skip-invalid" in message
    loaded = load_battles(path, skip_invalid=True)
    assert len(loaded.battles) == 2 and loaded.rows == 9
    assert list(loaded.battles.winner) == ["model_a", "tie (bothbad)"]
    reasons = {row.where: row.reason for row in loaded.skipped}
    assert set(reasons) == {f"line {n}" for n in (2, 3, 4, 5, 6, 7, 8)}
    assert "both 'A'" in reasons["line 2"] and "'draw' is not one of" in reasons["line 3"]
    assert "model_b is missing" in reasons["line 4"]
    assert "model_a is missing or an empty" in reasons["line 5"]
    assert reasons["line 7"] == "winner is missing"
    assert reasons["line 8"] == "not a JSON object"
    note = loaded.skipped_message(limit=2)
    assert note.startswith("skipped 7 invalid rows of 9: line ") and "(and 5 more)" in note
    assert fit(loaded.battles, ci="sandwich").n_battles == 2


def test_battles_csv_and_parquet_bad_rows(tmp_path):
    csv_path = tmp_path / "votes.csv"
    csv_path.write_text(
        "model_a,model_b,winner\nA,B,model_a\nA,A,tie\nB,C,tie,extra\n,C,model_b\nC,A,tie\n"
    )
    with pytest.raises(InvalidInput, match=r"line 3: model_a and model_b are both 'A'.*line 4: "
                       "has 4 fields but the header has 3.*--skip-invalid"):  # fmt: skip
        read_battles(csv_path)
    loaded = load_battles(csv_path, skip_invalid=True)
    assert [str(r) for r in loaded.skipped][0] == "line 3: model_a and model_b are both 'A'; " \
        "a model cannot battle itself"  # fmt: skip
    assert len(loaded.battles) == 2 and len(loaded.skipped) == 3
    parquet = tmp_path / "votes.parquet"
    pd.DataFrame(
        {"model_a": ["A", "A", None], "model_b": ["B", "A", "B"], "winner": ["tie"] * 3}
    ).to_parquet(parquet)
    loaded = load_battles(parquet, skip_invalid=True)
    assert [r.where for r in loaded.skipped] == ["row 2", "row 3"] and len(loaded.battles) == 1
    # A missing column or an unclosed quote is never "a few bad rows": always refused.
    no_winner = tmp_path / "no_winner.csv"
    no_winner.write_text("model_a,model_b\nA,B\n")
    with pytest.raises(InvalidInput, match="missing required column"):
        load_battles(no_winner, skip_invalid=True)
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text('model_a,model_b,winner\nA,B,tie\nA,B,"tie\nB,A,tie\n')
    with pytest.raises(InvalidInput, match="not valid CSV"):
        load_battles(unclosed, skip_invalid=True)


def test_style_control_recovers_length_effect_and_strengths():
    gamma = 1.2  # nats per unit of (a − b)/(a + b) in length
    battles, strength, names = simulate(12, 15_000, seed=6, length_effect=gamma, spread=0.5)
    plain = by_model(fit(battles, ci="sandwich"))
    controlled_lb = fit(battles, style=True, ci="sandwich")
    controlled = by_model(controlled_lb)
    truth = true_ratings(strength)

    def error(rows):
        return np.sqrt(
            np.mean([(rows[n].rating - t) ** 2 for n, t in zip(names, truth, strict=True)])
        )

    coefficients = controlled_lb.style_coefficients
    assert list(coefficients) == list(STYLE_FEATURES)
    assert coefficients["length"] == pytest.approx(gamma * ELO_SCALE, rel=0.25)
    low, high = controlled_lb.settings["style_coefficients_ci"]["length"]
    assert 0 < low < coefficients["length"] < high
    assert error(controlled) < error(plain) / 2
    boot = fit(battles, style=True, bootstrap=20)
    assert boot.style_coefficients["length"] == pytest.approx(coefficients["length"], abs=1e-6)
    assert_json_clean(boot)


def test_refit_with_previous_equals_cold_fit():
    battles, _, names = simulate(10, 4_000, seed=7, nu=0.5)
    first, later = battles.select(np.arange(3_900)), battles.select(np.arange(3_900, 4_000))
    newcomer = make_battles(["new"] * 20, names * 2, ["model_a", "model_b"] * 10)
    for kwargs in ({"bootstrap": 50}, {"ci": "sandwich", "ties": "davidson"}, {"style": True}):
        if kwargs.get("style"):
            kwargs = {**kwargs, "ci": "sandwich"}
            adding = later
        else:
            adding = BattleCounts.from_battles(later).add(newcomer)
        lb = fit(first, **kwargs)
        counts = lb.counts.add(adding)
        warm = fit(counts, previous=lb, **kwargs)
        cold = fit(counts, **kwargs)
        assert warm.settings["warm_start"] and warm.models == cold.models
        for w, c in zip(warm.rows, cold.rows, strict=True):
            assert abs(w.rating - c.rating) < 1e-6
            assert abs(w.ci_low - c.ci_low) < 1e-3 and abs(w.ci_high - c.ci_high) < 1e-3
        assert warm.settings["newton_iterations"] <= cold.settings["newton_iterations"]
    # Adding to counts is the same as counting everything at once.
    everything = BattleCounts.from_battles(battles)
    added = BattleCounts.from_battles(first).add(later)
    assert added.models == everything.models
    assert (added.counts == everything.counts).all()
    assert np.allclose(added.style.diff, everything.style.diff)


def test_expected_information_for_matchmaking():
    # A-B and B-C played a lot, A-C never: one more A-C vote tells the most.
    winners = ["model_a", "model_b"] * 500
    battles = make_battles(["A"] * 1000 + ["B"] * 1000, ["B"] * 1000 + ["C"] * 1000, winners * 2)
    lb = fit(battles, ci="sandwich")
    info = expected_information(lb)
    i = {name: k for k, name in enumerate(lb.models)}
    assert info.shape == (3, 3) and np.isfinite(info).all()
    assert np.allclose(np.diag(info), 0) and np.allclose(info, info.T)
    assert info[i["A"], i["C"]] > info[i["A"], i["B"]] > 0
    assert lb.battle_counts[i["A"], i["C"]] == 0 and lb.win_rate.mask[i["A"], i["C"]]
    assert lb.predicted_win_rate[i["A"], i["C"]] == pytest.approx(0.5, abs=0.01)


def test_fit_by_category():
    battles, _, _ = simulate(6, 600, seed=8)
    category = np.array(["code", "math", None] * 200, dtype=object)
    battles = Battles(battles.model_a, battles.model_b, battles.winner, category=category)
    boards = fit_by_category(battles, ci="sandwich", anchor="m00")
    assert list(boards) == ["all", "code", "math"]
    assert boards["all"].n_battles == 600 and boards["code"].n_battles == 200
    assert by_model(boards["math"])["m00"].rating == DEFAULT_ANCHOR_RATING


def test_style_features_counts_markdown():
    text = (
        "# Title\n\nSome **bold** text and __more__.\n\n## Steps\n1. one\n2. two\n- a\n* b\n"
        "```python\n# not a header\n- not a list\n```\n"
    )
    assert style_features(text) == {
        "length": float(len(text.split())),
        "headers": 2.0,
        "lists": 4.0,
        "bold": 2.0,
    }
    battles = make_battles(
        ["a"], ["b"], ["tie"], style_a=[style_features(text)], style_b=[style_features("hi")]
    )
    assert battles.style_a.shape == (1, len(STYLE_FEATURES))


def test_cli_battles_skip_invalid_keeps_the_json_contract(cli, admin, tmp_path):
    path = tmp_path / "votes.csv"
    path.write_text(
        "model_a,model_b,winner\n" + "x,y,model_a\ny,x,tie\nx,y,model_b\n" * 3 + "x,x,tie\n"
    )
    refused = cli("leaderboard", "--battles", str(path), "--json", user=admin)
    assert refused.code == 1 and refused.out == "" and refused.err.count("\n") == 1
    assert "line 11: model_a and model_b are both 'x'" in refused.err
    assert "--skip-invalid" in refused.err
    ok = cli("leaderboard", "--battles", str(path), "--skip-invalid", "--json",
             "--ci", "sandwich", user=admin)  # fmt: skip
    assert ok.code == 0, ok.err
    rows = ok.json()
    assert [list(r) for r in rows] == [
        ["model", "rating", "ci_low", "ci_high", "rank", "votes"]
    ] * 2
    assert {r["model"]: r["votes"] for r in rows} == {"x": 9, "y": 9}
    assert "note: skipped 1 invalid row of 10: line 11: model_a and model_b" in ok.err
    text = cli("leaderboard", "--battles", str(path), "--skip-invalid", user=admin)
    assert text.code == 0 and "skipped 1 invalid row" in text.err
    wrong = cli("leaderboard", "--project", "p", "--skip-invalid", user=admin)
    assert wrong.code == 1 and "--battles file only" in wrong.err

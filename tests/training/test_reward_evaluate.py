"""Reward-model evaluation metrics (reward/evaluate.py) against hand-computed examples:
ties count half, the Wilson interval, calibration (ECE), "longer wins", accuracy by strength,
score mean / std."""

from __future__ import annotations

import math

import pytest

from reward.evaluate import expected_calibration_error, preference_metrics, wilson_interval


def pair(chosen: str, rejected: str, margin: float = 0.0) -> dict:
    return {
        "prompt": [{"role": "user", "content": "q"}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "margin": margin,
    }


def test_wilson_interval_matches_the_textbook_values():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 5) == pytest.approx((0.0, 0.4345), abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_ece_by_hand():
    assert expected_calibration_error([]) is None
    assert expected_calibration_error([0.0]) == pytest.approx(0.0)  # p = 0.5, half right
    assert expected_calibration_error([20.0]) == pytest.approx(0.0, abs=1e-6)  # sure, right
    assert expected_calibration_error([-20.0]) == pytest.approx(1.0, abs=1e-6)  # sure, wrong
    # p = 0.75 once right, once wrong: 75% confident, 50% right
    assert expected_calibration_error([math.log(3), -math.log(3)]) == pytest.approx(0.25)
    # p = 0.75 three times right, once wrong: calibrated
    d = math.log(3)
    assert expected_calibration_error([d, d, d, -d]) == pytest.approx(0.0)


def test_metrics_by_hand():
    rows = [
        pair("a much longer answer", "short", margin=1 / 3),  # d = 2: right; longer chosen
        pair("same", "same", margin=1 / 3),  # d = 0: a tie, half; equal lengths, half
        pair("no", "a longer rejected one", margin=1.0),  # d = -1: wrong; shorter chosen
        pair("yes indeed", "nope", margin=0.0),  # d = 1: right; longer chosen
    ]
    chosen, rejected = [3.0, 1.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]
    m = preference_metrics(rows, chosen, rejected)
    assert m["n"] == 4 and m["ties"] == 1
    assert m["accuracy"] == pytest.approx(2.5 / 4)
    assert (m["ci_low"], m["ci_high"]) == pytest.approx(wilson_interval(2.5, 4))
    assert (m["ci_low"], m["ci_high"]) == pytest.approx((0.2194, 0.9081), abs=1e-4)
    assert m["longer_wins_accuracy"] == pytest.approx(2.5 / 4)
    assert m["accuracy_by_strength"] == {
        "1": {"accuracy": 0.75, "n": 2},
        "3": {"accuracy": 0.0, "n": 1},
        "none": {"accuracy": 1.0, "n": 1},
    }
    assert m["mean_margin"] == pytest.approx((2 + 0 - 1 + 1) / 4)
    assert (m["mean_chosen"], m["mean_rejected"]) == pytest.approx((1.5, 1.0))
    scores = [3.0, 1.0, 0.0, 2.0, 1.0, 1.0, 1.0, 1.0]
    mean = sum(scores) / 8
    assert m["score_mean"] == pytest.approx(mean)
    assert m["score_std"] == pytest.approx(math.sqrt(sum((s - mean) ** 2 for s in scores) / 8))
    assert m["ece"] == pytest.approx(expected_calibration_error([2.0, 0.0, -1.0, 1.0]))


def test_a_length_only_model_is_visible():
    """Scores that are the answers' lengths: the model's accuracy is the baseline's."""
    rows = [pair("x" * n, "x" * k) for n, k in [(9, 3), (2, 8), (7, 1), (4, 6), (5, 5)]]
    lengths = [(float(len(r["chosen"][0]["content"])), float(len(r["rejected"][0]["content"])))
               for r in rows]  # fmt: skip
    m = preference_metrics(rows, [c for c, _ in lengths], [r for _, r in lengths])
    assert m["accuracy"] == m["longer_wins_accuracy"] == pytest.approx(2.5 / 5)


def test_no_rows():
    m = preference_metrics([], [], [])
    assert m["n"] == 0 and m["ties"] == 0
    for key in ("accuracy", "ci_low", "ci_high", "ece", "longer_wins_accuracy", "score_mean"):
        assert m[key] is None, key

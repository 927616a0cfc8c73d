"""The generated task family of bench/loop.py: deterministic, correct, and readable by the
verifier that training and evaluation use."""

import json

import pytest

from bench.loop_tasks import CONVERSIONS, make_problems, write_jsonl
from training.verifiers import extract_answer, verifiable_rewards


def test_same_seed_same_problems_and_another_seed_differs():
    assert make_problems(50, seed=3) == make_problems(50, seed=3)
    assert make_problems(50, seed=3) != make_problems(50, seed=4)


def test_problems_are_distinct_and_answers_correct():
    problems = make_problems(300, seed=0)
    assert len({p["prompt"] for p in problems}) == 300
    factors = {(unit, to): factor for unit, to, factor in CONVERSIONS}
    for p in problems:
        _, quantity, unit, _, to = p["prompt"].rstrip(".").split(" ")
        assert int(p["answer"]) == int(quantity) * factors[(unit, to)]


def test_the_verifier_accepts_every_written_solution_and_rejects_the_question():
    problems = make_problems(200, seed=1)
    solutions = [p["completion"] for p in problems]
    answers = [p["answer"] for p in problems]
    assert verifiable_rewards(solutions, answers) == [1.0] * len(problems)
    # the question alone (its last number is the quantity) is not an answer
    assert verifiable_rewards([p["prompt"] for p in problems], answers) == [0.0] * len(problems)
    assert extract_answer("44 km = 44000 m.") == "44000"


def test_jsonl_rows_are_what_rlhf_import_reads(tmp_path):
    problems = make_problems(5, seed=0)
    path = write_jsonl(tmp_path / "p.jsonl", problems)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == problems
    assert set(rows[0]) == {"prompt", "answer", "completion"}


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        make_problems(0)
    with pytest.raises(ValueError, match="distinct"):
        make_problems(10**6)

"""Verifiable rewards: the verifier (many cases, and properties), the accuracy / interval /
pass@k scoring on known completions, `rlhf eval policy --verifiable` on a tiny in-process
policy (shape and bounds), and SFT skipping the prompt-only rows of an answer snapshot."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from import_rows import write_jsonl
from sqlalchemy import select
from test_training_models import save_tiny_policy, word_tokenizer

from labeling import snapshots
from labeling.db import make_engine, make_sessionmaker
from labeling.errors import InvalidInput
from labeling.hashing import prompt_hash, split_for_hash
from labeling.models import Snapshot, TrainingRun
from training import data, verifiers
from training.evaluate_policy import pass_at_k, score_verifiable, wilson_interval
from training.verifiers import (
    answers_match,
    extract_answer,
    trl_reward_func,
    verifiable_rewards,
)

# --- the verifier ------------------------------------------------------------------------

EXTRACT = [
    ("so the answer is 42.", "42"),
    ("The answer is: 17", "17"),
    ("I get \\boxed{12} in the end", "12"),
    ("first \\boxed{1}, then \\boxed{2}", "2"),
    ("\\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),
    ("\\fbox{7}", "7"),
    ("48 + 24 = 72\n#### 72", "72"),
    ("7 then 8", "8"),
    ("total: 1,234 apples", "1,234"),
    ("1,2,3", "3"),
    ("it is -7", "-7"),
    ("about .5 of it", ".5"),
    ("three quarters: 3/4", "3/4"),
    ("a rise of 50%", "50%"),
    ("The answer is Paris.", "Paris"),
    ("no number here", None),
    ("", None),
    ("\\boxed{}", None),  # an empty box is no answer, and there is nothing else
    ("version v2 of x3", None),  # digits inside words are not numbers
]


@pytest.mark.parametrize(("text", "expected"), EXTRACT)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_a_project_pattern_is_the_only_rule():
    pattern = r"Final: (\w+)"
    assert extract_answer("so 3, Final: seven", pattern) == "seven"
    assert extract_answer("Final: a ... Final: b", pattern) == "b"
    assert extract_answer("the answer is \\boxed{3}", pattern) is None  # no fallback
    assert extract_answer("x=5", r"x=\d") == "x=5"  # no group: the whole match
    assert verifiable_rewards(["Final: 3", "\\boxed{3}"], ["3", "3"], pattern=pattern) == [1, 0]


MATCH = [
    ("42", "42", True),
    ("42.0", "42", True),
    ("1,000", "1000", True),
    ("$1,000", "1000", True),
    ("+3", "3", True),
    ("-3", "3", False),
    ("3/4", "0.75", True),
    ("\\frac{3}{4}", "0.75", True),
    ("\\dfrac{1}{2}", "1/2", True),
    ("50%", "0.5", True),
    ("50%", "50", True),
    ("0.5", "50%", True),
    ("0.3333", "1/3", False),  # a tolerance of 1e-6, not rounding
    ("1000000.5", "1000000", False),
    ("x = 5", "5", True),  # a numeric gold answer: the last number of an answer with words
    ("5 cm", "5", True),
    ("72", "Natalia sold 48 + 24 = 72 clips.\n#### 72", True),  # the gold's own #### answer
    ("7", "so \\boxed{7}", True),
    ("Paris", "paris", True),
    ("the Paris", "Paris.", True),
    ("\\text{Paris}", "Paris", True),
    ("Lyon", "Paris", False),
    ("", "", False),
    (None, "3", False),
    ("3", None, False),
    ("1/0", "1", False),
    ("inf", "inf", True),  # not numbers (not finite): compared as text
]


@pytest.mark.parametrize(("predicted", "gold", "expected"), MATCH)
def test_answers_match(predicted, gold, expected):
    assert answers_match(predicted, gold) is expected


def test_rewards_and_format_weight():
    completions = ["the answer is 4", "it is 5", "no idea"]
    assert verifiable_rewards(completions, ["4", "4", "4"]) == [1.0, 0.0, 0.0]
    assert verifiable_rewards(completions, ["4", "4", "4"], format_weight=0.1) == [1.1, 0.1, 0.0]
    assert verifiable_rewards(["4"], [None]) == [0.0]  # no gold answer: never correct
    with pytest.raises(ValueError):
        verifiable_rewards(["4"], ["4", "5"])


def test_trl_reward_function_reads_the_answer_column():
    reward = trl_reward_func(format_weight=0.5)
    assert reward.__name__ == "verifier"
    conversations = [[{"role": "assistant", "content": "so \\boxed{9}"}],
                     [{"role": "assistant", "content": "8"}]]  # fmt: skip
    assert reward(prompts=[[], []], completions=conversations, answer=["9", "9"]) == [1.5, 0.5]
    assert reward(prompts=["p"], completions=["9"]) == [0.5]  # no answer column


def test_math_verify_is_optional(monkeypatch):
    """Without math_verify (the default here) only our rules apply; where it is installed,
    TRL's accuracy_reward is asked too and can only add correct answers."""
    monkeypatch.setattr(verifiers, "math_verify_available", lambda: False)
    assert verifiable_rewards(["\\boxed{\\sqrt{4}}"], ["2"]) == [0.0]
    asked = []

    def fake(completions, answers):
        asked.append((completions, answers))
        return [True] * len(completions)

    monkeypatch.setattr(verifiers, "math_verify_available", lambda: True)
    monkeypatch.setattr(verifiers, "_math_verify", fake)
    assert verifiable_rewards(["\\boxed{\\sqrt{4}}"], ["2"]) == [1.0]
    assert asked == [(["\\boxed{\\sqrt{4}}"], ["2"])]
    assert verifiable_rewards(["x"], ["2"], pattern=r"(\d)") == [0.0]  # a pattern: ours only


@settings(deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_any_integer_written_any_way_matches(n):
    written = [f"{n:,}", f"\\boxed{{{n}}}", f"The answer is {n}.", f"{n}.0", f"#### {n}"]
    assert all(answers_match(extract_answer(w), str(n)) for w in written)
    assert not answers_match(extract_answer(f"the answer is {n + 1}"), str(n))


@settings(deadline=None)
@given(st.integers(1, 999), st.integers(1, 999))
def test_fractions_match_their_decimal(p, q):
    assert answers_match(f"{p}/{q}", repr(p / q))
    assert answers_match(f"\\frac{{{p}}}{{{q}}}", repr(p / q))


@settings(deadline=None, max_examples=50)
@given(st.text(max_size=200))
def test_extraction_never_fails(text):
    answer = extract_answer(text)
    assert answer is None or (isinstance(answer, str) and answer)
    assert verifiable_rewards([text], ["1"])[0] in (0.0, 1.0)


# --- scoring: accuracy, Wilson interval, pass@k ------------------------------------------------


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(4, 0, 1) == 0.0 and pass_at_k(4, 4, 4) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2))  # 0.5
    assert pass_at_k(5, 3, 3) == 1.0  # n - c < k: some draw of 3 always holds a correct one
    with pytest.raises(InvalidInput):
        pass_at_k(2, 1, 3)


def test_score_known_completions():
    greedy = score_verifiable([["4"], ["the answer is 6"], ["no"], ["\\boxed{9}"]],
                              ["4", "5", "1", "9"])  # fmt: skip
    assert (greedy["accuracy"], greedy["n"], greedy["no_answer"]) == (0.5, 4, 1)
    assert greedy["ci_low"] < 0.5 < greedy["ci_high"]
    assert greedy["pass_at"] == {"1": 0.5} and greedy["correct"] == [1, 1 - 1, 0, 1]

    sampled = score_verifiable([["1", "1", "2", "3"], ["0", "0", "0", "0"]], ["1", "7"])
    assert sampled["samples"] == 4 and sampled["accuracy"] == pytest.approx(0.25)
    assert sampled["pass_at"]["1"] == pytest.approx(0.25)
    assert sampled["pass_at"]["2"] == pytest.approx((1 - 1 / 6) / 2)
    assert sampled["pass_at"]["4"] == sampled["pass_at_k"] == 0.5
    assert sampled["pass_at_k_ci_low"] <= 0.5 <= sampled["pass_at_k_ci_high"]
    with pytest.raises(InvalidInput, match="same number"):
        score_verifiable([["1"], ["1", "2"]], ["1", "2"])


def test_verifiable_problems_deduplicate_and_count_the_unanswered():
    rows = [
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "1"}],
         "answer": "1"},
        {"messages": [{"role": "user", "content": "a"}], "answer": "1"},
        {"messages": [{"role": "user", "content": "b"}], "answer": None},
        {"messages": [{"role": "user", "content": "c"}], "answer": "3"},
    ]  # fmt: skip
    problems, without = data.verifiable_problems(rows)
    assert problems == [{"prompt": [{"role": "user", "content": "a"}], "answer": "1"},
                        {"prompt": [{"role": "user", "content": "c"}], "answer": "3"}]  # fmt: skip
    assert without == 1


# --- end to end on a tiny policy ---------------------------------------------------------------

QUESTIONS = [f"what is {a} plus {b}" for a in range(1, 5) for b in range(1, 6)]  # 20 problems


@pytest.fixture
def db_url(sqlite_url):
    return (
        sqlite_url  # the database part is tested on both in tests/labeling/test_prompt_answers.py
    )


@pytest.fixture
def Session(sqlite_url):  # noqa: N802
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    words = {w for q in QUESTIONS for w in q.split()} | {str(n) for n in range(12)}
    root = tmp_path_factory.mktemp("tiny-verifiable")
    return str(save_tiny_policy(root / "policy", word_tokenizer(sorted(words))))


def in_train(question: str) -> bool:
    return split_for_hash(prompt_hash([{"role": "user", "content": question}]), 0.5) == "train"


TRAIN = [q for q in QUESTIONS if in_train(q)]


def demo(question: str) -> dict:
    answer = str(int(question.split()[2]) + int(question.split()[4]))
    return {"messages": [{"role": "user", "content": question},
                         {"role": "assistant", "content": answer}], "answer": answer}  # fmt: skip


@pytest.fixture
def math_snapshot(cli, admin, tmp_path, Session):  # noqa: N803
    """An sft project of 20 prompt/answer problems (half held out), one of them (in train)
    with a written solution; its sft snapshot."""
    assert cli("users", "add", "eng", "--role", "engineer", "--password-stdin",
               stdin="password-123\n", user=admin).code == 0  # fmt: skip
    assert cli("projects", "create", "math", "--kind", "sft", "--heldout-fraction", "0.5",
               user=admin).code == 0  # fmt: skip
    rows = [{"prompt": q, "answer": str(int(q.split()[2]) + int(q.split()[4]))} for q in QUESTIONS]
    for name, file_rows in (("math.jsonl", rows), ("demo.jsonl", [demo(TRAIN[0])])):
        out = cli("import", str(write_jsonl(tmp_path / name, file_rows)), "--project", "math",
                  user=admin)  # fmt: skip
        assert out.code == 0, out.err
    out = cli("snapshot", "create", "--project", "math", "--kind", "sft", "--json", user="eng")
    assert out.code == 0, out.err
    return out.json()


def test_eval_policy_verifiable_cli(cli, math_snapshot, tiny_policy, Session):  # noqa: N803
    added = cli("checkpoints", "add", "--model", tiny_policy, "--name", "tiny", "--json",
                user="eng")  # fmt: skip
    assert added.code == 0, added.err
    checkpoint = added.json()["checkpoint_id"]
    assert isinstance(checkpoint, int)
    with Session() as s:
        snap = s.get(Snapshot, math_snapshot["id"])
        heldout = len(data.verifiable_problems(snapshots.read_split(snap, "heldout"))[0])
    assert heldout > 0

    base = ["eval", "policy", "--checkpoint", str(checkpoint), "--snapshot",
            str(math_snapshot["id"]), "--verifiable", "--max_new_tokens", "4"]  # fmt: skip
    out = cli(*base, "--json", user="eng")
    assert out.code == 0, out.err
    result = out.json()
    assert {"accuracy", "ci_low", "ci_high", "n"} <= set(result)
    assert result["n"] == heldout and result["split"] == "heldout"
    assert 0.0 <= result["ci_low"] <= result["accuracy"] <= result["ci_high"] <= 1.0
    assert result["decoding"] == "greedy" and result["pass_at"] == {"1": result["accuracy"]}
    assert 0 <= result["no_answer"] <= result["n"] and len(result["correct"]) == result["n"]
    assert result["mean_completion_tokens"] <= 4 and result["examples"]

    sampled = cli(*base, "--samples", "3", "--temperature", "1.0", "--split", "train",
                  "--answer_pattern", r"(\d+)", "--seed", "1", "--json", user="eng")  # fmt: skip
    assert sampled.code == 0, sampled.err
    s = sampled.json()
    assert (s["samples"], s["completions"], s["decoding"]) == (3, 3 * s["n"], "sampled")
    assert set(s["pass_at"]) == {"1", "2", "3"} and s["answer_pattern"] == r"(\d+)"
    assert s["pass_at"]["1"] <= s["pass_at"]["2"] <= s["pass_at"]["3"] <= 1.0
    assert s["pass_at_k_ci_low"] <= s["pass_at_k"] <= s["pass_at_k_ci_high"]
    again = cli(*base, "--samples", "3", "--temperature", "1.0", "--split", "train",
                "--answer_pattern", r"(\d+)", "--seed", "1", "--json", user="eng")  # fmt: skip
    assert again.json()["correct"] == s["correct"]  # the seed makes sampling repeatable

    text = cli(*base, user="eng")
    assert text.code == 0 and f"on {heldout} heldout problems" in text.out


def test_eval_policy_verifiable_refusals(cli, math_snapshot, tiny_policy, Session):  # noqa: N803
    checkpoint = cli("checkpoints", "add", "--model", tiny_policy, "--name", "tiny", "--json",
                     user="eng").json()["checkpoint_id"]  # fmt: skip
    base = ["eval", "policy", "--checkpoint", str(checkpoint), "--snapshot",
            str(math_snapshot["id"])]  # fmt: skip
    cases = [
        ([*base, "--verifiable", "--reward", "checkpoint:1"], "needs no reward model"),
        (base, "pass --reward checkpoint:ID, or --verifiable"),
        ([*base, "--verifiable", "--samples", "2", "--temperature", "0"], "same greedy answer"),
        ([*base, "--verifiable", "--temperature", "nan"], "--temperature must be between"),
        ([*base, "--verifiable", "--answer_pattern", "("], "not a regular expression"),
        ([*base, "--verifiable", "--samples", "0"], "must be from 1 to 1024"),
    ]
    for args, message in cases:
        out = cli(*args, user="eng")
        assert out.code != 0 and message in out.err, (args, out.err)
    assert cli(*base, "--verifiable", user="lab").code == 1  # nobody named lab


def test_sft_skips_rows_without_a_demonstration(cli, math_snapshot, tiny_policy, tmp_path, Session):  # noqa: N803
    """The answer snapshot has 1 demonstration: too few for SFT, refused before any model
    loads; with a second one, SFT trains on the 2 and counts the prompt-only rows skipped."""
    refused = cli("train", "sft", "--snapshot", str(math_snapshot["id"]), "--base", tiny_policy,
                  "--json", "--max_steps", "1", user="eng")  # fmt: skip
    assert refused.code == 1
    assert "with a demonstration" in refused.err and "too few for SFT" in refused.err
    with Session() as s:
        assert s.scalar(select(TrainingRun.id)) is None  # no run recorded

    path = write_jsonl(tmp_path / "more.jsonl", [demo(TRAIN[1])])
    assert cli("import", str(path), "--project", "math", user="eng").code == 0
    snap = cli("snapshot", "create", "--project", "math", "--kind", "sft", "--json", user="eng")
    assert snap.code == 0, snap.err
    assert snap.json()["splits"]["train"] == len(TRAIN)  # 2 demonstrations + the rest
    trained = cli("train", "sft", "--snapshot", str(snap.json()["id"]), "--base", tiny_policy,
                  "--json", "--max_steps", "1", "--per_device_train_batch_size", "2",
                  user="eng")  # fmt: skip
    assert trained.code == 0, trained.err
    metrics = trained.json()["metrics"]
    assert (metrics["train_rows"], metrics["skipped_rows"]) == (2, len(TRAIN) - 2)


def test_grpo_trains_on_an_imported_answer_snapshot(cli, math_snapshot, tiny_policy, Session):  # noqa: N803
    """The contract end to end: prompt/answer rows imported, `snapshot create --kind sft`,
    then `train rl --reward verifiable` reads the snapshot's answers (no demonstrations
    needed) and prints {"run_id", "checkpoint_id", "metrics"}."""
    out = cli("train", "rl", "--algo", "grpo", "--reward", "verifiable", "--snapshot",
              str(math_snapshot["id"]), "--base", tiny_policy, "--json", "--max_steps", "1",
              "--per_device_train_batch_size", "2", "--num_generations", "2",
              "--max_completion_length", "4", user="eng")  # fmt: skip
    assert out.code == 0, out.err
    result = out.json()
    assert set(result) == {"run_id", "checkpoint_id", "metrics", "watch"}  # training/watch.py
    with Session() as s:
        run = s.get(TrainingRun, result["run_id"])
        assert run.snapshot_id == math_snapshot["id"] and run.config["algo"] == "grpo"

"""The over-optimisation watch (training/watch.py) on tiny in-process models: its numbers,
its divergence rule, the stop rule keeping the best watch point, a deliberately hackable
reward (length) flagged against a length-neutral judge, and its points stored as the run's
metrics on SQLite and PostgreSQL. `rlhf train rl` with the watch: test_watch_cli.py."""

from __future__ import annotations

import math

import pytest
import torch

from labeling import projects
from labeling.errors import InvalidInput
from labeling.models import Snapshot
from labeling.registry import runs
from labeling.registry import training_records as tr
from training.ppo import PPOConfig, train_ppo
from training.spec import RunSpec, watch_settings
from training.watch import Watch, distinct_n, diverging, mean_se, pick_prompts

WORDS = "red blue green yes no apple pear one two three".split()
PROMPTS = [{"prompt": [{"role": "user", "content": w}], "answer": None} for w in WORDS]


@pytest.fixture(scope="module")
def toy_policy_dir(tmp_path_factory):
    from test_training_models import save_tiny_policy, word_tokenizer

    return save_tiny_policy(tmp_path_factory.mktemp("toy") / "policy", word_tokenizer(WORDS))


def _policy(directory, *, lora: bool = False):
    from training.models import load_policy

    policy, tokenizer = load_policy(str(directory))
    if lora:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(
            policy, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
        )
    return policy, tokenizer


def length_reward(prompts, texts, rows):
    """The hackable reward: one point per word, whatever the words are."""
    return [float(len(t.split())) for t in texts]


def apple_share(prompts, texts, rows):
    """A length-neutral judge: the share of an answer's words that are "apple"."""
    return [t.split().count("apple") / max(len(t.split()), 1) for t in texts]


# --- the pieces ------------------------------------------------------------------------------


def test_distinct_n_and_mean_se_on_hand_examples():
    # 5 words, 3 distinct (a, b, c); 4 bigrams (a b, b a, a b, b c), 3 distinct
    assert distinct_n(["a b a b c"], 1) == 3 / 5
    assert distinct_n(["a b a b c"], 2) == 3 / 4
    # across answers: the n-grams of all answers together, none spanning two answers
    assert distinct_n(["a b", "a b"], 1) == 2 / 4
    assert distinct_n(["a b", "b a"], 2) == 2 / 2
    assert distinct_n(["a", ""], 2) == 0.0  # no bigram at all
    mean, se = mean_se([1.0, 2.0, 3.0])
    assert mean == 2.0 and math.isclose(se, 1.0 / math.sqrt(3))
    assert mean_se([4.0]) == (4.0, 0.0)


def _points(rewards, judges, se=0.1):
    return [
        {"step": i, "reward": r, "reward_se": se, "judge": j, "judge_se": se}
        for i, (r, j) in enumerate(zip(rewards, judges, strict=True))
    ]


def test_the_divergence_rule_on_synthetic_series():
    # the reward climbs by far more than 2 standard errors, the judge falls: diverging
    assert diverging(_points([0.0, 1.0, 2.0], [0.5, 0.4, 0.3]))
    # both climb: the policy is getting better, not gaming
    assert not diverging(_points([0.0, 1.0, 2.0], [0.1, 0.3, 0.5]))
    # the reward's rise is within the noise (0.2 < 2 * sqrt(2) * 0.1): not significant
    assert not diverging(_points([0.0, 0.1, 0.2], [0.5, 0.4, 0.3]))
    # only the last 3 points count: an early judge rise does not hide a recent divergence
    assert diverging(_points([0.0, 0.0, 1.0, 2.0, 3.0], [0.0, 0.9, 0.9, 0.8, 0.8]))
    # fewer than 3 points, or no judge: never
    assert not diverging(_points([0.0, 5.0], [0.5, 0.1]))
    no_judge = [{"step": i, "reward": float(i), "reward_se": 0.0, "judge": None} for i in range(3)]
    assert not diverging(no_judge)


def test_watch_prompts_are_held_out_and_deterministic():
    heldout = [{"prompt": [{"role": "user", "content": f"h{i}"}]} for i in range(12)]
    train = [{"prompt": [{"role": "user", "content": f"t{i}"}]} for i in range(6)]
    rows, left, source = pick_prompts(heldout, train, 8, seed=0, min_train=2)
    assert source == "heldout" and len(rows) == 8 and left == train
    assert pick_prompts(heldout, train, 8, seed=0, min_train=2)[0] == rows  # by seed
    assert pick_prompts(heldout, train, 8, seed=1, min_train=2)[0] != rows
    # no held-out split: held back from the training prompts, never below min_train
    rows, left, source = pick_prompts([], train, 8, seed=0, min_train=2)
    assert source == "train" and len(rows) == 4 and len(left) == 2
    assert not {r["prompt"][0]["content"] for r in rows} & {r["prompt"][0]["content"] for r in left}
    assert pick_prompts([], train[:2], 8, seed=0, min_train=2) == ([], train[:2], "none")
    assert pick_prompts(heldout, train, 0, seed=0, min_train=2) == ([], train, "none")


def test_watch_settings_are_checked_and_travel_with_the_run():
    spec = RunSpec.from_flags(
        "rl", snapshot_id=1, reward="checkpoint:4",
        flags=["--watch_every", "3", "--kl_budget=2.5", "--stop_on_divergence",
               "--watch_judge", "checkpoint:9", "--max_steps", "6"],
    )  # fmt: skip
    assert spec.watch == {
        "watch_every": 3, "kl_budget": 2.5, "stop_on_divergence": True,
        "watch_judge": "checkpoint:9",
    }  # fmt: skip
    assert spec.fields == {"max_steps": 6}  # the watch's flags are not TRL fields
    config = spec.to_config()
    assert config["watch_every"] == 3 and config["stop_on_divergence"] is True

    class Stored:  # a queued run as the worker reads it back
        kind, snapshot_id, base_checkpoint_id, reward_checkpoint_id = "rl", 1, None, 4

    Stored.config = {**config, "watch": {"every": 3, "prompts": 8}}  # what the run records
    again = RunSpec.from_run(Stored)
    assert again.watch == spec.watch and again.fields == spec.fields
    form = RunSpec.from_form(
        "rl", "cpu-demo", learning_rate=1e-5, max_steps=2, batch_size=2,
        extra='{"kl_budget": 4, "beta": 0.1}',
    )  # fmt: skip
    assert form.watch == {"kl_budget": 4.0} and form.fields["beta"] == 0.1
    for bad, match in (
        ({"watch_every": "-1"}, "whole number"),
        ({"kl_budget": "0"}, "> 0"),
        ({"stop_on_divergence": "maybe"}, "true or false"),
        ({"stop_on_divergence": True}, "needs --watch_judge"),
        ({"watch_judge": "checkpoint:1,verifiable"}, "one reward checkpoint"),
    ):
        with pytest.raises(InvalidInput, match=match):
            watch_settings(bad)
    with pytest.raises(InvalidInput, match="rl runs only"):
        RunSpec(kind="sft", watch={"kl_budget": 1.0})


# --- the numbers on a tiny model -----------------------------------------------------------


@pytest.mark.parametrize("lora", [True, False])
def test_the_watch_numbers_on_a_tiny_model(toy_policy_dir, lora):
    policy, tokenizer = _policy(toy_policy_dir, lora=lora)
    seen = []

    def reward(prompts, texts, rows):
        seen.append(list(texts))
        return length_reward(prompts, texts, rows)

    watch = Watch(rows=PROMPTS, tokenizer=tokenizer, reward_fn=reward, max_new_tokens=6)
    policy.train()
    state = torch.get_rng_state()
    first = watch.measure(policy)
    assert torch.equal(torch.get_rng_state(), state)  # the training's random state is untouched
    assert policy.training  # and its mode
    # the policy is its reference (LoRA: adapters disabled; else a frozen copy): KL exactly 0
    assert first["kl"] == 0.0 and first["kl_per_token"] == 0.0
    texts = seen[0]
    assert len(texts) == len(PROMPTS)
    assert first["reward"] == sum(len(t.split()) for t in texts) / len(texts)
    assert 1 <= first["length"] <= 6  # tokens up to and including EOS
    assert first["distinct_1"] == distinct_n(texts, 1) and 0 < first["distinct_1"] <= 1
    assert watch.measure(policy) == first  # a fixed seed: the same answers, the same numbers
    with torch.no_grad():  # move the policy: the KL to the (unchanged) reference is now > 0
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn_like(p))
    moved = watch.measure(policy)
    assert moved["kl"] > 0 and moved["kl_per_token"] > 0
    assert math.isclose(moved["kl_per_token"] * moved["length"], moved["kl"], rel_tol=1e-6)


# --- the stop rules, in PPO's loop -----------------------------------------------------------


def _ppo_config(steps: int) -> PPOConfig:
    return PPOConfig(
        max_steps=steps, per_device_train_batch_size=16, num_mini_batches=2, num_ppo_epochs=4,
        response_length=16, temperature=1.0, learning_rate=3e-3, kl_coef=0.01,
    )  # fmt: skip


def test_the_kl_budget_stops_the_run_and_keeps_the_best_point(toy_policy_dir):
    """A length reward pulls the policy away from the base; a budget of 1 nat stops it at the
    first watch point past 1 and the weights kept are the best point's within the budget,
    not the last step's."""
    policy, tokenizer = _policy(toy_policy_dir)
    watch = Watch(rows=PROMPTS, tokenizer=tokenizer, reward_fn=length_reward, every=2,
                  max_new_tokens=16, kl_budget=1.0)  # fmt: skip
    out = train_ppo(policy, tokenizer, PROMPTS, length_reward, _ppo_config(20), watch=watch)
    assert watch.stopped == "kl_budget" and out.stopped
    last = watch.points[-1]
    assert last["kl"] > 1.0 and out.global_step == last["step"] < 20
    within = [p for p in watch.points if p["kl"] <= 1.0]
    best = max(within, key=lambda p: p["reward"])
    assert watch.best_step == best["step"] != last["step"]
    assert watch.restore(policy) == best["step"]
    again = watch.measure(policy)  # the restored policy is the best point's, not the last
    assert math.isclose(again["kl"], best["kl"], rel_tol=1e-4, abs_tol=1e-6)
    assert again["reward"] == best["reward"]
    summary = watch.summary()
    assert summary["stopped"] == "kl_budget" and summary["checkpoint_step"] == best["step"]


def test_a_length_reward_diverges_from_a_length_neutral_judge(toy_policy_dir):
    """The issue's test: PPO on a reward that pays per word raises the reward fast; the judge
    (the share of "apple" in an answer) does not follow; the watch flags it, and with
    stop_on_divergence stops and keeps the judge's best watch point."""
    policy, tokenizer = _policy(toy_policy_dir)
    watch = Watch(rows=PROMPTS, tokenizer=tokenizer, reward_fn=length_reward, every=3,
                  max_new_tokens=16, judge_fn=apple_share)  # fmt: skip
    train_ppo(policy, tokenizer, PROMPTS, length_reward, _ppo_config(9), watch=watch)
    assert watch.stopped is None  # flagged only: no stop was asked for
    rewards = [p["reward"] for p in watch.points]
    assert rewards[-1] > rewards[0] + 3  # the reward was gamed: longer answers
    assert watch.points[-1]["length"] > watch.points[0]["length"]
    assert any(p["diverging"] for p in watch.points) and watch.warnings
    assert "judge did not" in watch.warnings[0]
    assert watch.points[0]["diverging"] == 0.0  # never before 3 points

    policy, tokenizer = _policy(toy_policy_dir)
    stopping = Watch(rows=PROMPTS, tokenizer=tokenizer, reward_fn=length_reward, every=3,
                     max_new_tokens=16, judge_fn=apple_share, stop_on_divergence=True)  # fmt: skip
    out = train_ppo(policy, tokenizer, PROMPTS, length_reward, _ppo_config(30), watch=stopping)
    assert stopping.stopped == "divergence" and out.global_step < 30
    best = max(stopping.points, key=lambda p: p["judge"])
    assert stopping.restore(policy) == best["step"]
    assert stopping.measure(policy)["judge"] == best["judge"]


# --- stored as the run's metrics, both databases ---------------------------------------------


def _running(Session) -> int:  # noqa: N803
    with Session.begin() as s:
        project = projects.create_project(s, name="p", kind="sft")
        snap = Snapshot(project_id=project.id, kind="sft", sha256="ab" * 32, path="snapshots/x",
                        rows=0, splits={}, stats={}, filters={})  # fmt: skip
        s.add(snap)
        s.flush()
        return tr.start_run(s, kind="rl", snapshot_id=snap.id, config={}, created_by=None).id


def test_watch_points_are_stored_as_the_runs_metrics(Session, toy_policy_dir):  # noqa: N803
    from training.launch import Launch
    from training.rl import WatchPlan

    run_id = _running(Session)
    policy, tokenizer = _policy(toy_policy_dir, lora=True)
    plan = WatchPlan(every=1, rows=PROMPTS[:4], train_rows=PROMPTS[4:], source="heldout",
                     judge=None, settings={"watch_every": 1})  # fmt: skip
    watch = plan.make(tokenizer, length_reward, apple_share, sessionmaker=Session,
                      run_id=run_id, launch=Launch(), max_new_tokens=4, seed=0)  # fmt: skip
    watch.after_step(policy, 0)
    with Session.begin() as s:  # the recorder logs step 1; the watch's point merges into it
        tr.log_metrics(s, run_id, step=1, values={"loss": 0.5})
    watch.after_step(policy, 1)
    with Session() as s:
        stored = runs.run_metrics(s, run_id)
    assert [m["step"] for m in stored] == [0, 1]
    assert stored[0]["watch/kl"] == 0.0 and stored[1]["loss"] == 0.5
    for key in ("watch/reward", "watch/reward_se", "watch/kl_per_token", "watch/length",
                "watch/distinct_1", "watch/distinct_2", "watch/judge", "watch/diverging"):  # fmt: skip
        assert isinstance(stored[1][key], float), key
    assert stored[1]["watch/reward"] == watch.points[1]["reward"]
    assert plan.record["watch"]["prompts"] == 4 and plan.record["watch_every"] == 1


def test_the_watch_plan_with_a_verifiable_judge():
    """--watch_judge verifiable: the watch keeps the prompts with a gold answer and judges
    by them; with none, it is refused before any model loads."""
    from types import SimpleNamespace

    from training.rl import Reward, watch_plan

    inputs = SimpleNamespace(config=SimpleNamespace(seed=0))
    heldout = [{"prompt": [{"role": "user", "content": f"q{i}"}], "answer": a}
               for i, a in enumerate(["4", None, "7", None])]  # fmt: skip
    read = {"heldout": heldout, "rows": PROMPTS, "answer_pattern": None}
    spec = RunSpec.from_flags("rl", snapshot_id=1, reward="verifiable",
                              flags=["--watch_judge", "verifiable"])  # fmt: skip
    plan = watch_plan(spec, inputs, read, Reward(text="verifiable"))
    assert [r["answer"] for r in plan.rows] == ["4", "7"] and plan.train_rows == PROMPTS
    judge = plan.judge.function(torch.device("cpu"))
    assert judge([r["prompt"] for r in plan.rows], ["it is 4", "8"], plan.rows) == [1.0, 0.0]
    assert plan.record["watch"]["judge"] == "verifiable" and plan.every == 10
    unanswered = {**read, "heldout": [r for r in heldout if r["answer"] is None]}
    with pytest.raises(InvalidInput, match="none of the watch's prompts has a gold answer"):
        watch_plan(spec, inputs, unanswered, Reward(text="verifiable"))
    off = RunSpec.from_flags("rl", snapshot_id=1, reward="verifiable",
                             flags=["--watch_every", "0"])  # fmt: skip
    plan = watch_plan(off, inputs, read, Reward(text="verifiable"))
    assert plan.every == 0 and plan.rows == [] and plan.train_rows == PROMPTS


# --- the labelers' side of the divergence rule (gold checks) ---------------------------------


def _gold(step: int, wins: int, n: int, ties: int = 0) -> dict:
    return {"step": step, "wins": wins, "losses": n - wins - ties, "ties": ties, "n": n}


def test_the_human_divergence_rule_on_synthetic_votes():
    from training.watch import human_diverging

    points = [
        {"step": s, "reward": r, "reward_se": 0.1} for s, r in ((0, 0.0), (5, 1.0), (10, 2.0))
    ]
    falling = [_gold(5, 14, 20), _gold(10, 6, 20)]
    assert human_diverging(falling, points)  # the reward rose, the labelers' win rate fell
    assert not human_diverging([_gold(5, 6, 20), _gold(10, 14, 20)], points)  # both rose
    assert not human_diverging([_gold(5, 14, 9), _gold(10, 0, 9)], points)  # too few votes
    assert not human_diverging(falling[:1], points)  # one check: nothing to compare
    flat = [{**p, "reward": 1.0} for p in points]
    assert not human_diverging(falling, flat)  # the reward did not rise
    # one check judged in two arenas: pooled (5 + 5 votes reach the minimum of 10)
    pooled = [_gold(5, 14, 20), _gold(10, 2, 5), _gold(10, 1, 5, ties=2)]
    assert human_diverging(pooled, points)
    # a check between watch points is set against the point before it
    assert not human_diverging([_gold(3, 14, 20), _gold(4, 6, 20)], points)  # both at step 0


def test_gold_check_votes_stop_a_run_whose_reward_climbs(toy_policy_dir):
    """Votes that arrive while the run trains (a long run's gold check entered by hand): the
    judge here is the reward itself, so only the labelers' falling win rate can flag it; with
    stop_on_divergence the run stops."""
    policy, tokenizer = _policy(toy_policy_dir)
    votes = [_gold(1, 14, 20), _gold(6, 4, 20)]
    watch = Watch(rows=PROMPTS, tokenizer=tokenizer, reward_fn=length_reward, every=3,
                  max_new_tokens=16, judge_fn=length_reward, stop_on_divergence=True,
                  gold_votes=lambda: votes)  # fmt: skip
    out = train_ppo(policy, tokenizer, PROMPTS, length_reward, _ppo_config(15), watch=watch)
    assert watch.stopped == "divergence" and out.global_step < 15
    assert not any(p["diverging"] for p in watch.points)  # the automatic judge agreed
    assert watch.points[-1]["human_diverging"] == 1.0
    assert watch.points[0]["human_diverging"] == 0.0 and watch.summary()["diverging"]
    assert any("labelers' win rate" in w for w in watch.warnings)

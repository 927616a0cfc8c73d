"""Our PPO (training/ppo.py) and `rlhf train rl --reward verifiable`, on tiny in-process models.

The pieces against hand-computed numbers (GAE, KL estimators, adaptive KL); train_ppo with
no database (KL 0 at step 0, a toy reward that PPO must raise, resume, the missing-EOS
penalty); then `rlhf train rl --algo ppo|grpo` end to end on the seeded project of
test_train_sft_reward.py (a tiny Llama policy, a BERT reward encoder, and for --critic reward
a tiny Llama sequence classifier that shares the policy's tokenizer).
"""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import test_train_dpo_rl as rl_tests
import torch
from sqlalchemy import func, select

from labeling.errors import InvalidInput
from labeling.models import (
    Checkpoint,
    Project,
    ProjectKind,
    RunMetric,
    RunStatus,
    Snapshot,
    TrainingRun,
)
from labeling.registry import training_records
from training.ppo import AdaptiveKL, PPOConfig, gae, kl_per_token, train_ppo, whiten
from training.spec import RunSpec, parse_rewards

# The rl tests' fixtures: SQLite, the seeded project's snapshots, tiny models, checkpoints.
db_url, Session, snaps = rl_tests.db_url, rl_tests.Session, rl_tests.snaps
tiny_models, checkpoints = rl_tests.tiny_models, rl_tests.checkpoints
PPO = [
    "--algo", "ppo", "--max_steps", "2", "--per_device_train_batch_size", "2",
    "--response_length", "4", "--num_ppo_epochs", "1", "--save_steps", "0",
]  # fmt: skip


# --- the pieces ----------------------------------------------------------------------------


def test_gae_matches_a_hand_computed_example():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]])
    values = torch.tensor([[0.5, 0.6, 0.7], [1.0, 0.5, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # row 2 ended after 2 tokens
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 1: d2 = 1 - .7 = .3; d1 = .9*.7 - .6 = .03; d0 = .9*.6 - .5 = .04; gamma*lam = .72
    #        A2 = .3, A1 = .03 + .72*.3 = .246, A0 = .04 + .72*.246 = .21712
    # row 2: the masked reward 5 and value 9 count for nothing: d1 = 2 - .5 = 1.5 (A1),
    #        d0 = .9*.5 - 1 = -.55, A0 = -.55 + .72*1.5 = .53
    expected = torch.tensor([[0.21712, 0.246, 0.3], [0.53, 1.5, 0.0]])
    assert torch.allclose(advantages, expected, atol=1e-6)
    assert torch.allclose(returns, expected + values * mask, atol=1e-6)


def test_kl_estimators_whitening_and_adaptive_kl():
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    assert torch.allclose(kl_per_token(logp, ref, "k1"), torch.tensor([0.5, -1.0]))
    # k3 = (r - 1) - log r, r = p_ref / p: never negative
    r = torch.exp(ref - logp)
    assert torch.allclose(kl_per_token(logp, ref, "k3"), (r - 1) - torch.log(r))
    assert (kl_per_token(logp, ref, "k3") >= 0).all()
    assert float(kl_per_token(logp, logp, "k3").abs().max()) == 0.0

    x, mask = torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = whiten(x, mask)
    assert abs(float(w[0, :3].mean())) < 1e-6 and float(w[0, 3]) == 0.0
    assert abs(float(whiten(x, mask, shift_mean=False)[0, :3].mean()) - 2.0) < 1e-6

    kl = AdaptiveKL(0.1, adaptive=True, target=6.0, horizon=100)
    kl.update(12.0, n_steps=10)  # far above the target: the error is clipped to +0.2
    assert math.isclose(kl.value, 0.1 * (1 + 0.2 * 10 / 100))
    fixed = AdaptiveKL(0.1, adaptive=False, target=6.0, horizon=100)
    fixed.update(12.0, n_steps=10)
    assert fixed.value == 0.1


# --- train_ppo without a database -----------------------------------------------------------

WORDS = "red blue green yes no apple pear one two three".split()


@pytest.fixture(scope="module")
def toy_policy_dir(tmp_path_factory):
    from test_training_models import save_tiny_policy, word_tokenizer

    return save_tiny_policy(tmp_path_factory.mktemp("toy") / "policy", word_tokenizer(WORDS))


def _policy(directory, *, lora: bool = False):
    from training.models import load_policy

    policy, tokenizer = load_policy(str(directory))
    if lora:
        from peft import LoraConfig, get_peft_model

        lora_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
        policy = get_peft_model(policy, lora_config)
    return policy, tokenizer


PROMPTS = [{"prompt": [{"role": "user", "content": w}]} for w in WORDS]


def apples(prompts, texts, rows):
    """The toy reward: +1 per "apple" in the completion."""
    return [float(t.split().count("apple")) for t in texts]


@pytest.mark.parametrize("lora", [True, False])
def test_kl_to_the_reference_is_zero_at_step_zero(toy_policy_dir, lora):
    policy, tokenizer = _policy(toy_policy_dir, lora=lora)
    config = PPOConfig(max_steps=2, per_device_train_batch_size=4, response_length=6,
                       learning_rate=1e-2, num_ppo_epochs=2, temperature=1.0)  # fmt: skip
    out = train_ppo(policy, tokenizer, PROMPTS, apples, config)
    first, second = out.history
    # the reference is the base (LoRA: adapters disabled; full: a frozen copy): before any
    # update the policy is the reference, so the per-token KL is exactly 0
    assert first["kl"] == 0.0 and first["non_score_reward"] == 0.0
    assert second["kl"] != 0.0  # after one update the policy has moved
    assert out.global_step == 2 and math.isfinite(out.training_loss)
    expected = {"reward", "kl", "entropy", "clip_fraction", "value_loss", "value_clip_fraction",
                "explained_variance", "approx_kl", "response_length", "policy_loss", "loss",
                "learning_rate", "grad_norm", "kl_coef", "missing_eos_fraction"}  # fmt: skip
    assert expected <= set(first)


def test_ppo_raises_a_toy_reward(toy_policy_dir):
    """+1 per target word: PPO (full fine-tune, value head on the trunk) must raise the mean
    reward clearly within 15 rollouts of 16 completions."""
    policy, tokenizer = _policy(toy_policy_dir)
    config = PPOConfig(
        max_steps=15, per_device_train_batch_size=16, num_mini_batches=2, num_ppo_epochs=4,
        response_length=8, temperature=1.0, learning_rate=3e-3, kl_coef=0.01,
    )  # fmt: skip
    logged = []
    out = train_ppo(
        policy, tokenizer, PROMPTS, apples, config,
        callback=lambda step, metrics: logged.append(step) and False,
    )  # fmt: skip
    rewards = [m["reward"] for m in out.history]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 1.5, rewards  # from ~0.5 apples per completion to several
    assert logged == list(range(1, 16))
    assert out.history[-1]["kl"] > 0  # it paid for it with distance to the reference


def test_resume_continues_where_the_run_stopped(toy_policy_dir, tmp_path):
    """Stopped after 2 of 4 steps (resume point at step 2), a fresh process goes on from the
    saved adapters, value head, optimizer and step, and sees the same rollouts."""
    config = PPOConfig(
        max_steps=4, per_device_train_batch_size=4, response_length=5, temperature=1.0,
        learning_rate=1e-2, save_steps=2, output_dir=str(tmp_path),
    )  # fmt: skip
    whole = train_ppo(*_policy(toy_policy_dir, lora=True), PROMPTS, apples, config)
    policy, tokenizer = _policy(toy_policy_dir, lora=True)
    stop_at_2 = train_ppo(
        policy, tokenizer, PROMPTS, apples, config, callback=lambda step, m: step == 2
    )
    assert stop_at_2.stopped and stop_at_2.global_step == 2
    saved = sorted(p.name for p in tmp_path.glob("checkpoint-*"))
    assert saved == ["checkpoint-2"]
    assert json.loads((tmp_path / "checkpoint-2" / "trainer_state.json").read_text())[
        "global_step"
    ] == 2  # fmt: skip
    policy, tokenizer = _policy(toy_policy_dir, lora=True)  # a fresh start from the base
    resumed = train_ppo(
        policy, tokenizer, PROMPTS, apples, config,
        resume_from=str(tmp_path / "checkpoint-2"),
    )  # fmt: skip
    assert resumed.global_step == 4 and len(resumed.history) == 2
    for a, b in zip(whole.history[2:], resumed.history, strict=True):
        assert a["reward"] == b["reward"] and a["response_length"] == b["response_length"]
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-4, abs_tol=1e-6)


def test_completions_that_never_end_are_penalised(toy_policy_dir):
    policy, tokenizer = _policy(toy_policy_dir)
    config = PPOConfig(max_steps=1, per_device_train_batch_size=8, response_length=2,
                       temperature=1.0, missing_eos_penalty=1.0)  # fmt: skip
    out = train_ppo(policy, tokenizer, PROMPTS, lambda p, t, r: [0.0] * len(t), config)
    step = out.history[0]
    assert step["missing_eos_fraction"] > 0  # 2 random tokens rarely end
    assert math.isclose(step["reward"], -step["missing_eos_fraction"])
    assert step["reward_raw"] == 0.0


def test_config_and_reward_spec_errors_are_clear():
    with pytest.raises(ValueError, match="unknown critic"):
        PPOConfig(critic="nope")
    with pytest.raises(ValueError, match="kl_estimator"):
        PPOConfig(kl_estimator="k2")
    assert parse_rewards("checkpoint:4=0.5,verifiable=1.0") == [
        ("checkpoint:4", 0.5), ("verifiable", 1.0)
    ]  # fmt: skip
    assert parse_rewards("verifiable") == [("verifiable", 1.0)] and parse_rewards(None) == []
    for bad, message in (
        ("checkpoint:4=lots", "not a weight"),
        ("checkpoint:4,checkpoint:5", "at most one reward model"),
        ("verifiable,verifiable=2", "at most one"),
    ):
        with pytest.raises(InvalidInput, match=message):
            parse_rewards(bad)
    spec = RunSpec.from_flags(
        "rl", snapshot_id=3, algo="ppo", reward="checkpoint:4=0.5,verifiable",
        flags=["--answer_pattern", "answer: (\\d+)", "--critic", "reward"],
    )  # fmt: skip
    assert spec.answer_pattern == "answer: (\\d+)" and spec.fields == {"critic": "reward"}
    assert spec.checkpoint_ids() == (None, 4)
    config = spec.to_config()
    assert config["reward"] == "checkpoint:4=0.5,verifiable" and config["algo"] == "ppo"
    assert config["answer_pattern"] == "answer: (\\d+)"
    from types import SimpleNamespace

    stored = SimpleNamespace(
        kind="rl", config=config, snapshot_id=3, base_checkpoint_id=None, reward_checkpoint_id=4
    )
    again = RunSpec.from_run(stored)
    assert (again.algo, again.reward, again.answer_pattern) == (
        "ppo", "checkpoint:4=0.5,verifiable", "answer: (\\d+)"
    )  # fmt: skip
    assert again.fields == {"critic": "reward"}
    ppo_config, _, _ = again.parse()  # the cpu-demo preset's ppo: section, then the flags
    assert isinstance(ppo_config, PPOConfig) and ppo_config.critic == "reward"
    assert ppo_config.response_length == 16
    with pytest.raises(InvalidInput, match="PPOConfig"):
        RunSpec.from_flags("rl", algo="ppo", flags=["--kl_coeff", "0.1"]).parse()


# --- `rlhf train rl` end to end ----------------------------------------------------------------


@pytest.fixture
def answers_snapshot(Session, snaps):  # noqa: N803
    """An sft snapshot whose rows carry a gold `answer` (as create_snapshot writes them for
    prompt/answer imports): 4 train prompts, 3 with an answer, 1 without; the snapshot's
    filters name the answer regex."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from labeling.settings import load_settings

    train = [
        ("what colour is the sky", "blue"),
        ("name a fruit", "apple"),
        ("say hello politely", "hello"),
        ("count to three", None),
    ]
    home = load_settings().home
    directory = home / "snapshots" / "answers"
    directory.mkdir(parents=True)
    for split, rows in (("train", train), ("heldout", [("what is ice", "frozen")])):
        table = pa.Table.from_pylist(
            [{"messages": [{"role": "user", "content": q}], "answer": a} for q, a in rows]
        )
        pq.write_table(table, directory / f"{split}.parquet")
    with Session.begin() as s:
        project = Project(name="answers", kind=ProjectKind.sft)
        s.add(project)
        s.flush()
        snapshot = Snapshot(
            project_id=project.id, kind="sft", filters={"answer_pattern": r"(\w+)"}, rows=5,
            splits={"train": 4, "heldout": 1}, stats={}, sha256="a" * 64,
            path=str(directory.relative_to(home)),
        )  # fmt: skip
        s.add(snapshot)
        s.flush()
        return snapshot.id


@pytest.fixture
def critic_reward(Session, tiny_models):  # noqa: N803
    """A reward checkpoint that shares the policy's tokenizer: a tiny Llama sequence
    classifier (what --critic reward can initialise a critic from)."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(tiny_models["policy"], num_labels=1)
    torch.manual_seed(0)
    model = transformers.LlamaForSequenceClassification(config)

    def save(directory):
        model.save_pretrained(directory, safe_serialization=True)
        for name in os.listdir(tiny_models["policy"]):
            if name.startswith(("tokenizer", "special_tokens", "chat_template")):
                shutil.copy(os.path.join(tiny_models["policy"], name), directory / name)

    with Session.begin() as s:
        directory = training_records.write_checkpoint_dir("tiny-llama-reward", save)
        ck = training_records.register_checkpoint(
            s, kind="reward", directory=directory, run_id=None, base_model="tiny-llama-reward",
            evaluation={"score_mean": 0.5, "score_std": 2.0},
        )  # fmt: skip
        return ck.id


def test_ppo_end_to_end_with_a_reward_checkpoint(cli, snaps, checkpoints, critic_reward, Session):  # noqa: N803
    base, reward = f"checkpoint:{checkpoints['base']}", f"checkpoint:{checkpoints['reward']}"
    res = cli(
        "train", "rl", "--snapshot", str(snaps["preference"]), "--base", base,
        "--reward", reward, "--json", *PPO, user="eng",
    )  # fmt: skip
    assert res.code == 0, res.err
    result = res.json()
    assert set(result) == {"run_id", "checkpoint_id", "metrics", "watch"}  # training/watch.py
    metrics = result["metrics"]
    assert metrics["algo"] == "ppo" and metrics["critic"] == "shared" and metrics["steps"] == 2
    assert metrics["train_prompts"] == 4
    assert {"value_loss", "clip_fraction", "kl", "reward", "entropy"} <= set(metrics)
    assert all(math.isfinite(metrics[k]) for k in ("value_loss", "clip_fraction", "train_loss"))
    # --critic reward: a critic initialised from a reward model with the policy's tokenizer
    # (its stored score mean / std normalise the rewards), LoRA on it as on the policy
    critic = cli(
        "train", "rl", "--snapshot", str(snaps["sft"]), "--base", base,
        "--reward", f"checkpoint:{critic_reward}", "--critic", "reward", "--json", *PPO,
        user="eng",
    )  # fmt: skip
    assert critic.code == 0, critic.err
    assert critic.json()["metrics"]["critic"] == "reward"
    with Session.begin() as s:
        for out, critic_kind, reward_id in (
            (result, "shared", checkpoints["reward"]),
            (critic.json(), "reward", critic_reward),
        ):
            run = s.get(TrainingRun, out["run_id"])
            assert run.status == RunStatus.succeeded and run.kind == "rl"
            assert run.config["algo"] == "ppo" and run.config["critic"] == critic_kind
            assert run.config["reward"] == f"checkpoint:{reward_id}"
            assert run.reward_checkpoint_id == reward_id
            ck = s.get(Checkpoint, out["checkpoint_id"])
            assert ck.kind == "policy" and ck.parent_id == checkpoints["base"]
            assert ck.name.startswith(f"rl-ppo-run{run.id}-")
            rows = s.scalars(select(RunMetric).where(RunMetric.run_id == run.id)).all()
            # step 0: the over-optimisation watch's point before any update (training/watch.py)
            assert sorted(r.step for r in rows) == [0, 1, 2]
            trained = [r for r in rows if r.step > 0]
            assert all({"value_loss", "clip_fraction", "kl"} <= set(r.values) for r in trained)
    path = cli("checkpoints", "show", str(result["checkpoint_id"]), "--json", user="eng").json()
    files = os.listdir(path["path"])
    assert path["storage"] == "adapter" and path["adapter_base"] == base  # LoRA: the adapter
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    from safetensors import safe_open

    with safe_open(os.path.join(path["path"], "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys)  # the policy's adapter alone, no value head


def test_verifiable_rewards_with_grpo_and_ppo(cli, answers_snapshot, checkpoints, Session):  # noqa: N803
    base, reward = f"checkpoint:{checkpoints['base']}", f"checkpoint:{checkpoints['reward']}"
    snap = str(answers_snapshot)
    ppo = cli(
        "train", "rl", "--snapshot", snap, "--base", base, "--reward", "verifiable",
        "--format_weight", "0.1", "--json", *PPO, user="eng",
    )  # fmt: skip
    assert ppo.code == 0, ppo.err
    # GRPO with the reward model and the verifier, weighted (reward_weights)
    grpo = cli(
        "train", "rl", "--snapshot", snap, "--base", base,
        "--reward", f"{reward}=0.5,verifiable=1.0", "--answer_pattern", "(blue|apple)",
        "--json", *rl_tests.RL, user="eng",
    )  # fmt: skip
    assert grpo.code == 0, grpo.err
    with Session.begin() as s:
        for res, algo, pattern in (
            (ppo.json(), "ppo", r"(\w+)"),
            (grpo.json(), "grpo", "(blue|apple)"),
        ):
            metrics = res["metrics"]
            assert metrics["algo"] == algo
            # the prompt without a gold answer is left out, and counted
            assert metrics["train_prompts"] == 3 and metrics["prompts_without_answer"] == 1
            run = s.get(TrainingRun, res["run_id"])
            assert run.status == RunStatus.succeeded
            assert run.config["answer_pattern"] == pattern  # the flag, else the snapshot's
            ck = s.get(Checkpoint, res["checkpoint_id"])
            assert ck.parent_id == checkpoints["base"]
        assert s.get(TrainingRun, ppo.json()["run_id"]).reward_checkpoint_id is None
        grpo_run = s.get(TrainingRun, grpo.json()["run_id"])
        assert grpo_run.reward_checkpoint_id == checkpoints["reward"]
        assert grpo_run.config["reward"] == f"{reward}=0.5,verifiable=1.0"
        assert grpo_run.config["reward_weights"] == [0.5, 1.0]
        assert s.get(TrainingRun, ppo.json()["run_id"]).config["format_weight"] == 0.1


def test_bad_ppo_and_verifiable_inputs_fail_before_a_run(
    cli,
    snaps,
    checkpoints,
    answers_snapshot,
    Session,  # noqa: N803
):
    base, reward = f"checkpoint:{checkpoints['base']}", f"checkpoint:{checkpoints['reward']}"
    pref = str(snaps["preference"])
    common = ("train", "rl", "--snapshot", pref, "--base", base, "--algo", "ppo")
    cases = [
        (("--reward", reward, "--critic", "nope"), "unknown critic"),
        (("--reward", reward, "--kl_coeff", "0.1"), "PPOConfig"),
        (("--reward", "verifiable"), "0 training prompts with a gold answer"),
        (("--reward", reward, "--critic", "reward"), "tokenizer is not the policy's"),
        (("--reward", f"{reward},{reward}"), "at most one reward model"),
        (("--reward", "verifiable", "--answer_pattern", "(unclosed"), "not a regex"),
        (("--reward", base), "not a reward model"),
        ((), "needs a reward"),
    ]
    for args, message in cases:
        res = cli(*common, *args, user="eng")
        assert res.code == 1 and message in res.err, (args, res.err)
    verifier_critic = cli(
        "train", "rl", "--snapshot", str(answers_snapshot), "--base", base, "--algo", "ppo",
        "--reward", "verifiable", "--critic", "reward", user="eng",
    )  # fmt: skip
    assert verifier_critic.code == 1 and "--critic reward" in verifier_critic.err
    queued = cli(*common, "--reward", reward, "--queue", "--kl_coeff", "1", user="eng")
    assert queued.code == 1 and "kl_coeff" in queued.err and "PPOConfig" in queued.err
    with Session.begin() as s:
        assert s.scalar(select(func.count()).select_from(TrainingRun)) == 0


def test_ppo_queued_for_the_worker(cli, snaps, checkpoints, Session):  # noqa: N803
    queued = cli(
        "train", "rl", "--queue", "--snapshot", str(snaps["preference"]),
        "--base", f"checkpoint:{checkpoints['base']}",
        "--reward", f"checkpoint:{checkpoints['reward']}", "--json", *PPO, user="eng",
    )  # fmt: skip
    assert queued.code == 0, queued.err
    run_id = queued.json()["run_id"]
    worker = cli("worker", "--once", user="eng")
    assert worker.code == 0, worker.err
    with Session.begin() as s:
        run = s.get(TrainingRun, run_id)
        assert run.status == RunStatus.succeeded, run.error
        assert run.config["algo"] == "ppo" and run.config["response_length"] == 4
        ck = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)).one()
        assert ck.name.startswith(f"rl-ppo-run{run_id}")


def test_ppo_under_torchrun_records_one_run_and_one_checkpoint(snaps, checkpoints, Session):  # noqa: N803
    """Two ranks (gloo on the CPU): each samples its own prompts, gradients and metrics are
    averaged; rank 0 alone records the run and the checkpoint."""
    from test_torchrun import torchrun

    proc = torchrun(
        "-m", "app.cli.main", "train", "rl", "--snapshot", str(snaps["preference"]),
        "--base", f"checkpoint:{checkpoints['base']}",
        "--reward", f"checkpoint:{checkpoints['reward']}", *PPO, "--use_peft", "false",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-6000:]
    with Session.begin() as s:
        run = s.scalars(select(TrainingRun)).one()  # one run for the launch
        assert run.status == RunStatus.succeeded, run.error
        assert run.config["algo"] == "ppo" and run.metrics["steps"] == 2
        assert sorted(s.scalars(select(RunMetric.step))) == [0, 1, 2]  # 0: the watch's
        made = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run.id)).all()
        assert len(made) == 1 and made[0].parent_id == checkpoints["base"]


def test_the_launch_form_queues_ppo_with_the_verifier_and_a_critic():
    from app.ui.pages.engineer_training import build_config

    config = build_config(
        "rl", "cpu-demo", 1e-5, 3, 2, algo="ppo", verifiable=True, reward_checkpoint=4,
        critic="reward",
    )  # fmt: skip
    assert config == {
        "preset": "cpu-demo", "learning_rate": 1e-5, "per_device_train_batch_size": 2,
        "max_steps": 3, "critic": "reward", "algo": "ppo", "reward": "checkpoint:4,verifiable",
    }  # fmt: skip
    grpo = build_config("rl", "cpu-demo", 1e-5, None, 2, algo="grpo", reward_checkpoint=4)
    assert grpo["algo"] == "grpo" and "reward" not in grpo  # the run's reward_checkpoint_id


def test_a_non_finite_reward_fails_the_training(toy_policy_dir):
    from training.errors import TrainingFailed

    policy, tokenizer = _policy(toy_policy_dir)
    config = PPOConfig(max_steps=3, per_device_train_batch_size=2, response_length=3)
    with pytest.raises(TrainingFailed, match="non-finite"):
        train_ppo(policy, tokenizer, PROMPTS, lambda p, t, r: [float("nan")] * len(t), config)

"""`rlhf train rl` with the over-optimisation watch (training/watch.py), end to end on the
tiny models of test_train_dpo_rl.py: GRPO through the TrainerCallback, PPO through its own
loop, the points in the run's metrics, the summary in --json, the stop rule's checkpoint."""

from __future__ import annotations

import pytest
import test_train_dpo_rl as rl_tests
from sqlalchemy import select

from labeling.models import Checkpoint, RunMetric, TrainingRun

db_url, Session, snaps = rl_tests.db_url, rl_tests.Session, rl_tests.snaps
tiny_models, checkpoints = rl_tests.tiny_models, rl_tests.checkpoints
WATCHED = ("watch/reward", "watch/kl", "watch/kl_per_token", "watch/length", "watch/distinct_1",
           "watch/distinct_2", "watch/judge", "watch/diverging")  # fmt: skip


def _stored(Session, run_id):  # noqa: N803
    with Session() as s:
        run = s.get(TrainingRun, run_id)
        rows = s.scalars(select(RunMetric).where(RunMetric.run_id == run_id)).all()
        return run.config, run.metrics, {r.step: dict(r.values) for r in rows}


def test_grpo_with_the_watch_and_a_judge(cli, snaps, checkpoints, Session):  # noqa: N803
    reward = f"checkpoint:{checkpoints['reward']}"
    res = cli(
        "train", "rl", "--snapshot", str(snaps["preference"]),
        "--base", f"checkpoint:{checkpoints['base']}", "--reward", reward, "--json",
        "--watch_every", "1", "--watch_prompts", "2", "--watch_judge", reward,
        "--max_steps", "2", "--per_device_train_batch_size", "2", "--num_generations", "2",
        "--max_completion_length", "4", user="eng",
    )  # fmt: skip
    assert res.code == 0, res.err
    out = res.json()
    assert {"run_id", "checkpoint_id", "metrics", "watch"} <= set(out)
    watch = out["watch"]
    assert watch["points"] == 3 and watch["prompts"] == 2 and watch["stopped"] is None
    assert watch["checkpoint_step"] is None  # no stop: the final policy is the checkpoint
    config, metrics, stored = _stored(Session, out["run_id"])
    assert sorted(stored) == [0, 1, 2]  # a point before any update, then every step
    assert stored[0]["watch/kl"] == 0.0
    for step in (1, 2):
        assert set(WATCHED) <= set(stored[step]) and "loss" in stored[step]  # merged rows
    # the judge here is the reward model itself: judge == reward up to its weight of 1
    assert stored[2]["watch/judge"] == pytest.approx(stored[2]["watch/reward"])
    assert config["watch_every"] == 1 and config["watch_judge"] == reward
    # the snapshot's held-out prompts, chosen by seed, recorded by count and hash
    assert config["watch"]["source"] == "heldout" and config["watch"]["prompts"] == 2
    assert len(config["watch"]["prompts_sha256"]) == 64
    assert metrics["train_prompts"] == 4  # the held-out prompts are not trained on
    assert metrics["watch_points"] == 3 and metrics["watch_stopped"] is None


def test_ppo_stops_at_the_kl_budget_and_keeps_the_best_point(cli, snaps, checkpoints, Session):  # noqa: N803
    """A KL budget no update can stay within: the run stops at the first watch point after
    step 0 and registers the policy of step 0 (the base's adapters), not the last step's."""
    res = cli(
        "train", "rl", "--algo", "ppo", "--snapshot", str(snaps["sft"]),
        "--base", f"checkpoint:{checkpoints['base']}",
        "--reward", f"checkpoint:{checkpoints['reward']}", "--json",
        "--watch_every", "1", "--kl_budget", "1e-9", "--max_steps", "3",
        "--per_device_train_batch_size", "2", "--response_length", "4", "--num_ppo_epochs", "1",
        "--learning_rate", "0.05", "--save_steps", "0", user="eng",
    )  # fmt: skip
    assert res.code == 0, res.err
    out = res.json()
    watch = out["watch"]
    assert watch["stopped"] == "kl_budget" and watch["best_step"] == 0
    assert watch["checkpoint_step"] == 0 and watch["points"] == 2
    config, metrics, stored = _stored(Session, out["run_id"])
    assert metrics["steps"] == 1 and metrics["watch_stopped"] == "kl_budget"
    assert metrics["watch_best_step"] == 0
    assert stored[1]["watch/kl"] > 1e-9
    # the registered adapter is step 0's: LoRA's B matrices still all zero
    from safetensors.torch import load_file

    with Session() as s:
        path = s.get(Checkpoint, out["checkpoint_id"]).path
    show = cli("checkpoints", "show", str(out["checkpoint_id"]), "--json", user="eng").json()
    weights = load_file(f"{show['path']}/adapter_model.safetensors")
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert path and lora_b and all(float(v.abs().max()) == 0.0 for v in lora_b)


def test_the_watch_is_off_with_watch_every_0(cli, snaps, checkpoints, Session):  # noqa: N803
    res = cli(
        "train", "rl", "--algo", "ppo", "--snapshot", str(snaps["preference"]),
        "--base", f"checkpoint:{checkpoints['base']}",
        "--reward", f"checkpoint:{checkpoints['reward']}", "--json", "--watch_every", "0",
        "--max_steps", "1", "--per_device_train_batch_size", "2", "--response_length", "4",
        "--num_ppo_epochs", "1", "--save_steps", "0", user="eng",
    )  # fmt: skip
    assert res.code == 0, res.err
    assert res.json()["watch"] is None
    _, _, stored = _stored(Session, res.json()["run_id"])
    assert sorted(stored) == [1] and not any(k.startswith("watch/") for k in stored[1])
    # a stop rule without the watch is refused before any run is recorded
    bad = cli(
        "train", "rl", "--snapshot", str(snaps["preference"]),
        "--base", f"checkpoint:{checkpoints['base']}",
        "--reward", f"checkpoint:{checkpoints['reward']}", "--watch_every", "0",
        "--kl_budget", "3", user="eng",
    )  # fmt: skip
    assert bad.code != 0 and "need the watch" in bad.err
    with Session() as s:
        assert (
            s.scalar(select(TrainingRun.id).order_by(TrainingRun.id.desc()))
            == (res.json()["run_id"])
        )  # no new run


def test_a_full_fine_tune_without_a_kl_term_is_watched_against_the_base(
    cli, snaps, checkpoints, Session,  # noqa: N803
):  # fmt: skip
    """beta 0 and no LoRA: TRL keeps no reference, so the watch loads the base as its own;
    after an update the KL to it is above 0 (were the reference the moving policy, it would
    stay 0)."""
    res = cli(
        "train", "rl", "--snapshot", str(snaps["preference"]),
        "--base", f"checkpoint:{checkpoints['base']}",
        "--reward", f"checkpoint:{checkpoints['reward']}", "--json", "--watch_every", "1",
        "--use_peft", "false", "--beta", "0", "--learning_rate", "0.05", "--max_steps", "1",
        "--per_device_train_batch_size", "2", "--num_generations", "2",
        "--max_completion_length", "4", user="eng",
    )  # fmt: skip
    assert res.code == 0, res.err
    _, _, stored = _stored(Session, res.json()["run_id"])
    assert stored[0]["watch/kl"] == 0.0 and stored[1]["watch/kl"] > 0.0

"""`rlhf train dpo|rl` and `rlhf eval policy` end to end on tiny models.

The same seeded project and tiny in-process models as test_train_sft_reward.py (a Llama
policy, a BERT reward encoder, offline word tokenizers; HF_HUB_OFFLINE=1). The base policy
and the reward model are registered as checkpoints directly, so lineage (parent = base) and
the reward checkpoint are real rows without spending time on SFT and reward training here.
"""

from __future__ import annotations

import math
import os
import shutil

import pytest
import test_train_sft_reward as shared
from sqlalchemy import func, select

from labeling import snapshots
from labeling.models import Checkpoint, RunMetric, RunStatus, TrainingRun
from labeling.registry import training_records

# The SFT/reward tests' fixtures: SQLite only, the seeded project's snapshots, tiny models.
db_url, Session, snaps, tiny_models = (
    shared.db_url,
    shared.Session,
    shared.snaps,
    shared.tiny_models,
)
PAIRS, _seed = shared.PAIRS, shared._seed

ONE = ["--max_steps", "1", "--per_device_train_batch_size", "2"]
RL = [*ONE, "--num_generations", "2", "--max_completion_length", "8"]


@pytest.fixture
def checkpoints(Session, tiny_models):  # noqa: N803
    """{"base": id, "reward": id}: the tiny policy and a tiny reward model (a BERT sequence
    classifier with one output, head included) registered as checkpoints."""
    from training.models import load_reward_model

    def copy_policy(directory):
        for name in os.listdir(tiny_models["policy"]):
            shutil.copy(os.path.join(tiny_models["policy"], name), directory / name)

    reward_model, reward_tokenizer = load_reward_model(tiny_models["reward"])

    def save_reward(directory):
        reward_model.save_pretrained(directory)
        reward_tokenizer.save_pretrained(directory)

    out = {}
    with Session.begin() as s:
        for key, kind, save in (("base", "policy", copy_policy), ("reward", "reward", save_reward)):
            directory = training_records.write_checkpoint_dir(f"tiny-{key}", save)
            ck = training_records.register_checkpoint(
                s, kind=kind, directory=directory, run_id=None, base_model=f"tiny-{key}"
            )
            out[key] = ck.id
    return out


def test_dpo_with_lora_and_precomputed_reference(cli, snaps, checkpoints, Session):  # noqa: N803
    base = f"checkpoint:{checkpoints['base']}"
    # cpu-demo: LoRA (reference = base with adapters disabled) + precomputed ref log-probs.
    lora = cli(
        "train", "dpo", "--snapshot", str(snaps["preference"]), "--base", base, "--json",
        "--max_steps", "2", "--per_device_train_batch_size", "2", user="eng",
    )  # fmt: skip
    assert lora.code == 0, lora.err
    result = lora.json()
    assert set(result) == {"run_id", "checkpoint_id", "metrics"}
    assert result["metrics"]["steps"] == 2 and result["metrics"]["train_rows"] == 4
    assert math.isfinite(result["metrics"]["train_loss"])
    # A full fine-tune without precomputation: an explicit frozen copy of the base is the ref.
    full = cli(
        "train", "dpo", "--snapshot", str(snaps["preference"]), "--base", base, "--json",
        *ONE, "--use_peft", "false", "--precompute_ref_log_probs", "false", user="eng",
    )  # fmt: skip
    assert full.code == 0, full.err

    with Session.begin() as s:
        for res, peft, precompute in ((result, True, True), (full.json(), False, False)):
            run = s.get(TrainingRun, res["run_id"])
            assert run.status == RunStatus.succeeded and run.kind == "dpo"
            assert run.config["use_peft"] is peft
            assert run.config["precompute_ref_log_probs"] is precompute
            assert run.base_checkpoint_id == checkpoints["base"]
            ck = s.get(Checkpoint, res["checkpoint_id"])
            assert ck.kind == "policy" and ck.parent_id == checkpoints["base"]
            assert ck.run_id == run.id and ck.snapshot_sha256 == run.snapshot_sha256
        steps = s.scalars(select(RunMetric.step).where(RunMetric.run_id == result["run_id"]))
        assert sorted(steps) == [1, 2]
    path = cli("checkpoints", "show", str(result["checkpoint_id"]), "--json", user="eng").json()
    assert path["storage"] == "adapter"  # LoRA: the adapter on the base, merged when loaded
    assert "model.safetensors" not in os.listdir(path["path"])


def test_rl_grpo_and_rloo_then_eval_policy(cli, snaps, checkpoints, Session):  # noqa: N803
    base, reward = f"checkpoint:{checkpoints['base']}", f"checkpoint:{checkpoints['reward']}"
    grpo = cli(
        "train", "rl", "--snapshot", str(snaps["preference"]), "--base", base,
        "--reward", reward, "--json", *RL, user="eng",
    )  # fmt: skip
    assert grpo.code == 0, grpo.err
    # RLOO on the sft snapshot's prompts, a full fine-tune (TRL reloads the KL reference
    # from the base's directory).
    rloo = cli(
        "train", "rl", "--algo", "rloo", "--snapshot", str(snaps["sft"]), "--base", base,
        "--reward", reward, "--json", *RL, "--use_peft", "false", user="eng",
    )  # fmt: skip
    assert rloo.code == 0, rloo.err
    with Session.begin() as s:
        for res, algo in ((grpo.json(), "grpo"), (rloo.json(), "rloo")):
            assert res["metrics"]["algo"] == algo and res["metrics"]["steps"] == 1
            assert res["metrics"]["train_prompts"] == 4
            run = s.get(TrainingRun, res["run_id"])
            assert run.status == RunStatus.succeeded and run.kind == "rl"
            assert run.config["algo"] == algo and run.config["beta"] > 0
            assert run.reward_checkpoint_id == checkpoints["reward"]
            ck = s.get(Checkpoint, res["checkpoint_id"])
            assert ck.kind == "policy" and ck.parent_id == checkpoints["base"]
            assert ck.name.startswith(f"rl-{algo}-run{run.id}")

    ev = cli(
        "eval", "policy", "--checkpoint", str(grpo.json()["checkpoint_id"]), "--reward", reward,
        "--snapshot", str(snaps["preference"]), "--max_new_tokens", "6", "--json", user="eng",
    )  # fmt: skip
    assert ev.code == 0, ev.err
    out = ev.json()
    heldout = {q for q, split, *_ in PAIRS if split == "heldout"}
    assert out["n"] == len(heldout) == 3 and out["split"] == "heldout"
    assert math.isfinite(out["mean_reward"]) and math.isfinite(out["kl_to_base"])
    assert out["base"] == base and 1 <= out["mean_completion_tokens"] <= 6
    # The base against itself: zero KL.
    same = cli(
        "eval", "policy", "--checkpoint", str(checkpoints["base"]), "--reward", reward,
        "--snapshot", str(snaps["sft"]), "--base", base, "--max_new_tokens", "4", user="eng",
    )  # fmt: skip
    assert same.code == 0, same.err
    assert "KL to base 0.0000" in same.out and "on 3 heldout prompts" in same.out


def test_bad_inputs_fail_clearly_before_any_run(cli, snaps, checkpoints, Session):  # noqa: N803
    base, reward = f"checkpoint:{checkpoints['base']}", f"checkpoint:{checkpoints['reward']}"
    pref, sft = str(snaps["preference"]), str(snaps["sft"])
    cases = [
        (("rl", "--snapshot", pref, "--base", base), "needs a reward: pass --reward"),
        (("rl", "--algo", "ppo", "--snapshot", pref, "--base", base), "needs a reward"),
        (("dpo", "--snapshot", sft, "--base", base), "is a sft snapshot"),
        (("dpo", "--snapshot", pref, "--base", reward), "is a reward checkpoint, not a policy"),
        (("rl", "--snapshot", pref, "--base", reward, "--reward", reward), "not a policy"),
        (("rl", "--snapshot", pref, "--base", base, "--reward", base), "not a reward model"),
        (("dpo", "--snapshot", pref, "--base", base, "--no_such_field", "1"), "unknown config"),
    ]
    for args, message in cases:
        res = cli("train", *args, user="eng")
        assert res.code == 1 and message in res.err, (args, res.err)
    with Session.begin() as s:
        project = _seed(s, pairs=[PAIRS[0], PAIRS[4]], name="small")
        small = snapshots.create_snapshot(s, project=project, kind="preference")[0].id
    res = cli(
        "train", "rl", "--snapshot", str(small), "--base", "/no/such", "--reward", reward,
        user="eng",
    )  # fmt: skip
    assert res.code == 1 and "1 training prompts: too few" in res.err
    assert cli("train", "rl", "--algo", "nope", "--snapshot", pref, user="eng").code == 2
    ev = cli(
        "eval", "policy", "--checkpoint", str(checkpoints["reward"]), "--reward", reward,
        "--snapshot", pref, user="eng",
    )  # fmt: skip
    assert ev.code == 1 and "not a policy" in ev.err
    denied = cli("train", "dpo", "--snapshot", pref, "--base", base, user="lab")
    assert denied.code == 1 and "error:" in denied.err
    with Session.begin() as s:
        assert s.scalar(select(func.count()).select_from(TrainingRun)) == 0


def test_rl_queued_for_the_worker_keeps_algo_and_reward(cli, snaps, checkpoints, Session):  # noqa: N803
    from training.spec import own_flags

    assert own_flags(
        ["--algo", "rloo", "--reward=checkpoint:4", "--trainer", "X", "--beta", "0"]
    ) == (
        {"algo": "rloo", "reward": "checkpoint:4"},
        ["--beta", "0"],
    )
    queued = cli(
        "train", "rl", "--queue", "--algo", "rloo", "--snapshot", str(snaps["preference"]),
        "--base", f"checkpoint:{checkpoints['base']}",
        "--reward", f"checkpoint:{checkpoints['reward']}", "--json", *RL, user="eng",
    )  # fmt: skip
    assert queued.code == 0, queued.err
    run_id = queued.json()["run_id"]
    worker = cli("worker", "--once", user="eng")
    assert worker.code == 0, worker.err
    with Session.begin() as s:
        run = s.get(TrainingRun, run_id)
        assert run.status == RunStatus.succeeded, run.error
        assert run.config["algo"] == "rloo" and run.reward_checkpoint_id == checkpoints["reward"]
        ck = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)).one()
        assert ck.name.startswith(f"rl-rloo-run{run_id}") and ck.parent_id == checkpoints["base"]


def test_rl_queue_checks_its_config_fields_like_the_other_kinds(cli, snaps, checkpoints, Session):  # noqa: N803
    """`rlhf train rl --queue` used to store any field; it now checks them against
    GRPOConfig / RLOOConfig the way sft, reward and dpo are checked, and records nothing."""
    bad = cli(
        "train", "rl", "--queue", "--snapshot", str(snaps["preference"]),
        "--base", f"checkpoint:{checkpoints['base']}",
        "--reward", f"checkpoint:{checkpoints['reward']}", "--no_such_field", "1", user="eng",
    )  # fmt: skip
    assert bad.code == 1
    errors = [line for line in bad.err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), bad.err
    assert "no_such_field" in errors[0] and "GRPOConfig" in errors[0]
    bad_value = cli(
        "train", "rl", "--queue", "--algo", "rloo", "--snapshot", str(snaps["preference"]),
        "--reward", f"checkpoint:{checkpoints['reward']}", "--max_steps", "many", user="eng",
    )  # fmt: skip
    assert bad_value.code == 1 and "max_steps" in bad_value.err, bad_value.err
    with Session.begin() as s:
        assert s.scalar(select(func.count()).select_from(TrainingRun)) == 0


@pytest.mark.slow
def test_real_default_models_dpo_rl_and_eval(cli, snaps, Session):  # noqa: N803
    """SmolLM2-135M-Instruct and MiniLM: reward, DPO, GRPO one step each, then eval policy."""
    one = [*ONE, "--max_length", "64"]
    reward = cli(
        "train", "reward", "--snapshot", str(snaps["preference"]), "--json", *one, user="eng"
    )  # fmt: skip
    assert reward.code == 0, reward.err
    reward_ck = f"checkpoint:{reward.json()['checkpoint_id']}"
    dpo = cli("train", "dpo", "--snapshot", str(snaps["preference"]), "--json", *one, user="eng")
    assert dpo.code == 0, dpo.err
    rl = cli(
        "train", "rl", "--snapshot", str(snaps["preference"]), "--base",
        f"checkpoint:{dpo.json()['checkpoint_id']}", "--reward", reward_ck, "--json", *RL,
        user="eng",
    )  # fmt: skip
    assert rl.code == 0, rl.err
    ev = cli(
        "eval", "policy", "--checkpoint", str(dpo.json()["checkpoint_id"]), "--reward",
        reward_ck, "--snapshot", str(snaps["preference"]), "--max_new_tokens", "8", "--json",
        user="eng",
    )  # fmt: skip
    assert ev.code == 0, ev.err
    out = ev.json()
    assert out["n"] == 3 and out["base"] == "default"
    assert math.isfinite(out["mean_reward"]) and math.isfinite(out["kl_to_base"])
    with Session.begin() as s:
        ck = s.get(Checkpoint, rl.json()["checkpoint_id"])
        assert ck.parent_id == dpo.json()["checkpoint_id"]
        assert ck.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"

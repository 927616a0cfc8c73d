"""Engineer · Launch training: record a QUEUED training run; a worker runs it later.

Config keys are TRL's own field names (learning_rate, max_steps, ...), stored as they are
on the run; labeling.registry.runs.queue_training_run checks that the snapshot and checkpoints fit.
An rl run names its algorithm (GRPO / RLOO: TRL's trainers; PPO: ours, training/ppo.py, with
its value model) and its reward: a reward checkpoint, the verifier of gold answers, or both.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from app.ui import auth
from app.ui.actions import act, show_flash
from app.ui.db import transaction
from labeling import snapshots
from labeling.models import RunKind
from labeling.registry import runs
from training import spec as run_spec

KINDS = [k.value for k in RunKind]
KIND_HELP = {
    "sft": "supervised fine-tuning on demonstrations (TRL SFTTrainer)",
    "reward": "reward model on preference pairs (TRL RewardTrainer)",
    "dpo": "direct preference optimisation of a policy checkpoint (TRL DPOTrainer)",
    "rl": "online RL against a reward model and / or a verifier (GRPO, RLOO or our PPO)",
}
ALGO_HELP = {
    "grpo": "GRPO (TRL GRPOTrainer)",
    "rloo": "RLOO (TRL RLOOTrainer)",
    "ppo": "PPO (ours, training/ppo.py: a value model, clipped surrogate, GAE)",
}
CRITIC_HELP = {
    "shared": "shared: a value head on the policy",
    "reward": "reward: a critic initialised from the reward model",
}
PRESETS = tuple(run_spec.preset_names())  # the presets shipped in training/presets/
DEFAULTS = run_spec.TRL_DEFAULTS  # where a preset leaves a field out
K = "train-"  # widget keys: K + field
NOTE = "queued: a worker will pick it up (`rlhf worker`, coming with training)"


def render() -> None:
    user = auth.require_action("train")
    st.title("Launch training")
    show_flash()
    st.caption(f"This page records the run as {NOTE}.")
    with transaction() as s:
        snaps = [snapshots.describe(s, snap) for snap in snapshots.list_snapshots(s)]
        checkpoints = runs.list_checkpoints(s)
    if not snaps:
        st.info("No snapshots yet: create one on the Snapshots page first.")
        return

    left, right = st.columns(2)
    kind = left.selectbox(
        "Run kind", KINDS, key=K + "kind", format_func=lambda k: f"{k}: {KIND_HELP[k]}"
    )
    preset = right.selectbox(
        "Preset", PRESETS, key=K + "preset",
        help="cpu-demo: a few steps with LoRA on the CPU; gpu: a real run on one GPU",
    )  # fmt: skip

    fitting = [
        s for s in snaps if s["kind"] in {k.value for k in runs.SNAPSHOT_KINDS[RunKind(kind)]}
    ]
    if not fitting:
        wanted = " or ".join(k.value for k in runs.SNAPSHOT_KINDS[RunKind(kind)])
        st.warning(f"No {wanted} snapshot yet: a {kind} run trains on one.")
        return
    by_id = {s["id"]: s for s in fitting}
    st.selectbox(
        "Snapshot", list(by_id), key=K + "snapshot",
        format_func=lambda i: f"#{i} {by_id[i]['project']} · {by_id[i]['kind']} · "
        f"{by_id[i]['rows']} rows · {by_id[i]['sha256'][:12]}",
    )  # fmt: skip

    policies = {c["id"]: c for c in checkpoints if c["kind"] == "policy"}
    rewards = {c["id"]: c for c in checkpoints if c["kind"] == "reward"}
    left, right = st.columns(2)
    needs_base = RunKind(kind) in runs.NEEDS_BASE
    left.selectbox(
        "Base checkpoint" + ("" if needs_base else " (optional)"),
        [None, *policies], key=K + "base",
        format_func=lambda i: "none: the default model" if i is None else _label(policies[i]),
    )  # fmt: skip
    if RunKind(kind) in runs.NEEDS_REWARD:
        right.selectbox(
            "Reward checkpoint", [None, *rewards], key=K + "reward",
            format_func=lambda i: "none" if i is None else _label(rewards[i]),
        )  # fmt: skip
        left, mid, right = st.columns(3)
        algo = left.selectbox(
            "Algorithm", list(run_spec.ALGOS), key=K + "algo", format_func=ALGO_HELP.get
        )
        mid.checkbox(
            "Verifier: reward correct final answers", key=K + "verifiable",
            help="the prompts' gold answers (an sft snapshot of prompt/answer rows); with a "
            "reward checkpoint too, both count",
        )  # fmt: skip
        if algo == "ppo":
            right.selectbox(
                "Value model (critic)", list(CRITIC_HELP), key=K + "critic",
                format_func=CRITIC_HELP.get,
            )  # fmt: skip
    elif st.session_state.get(K + "base") is None:
        right.text_input(
            "model_name_or_path", key=K + "model", placeholder="default",
            help="a Hugging Face id or local path; empty: the default model",
        )  # fmt: skip

    st.subheader("Config")
    section = _section(kind, st.session_state.get(K + "algo"))
    values = preset_defaults(preset, section)
    st.caption(
        f"The worker starts from the `{preset}` preset (training/presets/{preset}.yaml) and "
        "applies these fields over it."
    )
    cols = st.columns(3)
    # keys carry kind and preset: choosing another one brings its defaults back
    cols[0].number_input(
        "learning_rate", min_value=0.0, max_value=1.0, format="%.2e", step=1e-6,
        value=float(values.get("learning_rate", DEFAULTS["learning_rate"])),
        key=f"{K}lr-{section}-{preset}",
    )  # fmt: skip
    cols[1].number_input(
        "max_steps", min_value=1, max_value=10_000_000, value=values.get("max_steps"),
        key=f"{K}steps-{section}-{preset}",
        placeholder=_epochs_hint(values.get("num_train_epochs", 1), kind),
    )  # fmt: skip
    cols[2].number_input(
        "per_device_train_batch_size", min_value=1, max_value=4096,
        value=int(values.get("per_device_train_batch_size", DEFAULTS["per_device_train_batch_size"])),
        key=f"{K}batch-{section}-{preset}",
    )  # fmt: skip
    st.text_area(
        "More TRL config fields (a JSON object of plain values)", key=K + "extra",
        placeholder='{"beta": 0.1, "max_length": 512}', height=80,
    )  # fmt: skip
    st.button("Queue run", type="primary", key=K + "queue", icon=":material/rocket_launch:",
              on_click=_queue, args=(user.id,))  # fmt: skip


def _epochs_hint(epochs, kind) -> str:
    if kind == "reward" and not epochs:  # the cpu-demo reward model: the fitted head alone
        return "preset: 0 epochs (the probe head only)"
    return f"preset: {epochs} epoch(s)"


def _label(checkpoint: dict[str, Any]) -> str:
    made = f"run #{checkpoint['run_id']}" if checkpoint["run_id"] else "registered"
    return f"#{checkpoint['id']} {checkpoint['name']} ({made})"


def _section(kind: str, algo: str | None) -> str:
    """The preset section a run reads: its kind's, `ppo` for an rl run with PPO."""
    return "ppo" if kind == "rl" and algo == "ppo" else kind


def preset_defaults(preset: str, kind: str) -> dict[str, Any]:
    """The preset file's section for this run kind, or `ppo` ({} when it has none)."""
    return run_spec.preset_fields(preset, kind)


def build_config(kind: str, preset: str, lr: float, max_steps: int | None, batch: int,
                 extra: str = "", model: str = "", *, algo: str | None = None,
                 verifiable: bool = False, reward_checkpoint: int | None = None,
                 critic: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The run's config (training.spec.RunSpec, the one converter the CLI and the worker use
    too): the preset's name, the fields shown, then the extra JSON fields (rl: the
    algorithm, the reward when the verifier counts, PPO's critic). The worker reads the
    preset file and applies these over it."""
    reward = None
    if kind == "rl" and verifiable:
        reward = "verifiable"
        if reward_checkpoint is not None:
            reward = f"checkpoint:{reward_checkpoint},verifiable"
    spec = run_spec.RunSpec.from_form(
        kind, preset, learning_rate=lr, max_steps=max_steps, batch_size=batch, extra=extra,
        model=model, algo=algo if kind == "rl" else None, reward=reward,
    )  # fmt: skip
    if kind == "rl" and spec.algo == "ppo" and critic:
        spec.fields["critic"] = critic
    if kind != "rl":
        return runs.check_config({"preset": spec.preset, **spec.fields})
    return runs.check_config(spec.to_config())


def _queue(user_id: int) -> None:
    ss = st.session_state
    kind, preset = ss.get(K + "kind") or "sft", ss.get(K + "preset") or "cpu-demo"
    algo = ss.get(K + "algo") if kind == "rl" else None
    section = _section(kind, algo)

    def action(s) -> str:
        config = build_config(
            kind, preset,
            ss.get(f"{K}lr-{section}-{preset}", DEFAULTS["learning_rate"]),
            ss.get(f"{K}steps-{section}-{preset}"),
            ss.get(f"{K}batch-{section}-{preset}", DEFAULTS["per_device_train_batch_size"]),
            ss.get(K + "extra") or "",
            (ss.get(K + "model") or "") if ss.get(K + "base") is None else "",
            algo=algo, verifiable=bool(ss.get(K + "verifiable")) and kind == "rl",
            reward_checkpoint=ss.get(K + "reward"), critic=ss.get(K + "critic"),
        )  # fmt: skip
        run = runs.queue_training_run(
            s, kind=kind, snapshot_id=ss.get(K + "snapshot"), config=config,
            base_checkpoint_id=ss.get(K + "base"),
            reward_checkpoint_id=ss.get(K + "reward") if RunKind(kind) in runs.NEEDS_REWARD else None,
            created_by=user_id,
        )  # fmt: skip
        return f"Run #{run.id} ({kind}) {NOTE}. Follow it on Runs and checkpoints."

    act(user_id, "train", action)

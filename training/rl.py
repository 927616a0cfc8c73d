"""Online RL of a policy against our reward model, with TRL's GRPOTrainer or RLOOTrainer.

    rlhf train rl --reward checkpoint:4 --base checkpoint:7 --snapshot 3 [--algo grpo|rloo]
                  [--preset cpu-demo|gpu|FILE.yaml] [--json]
                  [--max_steps 2 --beta 0.05 --num_generations 2 --max_completion_length 16]
    python -m training.rl --reward 4 --base 7 --snapshot 3 ...   (RLHF_USER names the engineer)

TRL 1.x ships no PPOTrainer (it was removed upstream), so this is not PPO: it is GRPO (group
relative policy optimisation, the default) or RLOO (REINFORCE leave-one-out), whichever
--algo names. The algorithm actually run is recorded in the run's config (`algo`) and in the
checkpoint's name (rl-grpo-run12-..., rl-rloo-run13-...).

Flags after the known ones are GRPOConfig / RLOOConfig / trl.ModelConfig fields. Top to bottom:
 1. config: the preset's `rl:` section, then the flags -> GRPOConfig or RLOOConfig +
    ModelConfig. `beta` > 0 keeps the policy close to the base (a KL penalty to the base, the
    reference); the presets set it.
 2. the prompts: from any snapshot kind that has them, read from its Parquet files -
    preference / kto: the `prompt` column; sft: `messages` without the last assistant turn -
    de-duplicated. Fewer than 2 prompts fails before any model loads. The base must be a
    policy and --reward a reward model (checkpoint:ID of a reward checkpoint, `default`, a
    directory); anything else is refused before the run is recorded.
 3. the run is recorded (running; config with `algo`, snapshot, base and reward checkpoints).
 4. the policy loads through training/models.py, and so does the reward model: a sequence
    classifier with one output. It is the trainer's reward function (`reward_funcs=`) with its
    own tokenizer (`reward_processing_classes=`): each prompt + sampled completion is rendered
    with the reward tokenizer's chat template and scored. The reference for the KL term is
    the base: with LoRA the base with adapters disabled, else a frozen copy TRL loads from
    the base's directory. NaN/inf in the loss or grad norm fails the run, no checkpoint.
 5. LoRA adapters are merged; the policy is written atomically under $RLHF_HOME/checkpoints/
    and registered as a policy checkpoint whose parent is the base.

Multi-process (`torchrun --nproc_per_node 8 -m training.rl ...`, `accelerate launch ...`, or
`rlhf train rl` under either): every rank trains, rank 0 alone writes the run, its metrics
and the checkpoint's registration - one run and one checkpoint per launch
(training/launch.py).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from labeling.errors import InvalidInput
from training import cli
from training.spec import ALGOS, DEFAULT_ALGO, DEFAULT_PRESET, RunSpec

__all__ = ["ALGOS", "DEFAULT_ALGO", "check_reward", "main", "make_parser", "prompts_of", "run"]
PROMPT_KINDS = ("preference", "kto", "sft")


def prompts_of(kind: str, rows: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """The distinct prompts (conversations ending before the answer) of a snapshot split:
    preference / kto rows carry `prompt`; sft rows are `messages` minus the last assistant
    turn."""
    if kind not in PROMPT_KINDS:
        raise InvalidInput(
            f"a {kind} snapshot has no prompts to use: use a {', '.join(PROMPT_KINDS)} snapshot"
        )
    out: list[list[dict[str, str]]] = []
    seen: set[str] = set()
    for row in rows:
        if kind == "sft":
            messages = [dict(m) for m in row["messages"] or []]
            if messages and messages[-1]["role"] == "assistant":
                messages = messages[:-1]
        else:
            messages = [dict(m) for m in row["prompt"] or []]
        if not messages:
            continue
        key = json.dumps(messages, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(messages)
    return out


def check_reward(resolved) -> None:
    """The reward model must be a reward checkpoint (or a non-checkpoint model)."""
    if resolved.checkpoint_id is not None and resolved.checkpoint_kind != "reward":
        raise InvalidInput(
            f"checkpoint {resolved.checkpoint_id} is a {resolved.checkpoint_kind} checkpoint, "
            "not a reward model: pass --reward a reward checkpoint (rlhf train reward)"
        )


def train_prompts(snapshot) -> list:
    """The snapshot's training prompts, refused when too few (before any model loads)."""
    from labeling.snapshots import read_split
    from training.spec import MIN_TRAIN_ROWS

    prompts = prompts_of(
        getattr(snapshot.kind, "value", snapshot.kind), read_split(snapshot, "train")
    )
    if len(prompts) < MIN_TRAIN_ROWS:
        raise InvalidInput(
            f"snapshot {snapshot.id} has {len(prompts)} training prompts: too few to train "
            f"(at least {MIN_TRAIN_ROWS}); label more and take a new snapshot"
        )
    return prompts


def run(
    *,
    snapshot_id: int,
    created_by: int | None,
    reward: str | int | None = None,
    base: str | None = None,
    algo: str | None = None,
    preset: str = DEFAULT_PRESET,
    flags: list[str] | tuple[str, ...] = (),
    sessionmaker=None,
    json_output: bool = False,
    run_id: int | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train, record, register. Returns {"run_id", "checkpoint_id", "metrics"}."""
    from training import data
    from training.models import resolve_model
    from training.prepare import prepare
    from training.spec import peft_config

    # --algo / --reward may also come back among the flags of a stored config (--resume)
    spec = RunSpec.from_flags(
        "rl", snapshot_id=snapshot_id, base=base, preset=preset, flags=flags, algo=algo,
        reward=reward,
    )  # fmt: skip
    algo, reward = spec.algo, spec.reward
    if reward is None or reward.strip() == "":
        raise InvalidInput(
            "online RL needs a reward model: pass --reward checkpoint:ID (a reward checkpoint "
            "from `rlhf train reward`)"
        )
    # config, then the prompts, the base (a policy) and the reward model, checked before any
    # model loads; a reward checkpoint is refused as the base
    inputs = prepare(
        spec, snapshot_kind=None, model_kind="policy", sessionmaker=sessionmaker,
        read=train_prompts,
    )  # fmt: skip
    config, model_config, record = inputs.config, inputs.model_config, inputs.record
    prompts = inputs.extra
    files, resolved = inputs.files, inputs.resolved
    rows = data.snapshot_rows(files)
    resolved_reward = inputs.launch.share(lambda: resolve_model(reward, kind="reward"))
    check_reward(resolved_reward)
    trainer_name = spec.config_class().__name__.replace("Config", "Trainer")
    # the run record: rank 0 writes it, every rank gets its id; a failure inside is recorded
    with inputs.recorded_run(
        recipe="training/rl.py", created_by=created_by, run_id=run_id, json_output=json_output,
        config={"algo": algo, "trainer": trainer_name, "reward": reward},
        reward_checkpoint_id=resolved_reward.checkpoint_id,
    ) as run:  # fmt: skip
        # 4. policy, reward model and trainer
        import datasets
        import trl

        from training.models import load_policy, load_reward_model

        model, tokenizer = load_policy(resolved.path)
        # TRL loads the KL reference (beta > 0, no LoRA) from this name: the base's directory.
        model.config._name_or_path = resolved.path
        reward_model, reward_tokenizer = load_reward_model(resolved_reward.path)
        trainer = getattr(trl, trainer_name)(
            model=model,
            reward_funcs=reward_model,
            args=config,
            train_dataset=datasets.Dataset.from_list([{"prompt": p} for p in prompts]),
            processing_class=tokenizer,
            reward_processing_classes=reward_tokenizer,
            peft_config=peft_config(model_config),
            callbacks=[run.recorder],
        )
        output = run.train(trainer, resume)
        # 5. the policy, LoRA merged: written atomically and registered (parent: the base)
        sha = run.snapshot_sha
        directory = run.save_model(
            f"rl-{algo}-run{run.id}" + (f"-{sha[:8]}" if sha else ""), trainer, tokenizer,
            merge_lora=model_config.use_peft, load_base=lambda: load_policy(resolved.path)[0],
        )  # fmt: skip
        return run.finish(
            output, lead={"algo": algo},
            counts=lambda: {"train_prompts": len(prompts), "train_rows": rows["train"]},
            keep=("train_", "reward", "kl", "completions/mean_length"),
            kind="policy", directory=directory, resolved=resolved,
            config={**record, "algo": algo, "reward": reward},
        )  # fmt: skip


def make_parser(subparsers=None, **kwargs):
    """`python -m training.rl` standalone, or `rlhf train rl` (subparsers given)."""
    parser = cli.recipe_parser(
        "rl", "training.rl", __doc__, subparsers,
        help="online RL of a policy against a reward checkpoint with TRL's GRPOTrainer or "
        "RLOOTrainer (--algo; TRL 1.x has no PPOTrainer, so this is not PPO)",
        base_help="policy to start from (default: SmolLM2-135M-Instruct)",
        **kwargs,
    )  # fmt: skip
    parser.add_argument("--reward", help="the reward model: checkpoint:ID of a reward checkpoint")
    parser.add_argument(
        "--algo", choices=ALGOS, help="GRPO (default) or RLOO; TRL 1.x ships no PPOTrainer"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    return cli.recipe_main(make_parser(), run, argv, "reward", "algo")


if __name__ == "__main__":
    sys.exit(main())

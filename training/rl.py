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
(training/common.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from labeling.errors import InvalidInput, RLHFError
from labeling.snapshots import get_snapshot, read_split, snapshot_files
from training import common

ALGOS = ("grpo", "rloo")
DEFAULT_ALGO = "grpo"
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


def own_flags(flags: list[str]) -> tuple[dict[str, str], list[str]]:
    """This recipe's own settings out of the flags ({"algo": ..., "reward": ...}), and the
    TRL flags left. A queued or resumed run's stored config comes back as flags, and `algo`
    and `reward` are part of it (`--algo rloo`, `--reward=checkpoint:4`)."""
    own: dict[str, str] = {}
    rest: list[str] = []
    flags = list(flags)
    i = 0
    while i < len(flags):
        name, eq, value = flags[i].partition("=")
        key = name[2:].replace("-", "_") if name.startswith("--") else None
        if key in ("algo", "reward"):
            if not eq:
                if i + 1 >= len(flags):
                    raise InvalidInput(f"{name} needs a value")
                i, value = i + 1, flags[i + 1]
            own[key] = value
        elif key != "trainer":
            rest.append(flags[i])
        elif not eq:
            i += 1  # --trainer GRPOTrainer: a recorded fact, not a setting
        i += 1
    return own, rest


def check_reward(resolved) -> None:
    """The reward model must be a reward checkpoint (or a non-checkpoint model)."""
    if resolved.checkpoint_id is not None and resolved.checkpoint_kind != "reward":
        raise InvalidInput(
            f"checkpoint {resolved.checkpoint_id} is a {resolved.checkpoint_kind} checkpoint, "
            "not a reward model: pass --reward a reward checkpoint (rlhf train reward)"
        )


def run(
    *,
    snapshot_id: int,
    created_by: int | None,
    reward: str | int | None = None,
    base: str | None = None,
    algo: str | None = None,
    preset: str = common.DEFAULT_PRESET,
    flags: list[str] | tuple[str, ...] = (),
    sessionmaker=None,
    json_output: bool = False,
    run_id: int | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train, record, register. Returns {"run_id", "checkpoint_id", "metrics"}."""
    from training.models import resolve_model

    own, flags = own_flags(list(flags))
    if algo and own.get("algo") and own["algo"] != algo:
        raise InvalidInput(f"--algo {algo} and --algo {own['algo']} disagree")
    algo = algo or own.get("algo") or DEFAULT_ALGO
    reward = own.get("reward") if reward is None else reward
    if algo not in ALGOS:
        raise InvalidInput(
            f"unknown RL algorithm {algo!r}: use grpo or rloo (TRL 1.x has no PPOTrainer)"
        )
    if reward is None or str(reward).strip() == "":
        raise InvalidInput(
            "online RL needs a reward model: pass --reward checkpoint:ID (a reward checkpoint "
            "from `rlhf train reward`)"
        )
    if algo == "grpo":
        from trl import GRPOConfig as config_cls
    else:
        from trl import RLOOConfig as config_cls

    sessionmaker = sessionmaker or common.default_sessionmaker()
    timer = common.Timer()
    # 1. config (under torchrun / accelerate launch this also joins the ranks together)
    config, model_config, record = common.parse_config(config_cls, preset, "rl", list(flags))
    launch = common.Launch.current()
    base = base or model_config.model_name_or_path or "default"
    # 2. the prompts, the base (a policy) and the reward model, checked before any model loads
    with sessionmaker.begin() as s:
        snapshot = get_snapshot(s, snapshot_id)
        kind = getattr(snapshot.kind, "value", snapshot.kind)
        files = snapshot_files(snapshot)
        prompts = prompts_of(kind, read_split(snapshot, "train"))
    if len(prompts) < common.MIN_TRAIN_ROWS:
        raise InvalidInput(
            f"snapshot {snapshot_id} has {len(prompts)} training prompts: too few to train "
            f"(at least {common.MIN_TRAIN_ROWS}); label more and take a new snapshot"
        )
    rows = common.snapshot_rows(files)
    # a reward checkpoint is refused as the base; rank 0 resolves first (it caches the default)
    resolved = launch.share(lambda: resolve_model(base, kind="policy"))
    resolved_reward = launch.share(lambda: resolve_model(reward, kind="reward"))
    check_reward(resolved_reward)
    # 3. the run record: rank 0 writes it, every rank gets its id
    run_id, snapshot_sha = common.start_run(
        launch,
        sessionmaker,
        kind="rl",
        snapshot_id=snapshot_id,
        config={
            **record,
            "algo": algo,
            "trainer": config_cls.__name__.replace("Config", "Trainer"),
            "recipe": "training/rl.py",
            "preset": preset,
            "base": base,
            "reward": str(reward),
        },
        created_by=created_by,
        base_checkpoint_id=resolved.checkpoint_id,
        run_id=run_id,  # a run claimed by a worker or reopened for --resume
        claimed=run_id is not None,
        reward_checkpoint_id=resolved_reward.checkpoint_id,
    )
    run_dir = common.run_dir(run_id)  # the trainer's output_dir, the same on every rank
    recorder = None
    try:
        with common.stdout_to_stderr(json_output):
            # 4. policy, reward model and trainer
            import datasets

            from training.models import load_policy, load_reward_model

            if algo == "grpo":
                from trl import GRPOTrainer as trainer_cls
            else:
                from trl import RLOOTrainer as trainer_cls

            model, tokenizer = load_policy(resolved.path)
            # TRL loads the KL reference (beta > 0, no LoRA) from this name: the base's directory.
            model.config._name_or_path = resolved.path
            reward_model, reward_tokenizer = load_reward_model(resolved_reward.path)
            config.output_dir = str(run_dir)
            dataset = datasets.Dataset.from_list([{"prompt": p} for p in prompts])
            recorder = common.make_recorder(sessionmaker, run_id, launch)
            trainer = trainer_cls(
                model=model,
                reward_funcs=reward_model,
                args=config,
                train_dataset=dataset,
                processing_class=tokenizer,
                reward_processing_classes=reward_tokenizer,
                peft_config=common.peft_config(model_config),
                callbacks=[recorder],
            )
            # --resume: continue from the newest complete trainer checkpoint in run_dir
            last = launch.share(lambda: common.last_trainer_checkpoint(run_dir)) if resume else None
            output = trainer.train(resume_from_checkpoint=last)
            common.check_result(recorder, trainer.model, launch)

            # 5. the checkpoint (LoRA merged), written atomically: every rank saves its part,
            # rank 0 renames it into place and registers it with its lineage
            def save(directory):
                common.save_model(
                    trainer,
                    tokenizer,
                    directory,
                    launch,
                    merge_lora=model_config.use_peft,
                    load_base=lambda: load_policy(resolved.path)[0],
                )

            name = f"rl-{algo}-run{run_id}" + (f"-{snapshot_sha[:8]}" if snapshot_sha else "")
            directory = common.write_checkpoint(launch, name, save)

        def final_metrics():  # on rank 0, from its recorder
            return {
                "algo": algo,
                "train_loss": output.training_loss,
                "steps": output.global_step,
                "train_prompts": len(prompts),
                "train_rows": rows["train"],
                "seconds": timer.seconds(),
                **{
                    k: v
                    for k, v in recorder.last.items()
                    if k.startswith(("train_", "reward", "kl", "completions/mean_length"))
                },
            }

        checkpoint_id, metrics = common.register_and_finish(
            launch,
            sessionmaker,
            run_id,
            kind="policy",
            directory=directory,
            resolved=resolved,
            config={**record, "algo": algo, "reward": str(reward)},
            metrics=final_metrics,
            recorder=recorder,
            run_dir=run_dir,
        )
    except BaseException as exc:
        error = common.record_failure(sessionmaker, run_id, exc, recorder, launch)
        if error is exc:
            raise
        raise error from exc
    return {"run_id": run_id, "checkpoint_id": checkpoint_id, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.rl",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common.add_arguments(parser, base_help="policy to start from (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--reward", help="the reward model: checkpoint:ID of a reward checkpoint")
    parser.add_argument("--algo", choices=ALGOS, help="GRPO (default) or RLOO")
    args, flags = parser.parse_known_args(argv)
    try:
        user = common.engineer_id(args.user)
        result = run(
            snapshot_id=args.snapshot,
            created_by=user,
            reward=args.reward,
            base=args.base,
            algo=args.algo,
            preset=args.preset,
            flags=flags,
            json_output=args.json,
        )
    except RLHFError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    common.print_result(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

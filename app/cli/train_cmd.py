"""`rlhf train sft|reward|dpo|rl`: train on a snapshot and register the checkpoint
(engineer, admin).

    rlhf train sft --snapshot 3 [--base checkpoint:2] [--preset cpu-demo] --max_steps 2 --json
    rlhf train reward --snapshot 4 --learning_rate 1e-5 --json
    rlhf train dpo --snapshot 4 --base checkpoint:5 [--use_peft false] --json
    rlhf train rl --snapshot 4 --base checkpoint:5 --reward checkpoint:6 [--algo grpo|rloo] --json

Online RL runs TRL's GRPOTrainer or RLOOTrainer against the reward model: TRL 1.x ships no
PPOTrainer, so there is no PPO here; the run records the algorithm it used.

Flags after the known ones are TRL config fields (SFTConfig / RewardConfig / trl.ModelConfig)
and pass through to the recipe (training/sft.py, reward/train.py). torch, transformers and
TRL load only when a training command runs.
"""

from __future__ import annotations

import os

from app.cli.common import acting_user, id_arg, print_json, sessionmaker, transaction
from labeling.errors import InvalidInput
from labeling.models import Role


def _pass_through(parser) -> None:
    """Let this subcommand keep the flags it does not know (TRL fields) in args.flags."""
    parse_known = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, extras = parse_known(args, namespace)
        namespace.flags = list(getattr(namespace, "flags", None) or []) + list(extras)
        return namespace, []

    parser.parse_known_args = parse_known_args


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train SFT / reward / DPO / online-RL models on a snapshot (engineer, admin)",
        description=__doc__,
    )
    tsub = p.add_subparsers(dest="train_command", required=True, metavar="RECIPE")
    recipes = {
        "sft": ("supervised fine-tuning on an sft snapshot (TRL SFTTrainer)", "policy"),
        "reward": ("a reward model on a preference snapshot (TRL RewardTrainer)", "reward"),
        "dpo": ("DPO of a policy on a preference snapshot (TRL DPOTrainer)", "policy"),
        "rl": (
            "online RL of a policy against a reward checkpoint with TRL's GRPOTrainer or "
            "RLOOTrainer (--algo; TRL 1.x has no PPOTrainer, so this is not PPO)",
            "policy",
        ),
    }
    for name, (help_text, what) in recipes.items():
        r = tsub.add_parser(
            name,
            help=help_text,
            description=f"{help_text}. Extra flags are TRL config fields: --max_steps 2.",
        )
        r.add_argument(
            "--snapshot",
            type=id_arg("snapshot"),
            help="snapshot id to train on (not with --resume)",
        )
        r.add_argument(
            "--base",
            help=f"{what} model to start from: default, checkpoint:ID, a directory, a hub id",
        )
        r.add_argument(
            "--preset",
            default="cpu-demo",
            help="cpu-demo (default), gpu, or a YAML file whose keys are TRL config fields",
        )
        r.add_argument("--json", action="store_true", help='print {"run_id", ...} at the end')
        if name == "rl":
            r.add_argument(
                "--reward", help="the reward model: checkpoint:ID of a reward checkpoint"
            )
            r.add_argument(
                "--algo",
                choices=["grpo", "rloo"],
                default="grpo",
                help="GRPO (default) or RLOO; TRL 1.x ships no PPOTrainer",
            )
        _queue_and_resume_arguments(r)
        r.set_defaults(func=train, flags=[])
        _pass_through(r)


def train(args) -> int:
    with transaction() as s:
        user = acting_user(s, args, Role.engineer, Role.admin)
        user_id = user.id if user is not None else None
    if getattr(args, "queue", False) or getattr(args, "resume", None) is not None:
        return _queue_or_resume(args, user_id)
    if args.snapshot is None:
        raise InvalidInput("--snapshot ID is required (or --resume RUN_ID)")
    extra = {}
    if args.train_command == "sft":
        from training.sft import run
    elif args.train_command == "reward":
        from reward.train import run
    elif args.train_command == "dpo":
        from training.dpo import run
    else:
        from training.rl import run

        extra = {"reward": args.reward, "algo": args.algo}
    result = run(
        snapshot_id=args.snapshot,
        created_by=user_id,
        base=args.base,
        preset=args.preset,
        flags=args.flags,
        sessionmaker=sessionmaker(),
        json_output=args.json,
        **extra,
    )
    if not _main_process():
        return 0  # rank 0 reports (and enters arenas) for the whole launch
    if args.train_command != "reward":
        from training.arena_entry import enter_auto_arenas, report

        # Arenas that auto-enter new checkpoints get its answers and tasks now.
        report(enter_auto_arenas(sessionmaker(), result["checkpoint_id"], progress=not args.json))
    if args.json:
        print_json(result)
    else:
        metrics = ", ".join(f"{k}={v}" for k, v in result["metrics"].items())
        print(f"run {result['run_id']} succeeded: checkpoint {result['checkpoint_id']}")
        print(metrics)
    return 0


def _main_process() -> bool:
    """False on the other ranks of a torchrun / accelerate launch: rank 0 alone acts."""
    return int(os.environ.get("RANK", "0")) == 0


# --- --queue and --resume ----------------------------------------------------------------

_CONFIG_CLASSES = {"sft": "SFTConfig", "reward": "RewardConfig", "dpo": "DPOConfig"}


def _queue_and_resume_arguments(r) -> None:
    r.add_argument(
        "--queue",
        action="store_true",
        help="record a queued run for `rlhf worker` instead of training here",
    )
    r.add_argument(
        "--resume",
        type=id_arg("training run"),
        metavar="RUN_ID",
        help="continue a failed or killed run from its last trainer checkpoint",
    )


def _flag_config(flags: list[str]) -> dict:
    """`--max_steps 2 --bf16 --lr_scheduler_type=constant` -> {"max_steps": 2, "bf16": True,
    ...}: values read as YAML scalars, the way a preset file reads them."""
    import yaml

    config: dict = {}
    key = None
    for token in flags:
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            key = name.replace("-", "_")
            config[key] = yaml.safe_load(value) if eq else True
            if eq:
                key = None
        elif key is not None:
            value = yaml.safe_load(token)
            if config[key] is True:
                config[key] = value
            else:  # a list field: --lora_target_modules q_proj v_proj
                previous = config[key] if isinstance(config[key], list) else [config[key]]
                config[key] = [*previous, value]
        else:
            raise InvalidInput(f"unexpected argument {token!r}")
    return config


def _queue_or_resume(args, user_id) -> int:
    from labeling.registry import run_queue, runs

    if args.queue and args.resume is not None:
        raise InvalidInput("--queue and --resume do not go together")
    if args.queue:
        if args.snapshot is None:
            raise InvalidInput("--queue needs --snapshot ID")
        if args.train_command in _CONFIG_CLASSES:  # check the fields now, not in the worker
            import trl

            from training.common import parse_config

            config_cls = getattr(trl, _CONFIG_CLASSES[args.train_command])
            parse_config(config_cls, args.preset, args.train_command, args.flags)
        config = {"preset": args.preset, **_flag_config(args.flags)}
        base_id = None
        if args.base:
            spec = args.base.removeprefix("checkpoint:")
            if spec.isdigit():
                base_id = int(spec)
            else:
                config["base"] = args.base
        reward_id = None
        if args.train_command == "rl":  # training/rl.py reads algo / reward back from config
            config["algo"] = args.algo
            spec = (args.reward or "").removeprefix("checkpoint:")
            if spec.isdigit():
                reward_id = int(spec)
            elif spec:
                config["reward"] = args.reward
        with transaction() as s:
            run = runs.queue_training_run(
                s,
                kind=args.train_command,
                snapshot_id=args.snapshot,
                config=config,
                base_checkpoint_id=base_id,
                reward_checkpoint_id=reward_id,
                created_by=user_id,
            )
            result = {"run_id": run.id, "status": "queued"}
        if args.json:
            print_json(result)
        else:
            print(f"run {run.id} queued: `rlhf worker` will run it")
        return 0
    # --resume: the run's own snapshot, base and preset; extra TRL flags may be added.
    with transaction() as s:
        run = runs.get_run(s, args.resume)
        kind = getattr(run.kind, "value", run.kind)
        if kind != args.train_command:
            raise InvalidInput(f"run {run.id} is a {kind} run: use `rlhf train {kind} --resume`")
        if args.snapshot is not None and args.snapshot != run.snapshot_id:
            raise InvalidInput(f"run {run.id} trained on snapshot {run.snapshot_id}")
        if _main_process():  # under torchrun, rank 0 alone writes; the others read the run
            run = run_queue.reopen_run(s, args.resume)
        s.expunge(run)
    from training.worker import run_claimed

    result = run_claimed(
        run, sessionmaker(), resume=True, extra_flags=args.flags, json_output=args.json
    )
    if not _main_process():
        return 0
    if args.json:
        print_json(result)
    else:
        print(f"run {result['run_id']} succeeded: checkpoint {result['checkpoint_id']}")
    return 0

"""`rlhf train sft|reward|dpo|rl`: train on a snapshot and register the checkpoint
(engineer, admin).

    rlhf train sft --snapshot 3 [--base checkpoint:2] [--preset cpu-demo] --max_steps 2 --json
    rlhf train reward --snapshot 4 --learning_rate 1e-5 --json
    rlhf train dpo --snapshot 4 --base checkpoint:5 [--use_peft false] --json
    rlhf train rl --snapshot 4 --base checkpoint:5 --reward checkpoint:6 [--algo grpo|rloo|ppo] --json
    rlhf train rl --snapshot 7 --reward verifiable [--answer_pattern REGEX] --algo ppo --json
    rlhf train rl --snapshot 4 --base checkpoint:5 --reward checkpoint:6 --gold_check_steps 5,10
                  [--gold_check_arena my-arena]

Online RL runs TRL's GRPOTrainer or RLOOTrainer, or our own PPO (training/ppo.py: TRL 1.x
ships no PPOTrainer), against a reward model, a verifier of gold answers, or both
(`--reward checkpoint:6=0.5,verifiable=1.0`); the run records the algorithm it used.

Flags after the known ones are TRL config fields (SFTConfig / RewardConfig / trl.ModelConfig)
and pass through to the recipe (training/sft.py, reward/train.py). torch, transformers and
TRL load only when a training command runs.
"""

from __future__ import annotations

import os

from app.cli.common import acting_user, id_arg, print_json, sessionmaker, transaction
from labeling.errors import InvalidInput
from labeling.kinds import Role


def _pass_through(parser) -> None:
    """Let this subcommand keep the flags it does not know (TRL fields) in args.flags."""
    parse_known = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, extras = parse_known(args, namespace)
        namespace.flags = list(getattr(namespace, "flags", None) or []) + list(extras)
        return namespace, []

    parser.parse_known_args = parse_known_args


# Each recipe declares its arguments once (make_parser); `rlhf train KIND` is that parser.
# The modules are light at import (torch, transformers and TRL load inside run()).
RECIPES = {
    "sft": "training.sft",
    "reward": "reward.train",
    "dpo": "training.dpo",
    "rl": "training.rl",
}


def register(sub) -> None:
    import importlib

    p = sub.add_parser(
        "train",
        help="train SFT / reward / DPO / online-RL models on a snapshot (engineer, admin)",
        description=__doc__,
    )
    tsub = p.add_subparsers(dest="train_command", required=True, metavar="RECIPE")
    for module in RECIPES.values():
        r = importlib.import_module(module).make_parser(tsub, snapshot_type=id_arg("snapshot"))
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
    import importlib

    run = importlib.import_module(RECIPES[args.train_command]).run
    extra = {}
    if args.train_command == "rl":
        extra = {
            "reward": args.reward, "algo": args.algo, "answer_pattern": args.answer_pattern,
            "format_weight": args.format_weight, "watch": _watch(args),
        }  # fmt: skip
    from training.spec import Call, RunSpec

    spec = RunSpec.from_flags(
        args.train_command, snapshot_id=args.snapshot, base=args.base, preset=args.preset,
        flags=args.flags, **extra,
    )  # fmt: skip
    result = run(spec, Call(created_by=user_id, sessionmaker=sessionmaker(), json_output=args.json))
    if not _main_process():
        return 0  # rank 0 reports (and enters arenas) for the whole launch
    if args.train_command != "reward":
        from training.arena_entry import enter_auto_arenas, gold_check_summary, report

        # Arenas that auto-enter new checkpoints get its answers and tasks now (an RL run's
        # gold checks first, each against the base).
        entered = enter_auto_arenas(sessionmaker(), result["checkpoint_id"], progress=not args.json)
        report(entered)
        if result.get("gold_checks"):
            result["gold_checks"] = gold_check_summary(entered) or result["gold_checks"]
    if args.json:
        print_json(result)
    else:
        metrics = ", ".join(f"{k}={v}" for k, v in result["metrics"].items())
        print(f"run {result['run_id']} succeeded: checkpoint {result['checkpoint_id']}")
        print(metrics)
        for warning in (result.get("watch") or {}).get("warnings") or []:
            print(warning)
        for check in result.get("gold_checks") or []:
            print(f"gold check at step {check['step']}: checkpoint {check['checkpoint_id']}"
                  + (f", {check['tasks']} tasks against the base in arena {check['arena']}"
                     if check.get("arena") and check.get("tasks") is not None else ""))  # fmt: skip
    return 0


def _watch(args) -> dict | None:
    """rl: the over-optimisation watch's flags (training/watch.py) as one dict."""
    if args.train_command != "rl":
        return None
    from training.spec import WATCH_OWN

    return {k: getattr(args, k, None) for k in WATCH_OWN}


def _main_process() -> bool:
    """False on the other ranks of a torchrun / accelerate launch: rank 0 alone acts."""
    return int(os.environ.get("RANK", "0")) == 0


# --- --queue and --resume ----------------------------------------------------------------


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


def _queue_or_resume(args, user_id) -> int:
    from labeling.registry import run_queue, runs

    if args.queue and args.resume is not None:
        raise InvalidInput("--queue and --resume do not go together")
    if args.queue:
        if args.snapshot is None:
            raise InvalidInput("--queue needs --snapshot ID")
        from training.spec import RunSpec

        # every kind's fields are checked now against TRL's config class, not in the worker
        spec = RunSpec.from_flags(
            args.train_command, snapshot_id=args.snapshot, base=args.base, preset=args.preset,
            flags=args.flags, algo=getattr(args, "algo", None),
            reward=getattr(args, "reward", None),
            answer_pattern=getattr(args, "answer_pattern", None),
            format_weight=getattr(args, "format_weight", None), watch=_watch(args),
        ).validate()  # fmt: skip
        base_id, reward_id = spec.checkpoint_ids()
        with transaction() as s:
            run = runs.queue_training_run(
                s,
                kind=args.train_command,
                snapshot_id=args.snapshot,
                config=spec.to_config(),
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
    from training.spec import flags_from_fields
    from training.worker import run_claimed

    watch = {k: v for k, v in (_watch(args) or {}).items() if v is not None}
    result = run_claimed(
        run, sessionmaker(), resume=True, extra_flags=[*args.flags, *flags_from_fields(watch)],
        json_output=args.json,
    )  # fmt: skip
    if not _main_process():
        return 0
    if args.json:
        print_json(result)
    else:
        print(f"run {result['run_id']} succeeded: checkpoint {result['checkpoint_id']}")
    return 0

"""`rlhf train sft|reward`: train on a snapshot and register the checkpoint (engineer, admin).

    rlhf train sft --snapshot 3 [--base checkpoint:2] [--preset cpu-demo] --max_steps 2 --json
    rlhf train reward --snapshot 4 --learning_rate 1e-5 --json

Flags after the known ones are TRL config fields (SFTConfig / RewardConfig / trl.ModelConfig)
and pass through to the recipe (training/sft.py, reward/train.py). torch, transformers and
TRL load only when a training command runs.
"""

from __future__ import annotations

from app.cli.common import acting_user, print_json, sessionmaker, transaction
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
        help="train SFT / reward models on a snapshot (engineer, admin)",
        description=__doc__,
    )
    tsub = p.add_subparsers(dest="train_command", required=True, metavar="RECIPE")
    recipes = {
        "sft": ("supervised fine-tuning on an sft snapshot (TRL SFTTrainer)", "policy"),
        "reward": ("a reward model on a preference snapshot (TRL RewardTrainer)", "reward"),
    }
    for name, (help_text, what) in recipes.items():
        r = tsub.add_parser(
            name,
            help=help_text,
            description=f"{help_text}. Extra flags are TRL config fields: --max_steps 2.",
        )
        r.add_argument("--snapshot", type=int, required=True, help="snapshot id to train on")
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
        r.set_defaults(func=train, flags=[])
        _pass_through(r)


def train(args) -> int:
    with transaction() as s:
        user = acting_user(s, args, Role.engineer, Role.admin)
        user_id = user.id if user is not None else None
    if args.train_command == "sft":
        from training.sft import run
    else:
        from reward.train import run
    result = run(
        snapshot_id=args.snapshot,
        created_by=user_id,
        base=args.base,
        preset=args.preset,
        flags=args.flags,
        sessionmaker=sessionmaker(),
        json_output=args.json,
    )
    if args.json:
        print_json(result)
    else:
        metrics = ", ".join(f"{k}={v}" for k, v in result["metrics"].items())
        print(f"run {result['run_id']} succeeded: checkpoint {result['checkpoint_id']}")
        print(metrics)
    return 0

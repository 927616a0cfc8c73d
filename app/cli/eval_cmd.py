"""`rlhf eval reward`: a reward checkpoint's accuracy on a preference snapshot's split.

rlhf eval reward --checkpoint 4 --snapshot 3 --split heldout --json
-> {"accuracy": 0.75, "n": 8, "ties": 0, "mean_margin": ..., ...}
"""

from __future__ import annotations

from app.cli.common import acting_user, print_json, transaction
from labeling.models import Role


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate checkpoints on snapshots (engineer, admin)")
    esub = p.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    r = esub.add_parser(
        "reward", help="accuracy: how often reward(chosen) > reward(rejected) on a split"
    )
    r.add_argument("--checkpoint", type=int, required=True, help="reward checkpoint id")
    r.add_argument("--snapshot", type=int, required=True, help="preference snapshot id")
    r.add_argument("--split", default="heldout", choices=["heldout", "train"])
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=eval_reward)


def eval_reward(args) -> int:
    from reward.evaluate import evaluate_checkpoint

    with transaction() as s:
        acting_user(s, args, Role.engineer, Role.admin)
        out = evaluate_checkpoint(
            s, checkpoint_id=args.checkpoint, snapshot_id=args.snapshot, split=args.split
        )
    if args.json:
        print_json(out)
    else:
        accuracy = "-" if out["accuracy"] is None else f"{out['accuracy']:.3f}"
        print(
            f"accuracy {accuracy} on {out['n']} {out['split']} pairs of snapshot {out['snapshot_id']}"
        )
    return 0

"""`rlhf checkpoints list|show`: registered checkpoints and their lineage (engineer, admin)."""

from __future__ import annotations

from app.cli.common import acting_user, print_json, print_table, transaction
from labeling import training_records
from labeling.models import CheckpointKind, Role


def register(sub) -> None:
    p = sub.add_parser("checkpoints", help="trained checkpoints with their lineage")
    csub = p.add_subparsers(dest="checkpoints_command", required=True, metavar="ACTION")
    ls = csub.add_parser("list", help="checkpoints, newest first")
    ls.add_argument("--kind", choices=[k.value for k in CheckpointKind])
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_checkpoints)
    sh = csub.add_parser("show", help="one checkpoint: run, snapshot, parents, config, evaluation")
    sh.add_argument("id", type=int)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=show)


def list_checkpoints(args) -> int:
    with transaction() as s:
        acting_user(s, args, Role.engineer, Role.admin)
        rows = training_records.list_checkpoint_rows(s, kind=args.kind)
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            accuracy = (r["evaluation"] or {}).get("accuracy")
            r["heldout_acc"] = f"{accuracy:.3f}" if isinstance(accuracy, float) else None
            r["sha256"] = (r["snapshot_sha256"] or "")[:12] or None
        print_table(
            rows,
            [
                "id",
                "kind",
                "name",
                "parent_id",
                "run_id",
                "snapshot_id",
                "sha256",
                "heldout_acc",
                "created_at",
            ],
        )
    return 0


def show(args) -> int:
    with transaction() as s:
        acting_user(s, args, Role.engineer, Role.admin)
        out = training_records.describe_checkpoint(s, training_records.get_checkpoint(s, args.id))
    if args.json:
        print_json(out)
    else:
        for key, value in out.items():
            print(f"{key:16} {value}")
    return 0

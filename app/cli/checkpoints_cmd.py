"""`rlhf checkpoints list|show|add`: registered checkpoints and their lineage (engineer, admin).

`add` registers a model no run trained (the default policy, a local directory) so that it can
answer prompts and enter arenas as a baseline (training/add_model.py)."""

from __future__ import annotations

from app.cli.common import acting_user, id_arg, print_json, print_table, sessionmaker, transaction
from labeling.kinds import CheckpointKind


def register(sub) -> None:
    p = sub.add_parser("checkpoints", help="trained checkpoints with their lineage")
    csub = p.add_subparsers(dest="checkpoints_command", required=True, metavar="ACTION")
    ls = csub.add_parser("list", help="checkpoints, newest first")
    ls.add_argument("--kind", choices=[k.value for k in CheckpointKind])
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_checkpoints)
    sh = csub.add_parser("show", help="one checkpoint: run, snapshot, parents, config, evaluation")
    sh.add_argument("id", type=id_arg("checkpoint"))
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=show)
    ad = csub.add_parser("add", help="register a model no run trained (e.g. the default policy)")
    ad.add_argument("--model", required=True, help="default, a local directory or a hub id")
    ad.add_argument("--name", help="checkpoint name (default: from the model)")
    ad.add_argument("--kind", choices=[k.value for k in CheckpointKind], default="policy")
    ad.add_argument("--json", action="store_true")
    ad.set_defaults(func=add)


def list_checkpoints(args) -> int:
    from labeling.registry import runs

    with transaction() as s:
        acting_user(s, args, action="checkpoints")
        rows = runs.list_checkpoints(s, kind=args.kind)
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
                "parent",
                "run_id",
                "snapshot_id",
                "sha256",
                "heldout_acc",
                "created_at",
            ],
        )
    return 0


def show(args) -> int:
    from labeling.registry import training_records

    with transaction() as s:
        acting_user(s, args, action="checkpoints")
        out = training_records.describe_checkpoint(s, training_records.get_checkpoint(s, args.id))
    if args.json:
        print_json(out)
    else:
        for key, value in out.items():
            print(f"{key:16} {value}")
    return 0


def add(args) -> int:
    from training.add_model import add_model

    with transaction() as s:
        acting_user(s, args, action="checkpoints")
    out = add_model(sessionmaker(), model=args.model, name=args.name, kind=args.kind)
    if args.json:
        print_json(out)
    else:
        print(f"checkpoint {out['checkpoint_id']} ({out['kind']}): {out['name']} at {out['path']}")
    return 0

"""`rlhf checkpoints list|show|add|rename|note|delete|gc|merge`: registered checkpoints and
their lineage (engineer, admin).

`add` registers a model no run trained (the default policy, a local directory) so that it can
answer prompts and enter arenas as a baseline (training/add_model.py). rename / note / delete /
gc look after them (labeling/registry/checkpoint_care.py): delete refuses what lineage, a run
or an arena still needs; gc frees directories nothing points at and the resume points of runs
that cannot resume. LoRA runs store an adapter on their base (`storage` adapter in list and
show); merge replaces it by the full model, in place (training/checkpoint.py merge_into)."""

from __future__ import annotations

from app.cli.common import (
    acting_user,
    human_size,
    id_arg,
    print_json,
    print_table,
    sessionmaker,
    transaction,
)
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
    rn = csub.add_parser("rename", help="change the name people see (the directory stays)")
    rn.add_argument("id", type=id_arg("checkpoint"))
    rn.add_argument("name")
    rn.set_defaults(func=rename)
    nt = csub.add_parser("note", help="set a checkpoint's note ('' clears it)")
    nt.add_argument("id", type=id_arg("checkpoint"))
    nt.add_argument("note")
    nt.set_defaults(func=note)
    dl = csub.add_parser(
        "delete",
        help="delete a checkpoint and its files (refused while lineage or an arena needs it)",
    )
    dl.add_argument("id", type=id_arg("checkpoint"))
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(func=delete)
    gc = csub.add_parser(
        "gc", help="remove checkpoint folders no record names and finished runs' resume points"
    )
    gc.add_argument("--dry-run", action="store_true", help="list what would go, remove nothing")
    gc.add_argument("--json", action="store_true")
    gc.set_defaults(func=collect_garbage)
    mg = csub.add_parser(
        "merge", help="store a LoRA adapter checkpoint as its full model (same id and path)"
    )
    mg.add_argument("id", type=id_arg("checkpoint"))
    mg.add_argument("--json", action="store_true")
    mg.set_defaults(func=merge)


def list_checkpoints(args) -> int:
    from labeling.registry import runs, training_records

    with transaction() as s:
        acting_user(s, args, action="checkpoints")
        rows = runs.list_checkpoints(s, kind=args.kind)
        for r in rows:  # adapter / full / merged, and the bytes on disk
            r.update(training_records.storage_info(training_records.get_checkpoint(s, r["id"])))
    if args.json:
        print_json(rows)
    else:
        for r in rows:
            accuracy = (r["evaluation"] or {}).get("accuracy")
            r["heldout_acc"] = f"{accuracy:.3f}" if isinstance(accuracy, float) else None
            r["sha256"] = (r["snapshot_sha256"] or "")[:12] or None
            r["size"] = human_size(r["bytes"]) if r["storage"] else None
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
                "storage",
                "size",
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


def rename(args) -> int:
    from labeling.registry import checkpoint_care

    with transaction() as s:
        acting_user(s, args, action="checkpoints")
        checkpoint = checkpoint_care.rename_checkpoint(s, args.id, args.name)
        print(f"checkpoint {checkpoint.id} is now named {checkpoint.name!r}")
    return 0


def note(args) -> int:
    from labeling.registry import checkpoint_care

    with transaction() as s:
        acting_user(s, args, action="checkpoints")
        checkpoint = checkpoint_care.note_checkpoint(s, args.id, args.note)
        print(f"checkpoint {checkpoint.id}: note {'set' if checkpoint.note else 'cleared'}")
    return 0


def delete(args) -> int:
    from labeling.registry import checkpoint_care

    with transaction() as s:
        acting_user(s, args, action="checkpoints")
        directory = checkpoint_care.delete_checkpoint(s, args.id)
    # the row is gone (committed); now its files: a crash here leaves a folder gc removes
    freed = sum(checkpoint_care.remove_dirs([directory] if directory else []).values())
    out = {"checkpoint_id": args.id, "removed": str(directory) if directory else None,
           "freed_bytes": freed}  # fmt: skip
    if args.json:
        print_json(out)
    else:
        where = (
            f", removed {directory} ({human_size(freed)})"
            if directory
            else " (its files are not under $RLHF_HOME/checkpoints: left alone)"
        )
        print(f"checkpoint {args.id} deleted{where}")
    return 0


def collect_garbage(args) -> int:
    from labeling.registry import checkpoint_care

    with transaction() as s:
        acting_user(s, args, action="checkpoints")
        garbage = checkpoint_care.find_garbage(s)
    if args.dry_run:
        sizes = {p: checkpoint_care.size_of(p) for p in garbage.paths}
    else:  # each folder is walked once: its size is taken as it is removed
        sizes = checkpoint_care.remove_dirs(garbage.paths)
    freed = 0 if args.dry_run else sum(sizes.values())
    out = {
        "dry_run": args.dry_run,
        "orphan_dirs": [str(p) for p in garbage.orphan_dirs],
        "resume_points": [str(p) for p in garbage.resume_points],
        "bytes": sum(sizes.values()),
        "freed_bytes": freed,
    }
    if args.json:
        print_json(out)
    else:
        verb = "would remove" if args.dry_run else "removed"
        for path in garbage.paths:
            print(f"{verb} {path} ({human_size(sizes.get(path, 0))})")
        print(f"{verb} {len(garbage.paths)} folders, {human_size(sum(sizes.values()))}")
    return 0


def merge(args) -> int:
    from labeling.registry import checkpoint_care

    with transaction() as s:
        acting_user(s, args, action="checkpoints")
        plan = checkpoint_care.merge_plan(s, args.id)
    if plan.storage == "adapter":  # torch only when there is a model to merge
        from training.checkpoint import merge_into

        def write(source, target):
            merge_into(source, target, kind=plan.kind)
    else:
        write = None
    out = checkpoint_care.replace_with_merged(plan, write)
    if args.json:
        print_json(out)
    elif out["merged"]:
        print(
            f"checkpoint {args.id} merged: its adapter on {plan.base} is now the full model at "
            f"{out['path']} ({human_size(out['bytes_before'])} -> "
            f"{human_size(out['bytes_after'])})"
        )
    else:
        print(f"checkpoint {args.id} is already a full model ({out['storage']}): nothing to merge")
    return 0

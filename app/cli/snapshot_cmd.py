"""`rlhf snapshot create|list|show`: freeze a project's labels into Parquet for training."""

from __future__ import annotations

from app.cli.common import acting_user, id_arg, print_json, print_table, transaction
from labeling.kinds import Origin, SnapshotKind


def register(sub) -> None:
    p = sub.add_parser("snapshot", help="immutable Parquet snapshots of the labels (for training)")
    ssub = p.add_subparsers(dest="snapshot_command", required=True, metavar="ACTION")
    cr = ssub.add_parser(
        "create",
        help="freeze a project's labels (admin, engineer); unchanged labels give the same snapshot",
    )
    cr.add_argument("--project", required=True)
    cr.add_argument("--kind", required=True, choices=[k.value for k in SnapshotKind])
    cr.add_argument(
        "--include-gold", action="store_true", help="also take labels on gold (quality-check) tasks"
    )
    cr.add_argument(
        "--origin", choices=[o.value for o in Origin], help="only labels of this origin"
    )
    cr.add_argument("--json", action="store_true")
    cr.set_defaults(func=create)
    ls = ssub.add_parser("list", help="list snapshots, newest first")
    ls.add_argument("--project")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_snapshots)
    sh = ssub.add_parser("show", help="one snapshot: counts, stats, files")
    sh.add_argument("id", type=id_arg("snapshot"))
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=show)


def create(args) -> int:
    from labeling import projects, snapshots

    with transaction() as s:
        user = acting_user(s, args, action="snapshot.create")
        project = projects.get_project(s, args.project)
        snapshot, created = snapshots.create_snapshot(
            s,
            project=project,
            kind=args.kind,
            created_by=user.id if user is not None else None,
            include_gold=args.include_gold,
            origin=args.origin,
        )
        out = {**snapshots.describe(s, snapshot), "created": created}
    if args.json:
        print_json(out)
    else:
        verb = "created" if created else "unchanged, existing"
        splits = out["splits"]
        print(
            f"{verb} snapshot {out['id']} ({out['kind']}, {out['rows']} rows: "
            f"{splits['train']} train, {splits['heldout']} heldout)"
        )
        print(f"sha256 {out['sha256']}")
        print(f"path   {out['path']}")
    return 0


def list_snapshots(args) -> int:
    from labeling import projects, snapshots

    with transaction() as s:
        acting_user(s, args, action="snapshot.read")
        project = projects.get_project(s, args.project) if args.project else None
        rows = [
            snapshots.describe(s, snap) for snap in snapshots.list_snapshots(s, project=project)
        ]
    if args.json:
        print_json(rows)
    else:
        table = [
            {
                **r,
                "train": r["splits"]["train"],
                "heldout": r["splits"]["heldout"],
                "sha256": r["sha256"][:12],
            }
            for r in rows
        ]
        print_table(
            table, ["id", "project", "kind", "rows", "train", "heldout", "sha256", "created_at"]
        )
    return 0


def show(args) -> int:
    from labeling import snapshots

    with transaction() as s:
        acting_user(s, args, action="snapshot.read")
        out = snapshots.describe(s, snapshots.get_snapshot(s, args.id))
    if args.json:
        print_json(out)
    else:
        for key, value in out.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
            print(f"{key:>10}: {value}")
    return 0

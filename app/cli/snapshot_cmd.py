"""`rlhf snapshot create|list|show`: freeze a project's labels into Parquet for training."""

from __future__ import annotations

from app.cli.common import acting_user, id_arg, print_json, print_table, transaction
from labeling.kinds import Origin, SnapshotKind

# labeling.snapshot_quality.AGGREGATES and LEFT_OUT, not imported: `rlhf --help` stays light
AGGREGATES = ("none", "majority", "dawid-skene")
LEFT_OUT = ("excluded_labelers", "rejected", "low_competence", "competence_unmeasured", "vote_ties")


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
    quality = cr.add_argument_group(
        "label quality", "which labels to trust and how to combine overlap (see `rlhf quality`)"
    )
    quality.add_argument(
        "--aggregate",
        choices=AGGREGATES,
        default="none",
        help="none: every label its own row (default); majority / dawid-skene: one row per "
        "item with a confidence column (preference and kto snapshots of pairwise projects)",
    )
    quality.add_argument(
        "--min-competence",
        type=float,
        metavar="X",
        help="drop the labels of labelers whose Dawid-Skene competence is below X (0..1)",
    )
    quality.add_argument(
        "--exclude-labelers",
        metavar="A,B",
        default="",
        help="drop these labelers' labels (comma-separated names)",
    )
    rejected = quality.add_mutually_exclusive_group()
    rejected.add_argument(
        "--exclude-rejected",
        dest="exclude_rejected",
        action="store_true",
        default=True,
        help="leave out labels a reviewer rejected (default)",
    )
    rejected.add_argument(
        "--include-rejected",
        dest="exclude_rejected",
        action="store_false",
        help="keep rejected labels (relabels still apply)",
    )
    quality.add_argument(
        "--confidence-margin",
        action="store_true",
        help="with --aggregate: margin = the agreeing labels' median margin x confidence",
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
            aggregate=args.aggregate,
            min_competence=args.min_competence,
            exclude_labelers=[n for n in args.exclude_labelers.split(",") if n.strip()],
            exclude_rejected=args.exclude_rejected,
            confidence_margin=args.confidence_margin,
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
        if "aggregate" in out["filters"]:  # a quality-aware snapshot: what was left out
            stats = out["stats"]
            dropped = ", ".join(
                f"{key.replace('_', ' ')} {stats[key]}" for key in LEFT_OUT if stats.get(key)
            )
            print(f"labels {stats['labels']} kept; left out: {dropped or 'none'}")
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

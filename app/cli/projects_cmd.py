"""`rlhf projects create|list|show`."""

from __future__ import annotations

from pathlib import Path

from app.cli.common import acting_user, print_json, print_table, transaction
from labeling.kinds import ProjectKind


def register(sub) -> None:
    p = sub.add_parser("projects", help="labeling projects")
    psub = p.add_subparsers(dest="projects_command", required=True, metavar="ACTION")
    cr = psub.add_parser("create", help="create a project (admin)")
    cr.add_argument("name")
    cr.add_argument("--kind", required=True, choices=[k.value for k in ProjectKind])
    cr.add_argument("--overlap", type=int, help="labels wanted per item (default 1)")
    cr.add_argument(
        "--guidelines", type=Path, help="a Markdown file shown to labelers (UTF-8, at most 256 kB)"
    )
    cr.add_argument(
        "--lease-seconds",
        type=int,
        help="how long a claimed task stays reserved (10 s to 7 days; default 1800)",
    )
    cr.add_argument("--gold-rate", type=float, help="share of claims that serve a gold item")
    cr.add_argument("--heldout-fraction", type=float, help="share of prompts held out (by hash)")
    cr.add_argument("--rank-k", type=int, help="answers per ranking task")
    cr.add_argument("--json", action="store_true")
    cr.set_defaults(func=create)
    ls = psub.add_parser("list", help="list projects")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_projects)


def row(p) -> dict:
    return {
        "id": p.id,
        "name": p.name,
        "kind": p.kind.value,
        "overlap": p.overlap,
        "lease_seconds": p.lease_seconds,
        "gold_rate": p.gold_rate,
        "heldout_fraction": p.heldout_fraction,
        "rank_k": p.rank_k,
        "created_at": p.created_at,
    }


def create(args) -> int:
    from labeling import projects

    guidelines = projects.read_guidelines_file(args.guidelines) if args.guidelines else None
    with transaction() as s:
        acting_user(s, args, action="projects.manage")
        project = projects.create_project(
            s,
            name=args.name,
            kind=args.kind,
            overlap=args.overlap,
            guidelines=guidelines,
            lease_seconds=args.lease_seconds,
            gold_rate=args.gold_rate,
            heldout_fraction=args.heldout_fraction,
            rank_k=args.rank_k,
        )
        out = row(project)
    if args.json:
        print_json(out)
    else:
        print(f"created project {out['name']} ({out['kind']}, overlap {out['overlap']})")
    return 0


def list_projects(args) -> int:
    from labeling import projects

    with transaction() as s:
        acting_user(s, args, action="projects.list")
        rows = [row(p) for p in projects.list_projects(s)]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["id", "name", "kind", "overlap", "lease_seconds", "gold_rate"])
    return 0

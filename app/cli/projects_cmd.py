"""`rlhf projects create|edit|list`.

rlhf projects create math --kind sft --answer-pattern 'Answer: ([0-9.]+)'
rlhf projects edit math --answer-pattern ''      (an empty pattern clears it)
"""

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
    _settings_flags(cr)
    cr.add_argument("--json", action="store_true")
    cr.set_defaults(func=create)
    ed = psub.add_parser("edit", help="change a project's settings (admin)")
    ed.add_argument("name")
    _settings_flags(ed)
    ed.add_argument("--json", action="store_true")
    ed.set_defaults(func=edit)
    ls = psub.add_parser("list", help="list projects")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_projects)


def _settings_flags(cr) -> None:
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
    cr.add_argument(
        "--answer-pattern",
        help="regex whose first group is a completion's final answer, for verifiable rewards "
        "(default: \\boxed{...}, else the last number; '' clears it)",
    )


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
        "answer_pattern": p.answer_pattern,
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
            answer_pattern=args.answer_pattern,
        )
        out = row(project)
    if args.json:
        print_json(out)
    else:
        print(f"created project {out['name']} ({out['kind']}, overlap {out['overlap']})")
    return 0


SETTING_FLAGS = ("overlap", "lease_seconds", "gold_rate", "heldout_fraction", "rank_k",
                 "answer_pattern")  # fmt: skip


def edit(args) -> int:
    from labeling import projects

    values = {k: getattr(args, k) for k in SETTING_FLAGS if getattr(args, k) is not None}
    if args.guidelines is not None:
        values["guidelines"] = projects.read_guidelines_file(args.guidelines)
    with transaction() as s:
        acting_user(s, args, action="projects.manage")
        project = projects.get_project(s, args.name)
        changed = {k: v for k, v in values.items() if getattr(project, k) != v}
        projects.update_project(s, project, **changed)
        out = {**row(project), "changed": sorted(changed)}
    if args.json:
        print_json(out)
    else:
        what = ", ".join(out["changed"]) or "nothing"
        print(f"project {out['name']}: changed {what}")
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

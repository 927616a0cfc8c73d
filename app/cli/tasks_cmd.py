"""`rlhf tasks status --project NAME`."""

from __future__ import annotations

from app.cli.common import acting_user, print_json, transaction


def register(sub) -> None:
    p = sub.add_parser("tasks", help="the labeling queue")
    tsub = p.add_subparsers(dest="tasks_command", required=True, metavar="ACTION")
    st = tsub.add_parser("status", help="tasks open and done, labels, live leases")
    st.add_argument("--project", required=True)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=status)


def status(args) -> int:
    from labeling import projects

    with transaction() as s:
        acting_user(s, args, action="tasks.status")
        info = projects.task_status(s, projects.get_project(s, args.project))
    if args.json:
        print_json(info)
    else:
        for key, value in info.items():
            print(f"{key:>14}: {value}")
    return 0

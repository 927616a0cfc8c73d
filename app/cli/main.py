"""`rlhf`: the command line. Heavy libraries (torch, transformers) load only inside the
commands that need them, so `rlhf --help` stays fast."""

from __future__ import annotations

import argparse
import sys

from app.cli import (
    arena_cmd,
    checkpoints_cmd,
    db_cmd,
    demo_cmd,
    eval_cmd,
    generate_cmd,
    import_cmd,
    leaderboard_cmd,
    projects_cmd,
    serve_cmd,
    snapshot_cmd,
    tasks_cmd,
    train_cmd,
    users_cmd,
    worker_cmd,
)

COMMANDS = [
    demo_cmd,
    serve_cmd,
    db_cmd,
    users_cmd,
    projects_cmd,
    tasks_cmd,
    import_cmd,
    snapshot_cmd,
    train_cmd,
    checkpoints_cmd,
    eval_cmd,
    generate_cmd,
    arena_cmd,
    leaderboard_cmd,
    worker_cmd,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlhf",
        description="RLHF feedback platform: labels in SQL, snapshots, training, leaderboards.",
    )
    parser.add_argument(
        "--user", help="the account you act as (default: $RLHF_USER); its role is checked"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from labeling.errors import RLHFError

    try:
        return args.func(args) or 0
    except RLHFError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

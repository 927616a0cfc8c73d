"""`rlhf`: the command line. Each *_cmd module only registers its arguments at import; what a
command uses (the ORM, pandas, the ratings maths, torch) loads inside its function, so
`rlhf --help` stays fast and a command loads only its own modules (tests/app/cli/test_cli_basics.py,
bench/cli_startup.py)."""

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
    probe_cmd,
    projects_cmd,
    quality_cmd,
    queue_cmd,
    review_cmd,
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
    probe_cmd,
    arena_cmd,
    leaderboard_cmd,
    quality_cmd,
    review_cmd,
    queue_cmd,
    worker_cmd,
]


class Parser(argparse.ArgumentParser):
    """Descriptions and epilogs keep the line breaks they were written with (command lists,
    examples); every subcommand's parser is one of these (add_subparsers copies the class)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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


# Commands that write temp directories under $RLHF_HOME (or run jobs that do): stale ones
# left by a killed predecessor are removed before they start (labeling/tempdirs.py).
WRITERS = {
    "snapshot", "train", "checkpoints", "worker", "serve", "demo", "generate", "eval", "probe",
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from labeling.errors import RLHFError

    try:
        # Parsing is inside the net: an id type may answer "no snapshot with id N" (common.py).
        args = build_parser().parse_args(argv)
        if args.command in WRITERS:
            from labeling.settings import load_settings
            from labeling.tempdirs import clean_stale_temp_dirs

            clean_stale_temp_dirs(load_settings().home)
        code = args.func(args) or 0
        # a torchrun / accelerate launch that succeeded: every rank closes its process group
        if code == 0 and "torch.distributed" in sys.modules:
            from training.launch import leave_process_group

            leave_process_group()
        return code
    except RLHFError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last net: one sentence, never a traceback
        return _unexpected(exc)


def _unexpected(exc: Exception) -> int:
    import os

    from labeling.errors import describe_failure
    from labeling.settings import load_settings

    if os.environ.get("RLHF_DEBUG") == "1":
        raise exc
    message = describe_failure(exc, database_url=load_settings().database_url)
    if message is None and type(exc).__module__.startswith("alembic"):
        message = str(exc)  # alembic's CommandError reads well ("Can't locate revision ...")
    if message is None:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        message = (
            f"unexpected {type(exc).__name__}{': ' + first if first else ''} "
            "(set RLHF_DEBUG=1 and run again to see the traceback)"
        )
    print(f"error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

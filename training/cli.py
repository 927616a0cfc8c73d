"""Running a recipe from a command line: the arguments every recipe's parser has (each
recipe's make_parser adds its own; `rlhf train KIND` reuses the same parser), who runs it,
and printing the result (rank 0 only)."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from typing import Any

from training.launch import is_main_process
from training.spec import DEFAULT_PRESET


@contextmanager
def stdout_to_stderr(enabled: bool):
    """With --json, stdout carries only the final JSON: the trainer's prints go to stderr."""
    import sys
    from contextlib import redirect_stdout

    if not enabled:
        yield
        return
    with redirect_stdout(sys.stderr):
        yield


class Timer:
    def __init__(self):
        self.start = time.monotonic()

    def seconds(self) -> float:
        return round(time.monotonic() - self.start, 3)


def default_sessionmaker():
    from labeling.db import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine())


def engineer_id(name: str | None, sessionmaker=None) -> int:
    """The id of the engineer or admin running a recipe directly (--user or RLHF_USER)."""
    import os

    from labeling.accounts.users import require_role
    from labeling.errors import PermissionDenied
    from labeling.models import Role

    name = name or os.environ.get("RLHF_USER")
    if not name:
        raise PermissionDenied("who is running this? set RLHF_USER=NAME or pass --user NAME")
    with (sessionmaker or default_sessionmaker()).begin() as s:
        return require_role(s, name, Role.engineer, Role.admin).id


def print_result(result: dict[str, Any], as_json: bool) -> None:
    """Rank 0 prints (the other ranks of a multi-process launch return the same result)."""
    import json

    if not is_main_process():
        return
    if as_json:
        json.dump(result, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    metrics = ", ".join(f"{k}={v}" for k, v in result["metrics"].items())
    print(f"run {result['run_id']} succeeded: checkpoint {result['checkpoint_id']} ({metrics})")


def recipe_parser(
    kind: str,
    module: str,
    doc: str | None,
    subparsers=None,
    *,
    help: str,
    base_help: str,
    snapshot_type=int,
) -> argparse.ArgumentParser:
    """A recipe's parser with the arguments every recipe has (everything after the known
    ones is TRL config). Standalone (`python -m training.sft`) when subparsers is None;
    else the `rlhf train NAME` subcommand, where --snapshot may be left out (--resume RUN_ID
    names the run instead) and --user belongs to `rlhf` itself."""
    standalone = subparsers is None
    if standalone:
        parser = argparse.ArgumentParser(
            prog=f"python -m {module}",
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    else:
        parser = subparsers.add_parser(
            kind,
            help=help,
            description=f"{help}. Extra flags are TRL config fields: --max_steps 2.",
            # the docstring's summary and command lines, with their line breaks
            epilog="\n\n".join((doc or "").split("\n\n")[:2]) or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    parser.add_argument(
        "--snapshot",
        type=snapshot_type,
        required=standalone,
        help="snapshot id to train on" + ("" if standalone else " (not with --resume)"),
    )
    parser.add_argument(
        "--base", help=f"{base_help}: default, checkpoint:ID, a directory or a hub id"
    )
    parser.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        help="cpu-demo (default), gpu, or a YAML file whose keys are TRL config fields",
    )
    parser.add_argument("--json", action="store_true", help='print {"run_id", ...} at the end')
    if standalone:
        parser.add_argument("--user", help="the account you act as (default: $RLHF_USER)")
    return parser


def recipe_main(
    kind: str, parser: argparse.ArgumentParser, run, argv: list[str] | None, *own: str
) -> int:
    """`python -m training.KIND ...`: parse, check the engineer, run, print (rank 0). `own`
    names the recipe's own arguments that go into its RunSpec (rl: reward, algo, ...)."""
    from labeling.errors import RLHFError
    from training.spec import WATCH_OWN, Call, RunSpec

    args, flags = parser.parse_known_args(argv)
    named = {name: getattr(args, name) for name in own if name != "watch"}
    if "watch" in own:  # rl: the watch's settings, one dict
        named["watch"] = {k: getattr(args, k, None) for k in WATCH_OWN}
    try:
        user = engineer_id(args.user)
        spec = RunSpec.from_flags(
            kind, snapshot_id=args.snapshot, base=args.base, preset=args.preset, flags=flags,
            **named,
        )  # fmt: skip
        result = run(spec, Call(created_by=user, json_output=args.json))
    except RLHFError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_result(result, args.json)
    return 0


def parser_maker(kind: str, module: str, doc: str | None, **texts):
    """The recipe's make_parser(subparsers=None, **kwargs): see recipe_parser."""

    def make_parser(subparsers=None, **kwargs) -> argparse.ArgumentParser:
        return recipe_parser(kind, module, doc, subparsers, **texts, **kwargs)

    return make_parser

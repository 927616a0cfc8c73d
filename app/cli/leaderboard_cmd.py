"""`rlhf leaderboard`: Bradley–Terry ratings with confidence intervals (every role).

    rlhf leaderboard --project my-arena [--bootstrap 200] [--ties davidson] [--style] --json
    rlhf leaderboard --battles arena_dump.parquet          # columns model_a, model_b, winner
    rlhf leaderboard --battles votes.csv --skip-invalid    # leave out bad rows, listed on stderr
-> [{"model": ..., "rating": 1032.4, "ci_low": ..., "ci_high": ..., "rank": 1, "votes": 812}, ...]

The maths is labeling/ratings/leaderboard.py; votes on an arena project become battles in
labeling/arena. Unranked models (too few votes, not connected to the others) are listed
with rating null and a note on stderr. A disconnected battle graph ranks the group with the
most battles (or the anchor's); the note names the groups left unranked. A --battles file is
pure computation: it needs no account and no database (--project reads the votes, so it
checks the caller's role).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from app.cli.common import acting_user, int_in, print_json, print_table, transaction
from labeling.errors import InvalidInput

if TYPE_CHECKING:  # numpy, scipy and pandas load when a leaderboard is computed
    from labeling.ratings import leaderboard as lb


def register(sub) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="Bradley–Terry ratings with confidence intervals, from an arena or a battles file",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--project", help="an arena project: its labelers' votes")
    source.add_argument(
        "--battles", metavar="FILE",
        help="Parquet, JSONL or CSV with model_a, model_b, winner "
        "(model_a, model_b, tie, tie (bothbad)); optional category",
    )  # fmt: skip
    p.add_argument("--skip-invalid", action="store_true",
                   help="with --battles: leave out bad rows (a model against itself, an unknown "
                   "winner, a missing name) and list them on stderr, instead of refusing the file")  # fmt: skip
    p.add_argument(
        "--bootstrap", type=int_in(0, 100_000), default=100, help="bootstrap rounds (default 100)"
    )
    p.add_argument("--ci", choices=["bootstrap", "sandwich"], default="bootstrap",
                   help="confidence intervals: bootstrap, or the sandwich estimator (fast)")  # fmt: skip
    p.add_argument("--ties", choices=["half", "davidson"], default="half",
                   help="a tie counts as half a win (default), or Davidson's tie model")  # fmt: skip
    p.add_argument("--anchor", help="pin this model's rating (default: centre the scale)")
    p.add_argument("--anchor-rating", type=float)  # default: the maths' DEFAULT_ANCHOR_RATING
    p.add_argument(
        "--min-votes", type=int_in(1, 10**9), default=1, help="rank models with this many votes"
    )
    p.add_argument("--style", action="store_true",
                   help="length/style-controlled ratings (needs the answers' text: --project, or "
                   "conv_metadata in the file)")  # fmt: skip
    p.add_argument("--category", help="only battles of this category")
    p.add_argument("--by-category", action="store_true", help="one table per category")
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=leaderboard)


def _fit_kwargs(args) -> dict:
    from labeling.ratings import leaderboard as lb

    if args.bootstrap < 0:
        raise InvalidInput("--bootstrap must be 0 or more")
    if args.min_votes < 1:
        raise InvalidInput("--min-votes must be at least 1")
    return dict(
        bootstrap=args.bootstrap, ci=args.ci, ties=args.ties, anchor=args.anchor,
        anchor_rating=lb.DEFAULT_ANCHOR_RATING if args.anchor_rating is None
        else args.anchor_rating, min_votes=args.min_votes, style=args.style,
        seed=args.seed,
    )  # fmt: skip


def leaderboard(args) -> int:
    from labeling.ratings import leaderboard as lb

    kwargs = _fit_kwargs(args)
    if args.skip_invalid and not args.battles:
        raise InvalidInput("--skip-invalid applies to a --battles file only")
    skipped = None
    if args.project:  # the votes are in the database: a known account of any role
        from labeling import arena
        from labeling.projects import get_project

        with transaction() as s:
            acting_user(s, args, action="leaderboard")
            project = get_project(s, args.project)
            arena._check_arena(project)
            battles = arena.battles(s, project, with_style=args.style).battles
    else:  # a file: pure computation, no account and no database
        loaded = lb.load_battles(args.battles, skip_invalid=args.skip_invalid)
        battles, skipped = loaded.battles, loaded.skipped_message()
    if args.category:
        from labeling.arena import only_category

        battles = only_category(battles, args.category)
    boards = lb.fit_by_category(battles, **kwargs) if args.by_category else {
        "all": lb.fit(battles, **kwargs)
    }  # fmt: skip
    if args.json:
        if args.by_category:
            print_json({name: board.to_json() for name, board in boards.items()})
        else:
            print_json(boards["all"].to_json())
    else:
        for name, board in boards.items():
            if args.by_category:
                print(f"\n== {name}")
            _print_board(board)
    if skipped:  # on stderr: --json output keeps its contract
        print(f"note: {skipped}", file=sys.stderr)
    for name, board in boards.items():
        for message in board.messages:
            print(f"note{'' if name == 'all' else f' ({name})'}: {message}", file=sys.stderr)
    return 0


def _print_board(board: lb.Leaderboard) -> None:
    rows = []
    for r in board.rows:
        rows.append({
            "rank": r.rank, "model": r.model,
            "rating": None if r.rating is None else f"{r.rating:.1f}",
            "95% CI": None if r.ci_low is None else f"{r.ci_low:.1f} .. {r.ci_high:.1f}",
            "votes": r.votes, "W-L-T": f"{r.wins}-{r.losses}-{r.ties}",
            "note": r.note,
        })  # fmt: skip
    print_table(rows, ["rank", "model", "rating", "95% CI", "votes", "W-L-T", "note"])

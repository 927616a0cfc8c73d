"""`rlhf leaderboard`: Bradley–Terry ratings with confidence intervals (every role).

    rlhf leaderboard --project my-arena [--bootstrap 200] [--ties davidson] [--style] --json
    rlhf leaderboard --battles arena_dump.parquet          # columns model_a, model_b, winner
    rlhf leaderboard --battles votes.csv --skip-invalid    # leave out bad rows, listed on stderr
-> [{"model": ..., "rating": 1032.4, "ci_low": ..., "ci_high": ..., "rank": 1, "votes": 812}, ...]
    rlhf leaderboard --battles votes.csv --robustness --json [--provisional-votes 30]
-> {"models": [{...the fields above, "flip_votes": 14, "flip_with": ..., "flip_method": "greedy",
                "provisional": false, "provisional_reason": null, "battle_share": 0.08}, ...],
    "warnings": ["rank 1 (x) rests on 3 votes: ...", ...], "votes": 3012, "sampling_ratio": 1.4}

--robustness (labeling/ratings/robustness.py): flip votes are the fewest votes whose removal
leaves a model no longer above the next one (greedy upper bound, exact on small data);
models under --provisional-votes votes are provisional: listed after the ranked ones, rank null. Ranks are then recounted among the
established models. Warnings go to stderr in the text output.

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
    p.add_argument("--robustness", action="store_true",
                   help="add flip votes (votes whose removal swaps a model with the next one), "
                   "provisional models and each model's share of the battles")  # fmt: skip
    p.add_argument("--provisional-votes", type=int_in(1, 10**9), default=30, metavar="N",
                   help="with --robustness: models with fewer votes are provisional (default 30)")  # fmt: skip
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
    robust = {}
    if args.robustness:
        from labeling.ratings.robustness import robustness

        robust = {
            name: robustness(board, provisional_votes=args.provisional_votes)
            for name, board in boards.items()
        }
    if args.json:

        def shown(name):
            return robust[name].to_json() if robust else boards[name].to_json()

        if args.by_category:
            print_json({name: shown(name) for name in boards})
        else:
            print_json(shown("all"))
    else:
        for name, board in boards.items():
            if args.by_category:
                print(f"\n== {name}")
            if robust:
                _print_robust(robust[name])
            else:
                _print_board(board)
    if skipped:  # on stderr: --json output keeps its contract
        print(f"note: {skipped}", file=sys.stderr)
    for name, board in boards.items():
        for message in board.messages:
            print(f"note{'' if name == 'all' else f' ({name})'}: {message}", file=sys.stderr)
    for name, report in robust.items():
        for warning in report.warnings:
            print(f"warning{'' if name == 'all' else f' ({name})'}: {warning}", file=sys.stderr)
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


def _print_robust(report) -> None:
    rows = []
    for r in report.rows:
        rows.append({
            "rank": r.rank, "model": r.model,
            "rating": None if r.rating is None else f"{r.rating:.1f}",
            "95% CI": None if r.ci_low is None else f"{r.ci_low:.1f} .. {r.ci_high:.1f}",
            "votes": r.votes, "share": f"{r.battle_share:.1%}",
            "flip votes": r.flip_votes if r.method != "greedy" or r.flip_votes is None
            else f"<= {r.flip_votes}",
            "note": f"provisional: {r.provisional_reason}" if r.provisional else r.note,
        })  # fmt: skip
    print_table(rows, ["rank", "model", "rating", "95% CI", "votes", "share", "flip votes", "note"])

"""`rlhf arena ...`: checkpoints answer the same prompts and labelers judge them blind.

rlhf projects create my-arena --kind arena
rlhf arena add-prompts --project my-arena --from demo-write --split heldout
rlhf arena enter --project my-arena --checkpoint 7      # generate answers, then schedule
                                                        # (progress per batch on stderr)
rlhf arena schedule --project my-arena                  # pair every contestant
rlhf arena config --project my-arena --opponents all --no-auto-enter
rlhf arena config --project my-arena --cpu-max-prompts 0   # on CPU too, answer every prompt
rlhf arena status --project my-arena --json
rlhf arena judge --project my-arena --reward 4 --json   # reward model vs the labelers
"""

from __future__ import annotations

import argparse

from app.cli.common import (
    acting_user,
    id_arg,
    int_in,
    print_json,
    print_table,
    sessionmaker,
    transaction,
)

# labeling.arena and labeling.projects (the ORM, the ratings maths) load inside the actions:
# `rlhf --help` and the other commands do not pay for them.


def register(sub) -> None:
    p = sub.add_parser("arena", help="checkpoints answer the same prompts; labelers judge blind")
    asub = p.add_subparsers(dest="arena_command", required=True, metavar="ACTION")

    ap = asub.add_parser("add-prompts", help="copy another project's prompts into the arena")
    ap.add_argument("--project", required=True, help="the arena project")
    ap.add_argument("--from", dest="source", required=True, help="the project to copy from")
    ap.add_argument("--split", default="heldout", choices=["heldout", "train", "all"])
    ap.add_argument("--limit", type=int_in(1, 10**9))
    ap.add_argument("--json", action="store_true")
    ap.set_defaults(func=add_prompts)

    cf = asub.add_parser("config", help="show or change the arena's settings")
    cf.add_argument("--project", required=True)
    cf.add_argument("--auto-enter", action=argparse.BooleanOptionalAction, default=None,
                    help="new policy checkpoints answer the prompts and enter on their own")  # fmt: skip
    cf.add_argument("--opponents", choices=["best", "all"])
    cf.add_argument("--include-human", action=argparse.BooleanOptionalAction, default=None,
                    help="labelers' demonstrations of these prompts enter as 'human'")  # fmt: skip
    cf.add_argument("--max-prompts", type=int, help="at most this many prompts per pair")
    cf.add_argument("--min-pair-votes", type=int, help="votes every pair gets first")
    cf.add_argument("--cpu-max-prompts", type=int,
                    help="an entry generating on CPU answers at most the first N prompts "
                    "(the same for every contestant); 0 = all")  # fmt: skip
    cf.add_argument("--cuda-max-prompts", type=int,
                    help="the same on a CUDA GPU (default 0 = all)")  # fmt: skip
    cf.add_argument("--max-new-tokens", type=int)
    cf.add_argument("--temperature", type=float)
    cf.add_argument("--top-p", type=float)
    cf.add_argument("--seed", type=int)
    cf.add_argument("--json", action="store_true")
    cf.set_defaults(func=config)

    sc = asub.add_parser("schedule", help="create arena tasks from the answers there are")
    sc.add_argument("--project", required=True)
    sc.add_argument(
        "--checkpoint", type=id_arg("checkpoint"), help="only this checkpoint against its opponents"
    )
    sc.add_argument("--opponents", choices=["best", "all"])
    sc.add_argument("--json", action="store_true")
    sc.set_defaults(func=schedule)

    st = asub.add_parser("status", help="contestants, answers, tasks and votes")
    st.add_argument("--project", required=True)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=status)

    en = asub.add_parser("enter", help="a checkpoint answers the arena's prompts and is paired")
    en.add_argument("--project", required=True)
    en.add_argument(
        "--checkpoint", type=id_arg("checkpoint"), required=True, help="policy checkpoint id"
    )
    en.add_argument("--opponents", choices=["best", "all"])
    en.add_argument("--json", action="store_true")
    en.set_defaults(func=enter)

    jd = asub.add_parser(
        "judge", help="score the voted pairs with a reward model; agreement with the labelers"
    )
    jd.add_argument("--project", required=True)
    jd.add_argument(
        "--reward", type=id_arg("checkpoint"), required=True, help="reward checkpoint id"
    )
    jd.add_argument("--json", action="store_true")
    jd.set_defaults(func=judge)


def _out(args, data: dict) -> None:
    if args.json:
        print_json(data)
    else:
        for key, value in data.items():
            print(f"{key:18} {value}")


def add_prompts(args) -> int:
    from labeling import arena
    from labeling.projects import get_project

    with transaction() as s:
        acting_user(s, args, action="arena.manage")
        out = arena.copy_prompts(
            s, get_project(s, args.project), get_project(s, args.source),
            split=args.split, limit=args.limit,
        )  # fmt: skip
    _out(args, out)
    return 0


def config(args) -> int:
    from labeling import arena
    from labeling.projects import get_project

    values = {
        "auto_enter": args.auto_enter, "opponents": args.opponents,
        "include_human": args.include_human, "max_prompts": args.max_prompts,
        "min_pair_votes": args.min_pair_votes, "max_new_tokens": args.max_new_tokens,
        "cpu_max_prompts": args.cpu_max_prompts, "cuda_max_prompts": args.cuda_max_prompts,
        "temperature": args.temperature, "top_p": args.top_p, "seed": args.seed,
    }  # fmt: skip
    with transaction() as s:
        acting_user(s, args, action="arena.manage")
        out = arena.configure(s, get_project(s, args.project), **values)
    _out(args, out)
    return 0


def schedule(args) -> int:
    from labeling import arena
    from labeling.projects import get_project

    with transaction() as s:
        acting_user(s, args, action="arena.manage")
        out = arena.schedule(
            s, get_project(s, args.project), checkpoint_id=args.checkpoint,
            opponents=args.opponents,
        )  # fmt: skip
    _out(args, out)
    return 0


def status(args) -> int:
    from labeling import arena
    from labeling.projects import get_project

    with transaction() as s:
        acting_user(s, args, action="arena.manage")
        out = arena.overview(s, get_project(s, args.project))
    if args.json:
        print_json(out)
        return 0
    print(f"arena {out['project']}: {out['prompts']} prompts, {out['votes']} votes, "
          f"tasks {out['tasks']}")  # fmt: skip
    print_table(out["contestants"], ["key", "name", "answers"])
    return 0


def enter(args) -> int:
    from labeling import arena
    from labeling.projects import get_project
    from training.arena_entry import enter_arena

    with transaction() as s:
        acting_user(s, args, action="arena.manage")
        arena.settings(get_project(s, args.project))  # fails early on an unknown project
    out = enter_arena(
        sessionmaker(), checkpoint_id=args.checkpoint, project=args.project,
        opponents=args.opponents,
    )  # fmt: skip
    _out(args, out)
    return 0


def judge(args) -> int:
    from labeling.projects import get_project
    from reward.judge import judge_arena

    with transaction() as s:
        acting_user(s, args, action="arena.manage")
        get_project(s, args.project)
    out = judge_arena(sessionmaker(), project=args.project, reward_checkpoint_id=args.reward)
    if args.json:
        print_json(out)
        return 0
    agreement = "n/a" if out["agreement"] is None else f"{out['agreement']:.1%}"
    print(
        f"judge: reward checkpoint {out['reward_checkpoint_id']} on {out['project']}: agrees "
        f"with {agreement} of {out['n']} decided votes ({out['ties_skipped']} ties / both-bad "
        f"left out), {out['judged_tasks']} tasks judged"
    )
    rows = [
        {**r, "rating": round(r["rating"]), "ci": f"{r['ci_low']:.0f}..{r['ci_high']:.0f}"}
        for r in out["leaderboard"]
    ]
    print_table(rows, ["rank", "model", "rating", "ci", "votes"])
    for message in out["messages"]:
        print(f"note: {message}")
    return 0

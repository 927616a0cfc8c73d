"""`rlhf queue`: the order in which labelers are served a project's tasks (admins and
engineers: the policy action "queue.prioritise").

    rlhf queue prioritise --project P --reward C [--strategy disagreement|margin|random]
        [--k 5] [--seed 0] [--top 10] [--json]

Re-orders the project's open, non-gold compare tasks by what a reward-model ensemble on
C's backbone learns most from (reward/prioritise.py: the steps and the JSON; reward/active.py:
the maths): claims serve the highest priority first (labeling/queue.py). C is a reward
checkpoint id or `default` (the default reward base: its backbone only). Run it again after
new labels or an import: tasks added since wait behind the ordered ones.
"""

from __future__ import annotations

from app.cli.common import acting_user, int_in, print_json, print_table, transaction

STRATEGIES = ("disagreement", "margin", "random")  # reward.active.STRATEGIES (torch-free here)


def register(sub) -> None:
    p = sub.add_parser("queue", help="the labeling queue's order: active learning")
    actions = p.add_subparsers(dest="queue_command", required=True, metavar="ACTION")
    q = actions.add_parser(
        "prioritise",
        help="serve first the open pairs a reward-model ensemble learns most from",
    )
    q.add_argument("--project", required=True, help="a pairwise project")
    q.add_argument(
        "--reward", required=True, metavar="C",
        help="a reward checkpoint id (or checkpoint:ID), or default: the default reward base",
    )  # fmt: skip
    q.add_argument(
        "--strategy", choices=STRATEGIES, default="margin",
        help="margin: the smallest predicted margin first (default: bench/active.py); "
        "disagreement: the members disagree most first; random: a seeded shuffle",
    )  # fmt: skip
    q.add_argument("--k", type=int_in(1, 100), default=5, help="ensemble heads (default 5)")
    q.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
    q.add_argument("--top", type=int_in(0, 1_000), default=10, help="tasks shown (default 10)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=prioritise)


def prioritise(args) -> int:
    from reward import prioritise as service

    with transaction() as s:  # checks and reads
        acting_user(s, args, action="queue.prioritise")
        inputs = service.gather(s, project=args.project, reward=args.reward)
    # the model runs outside any transaction (a SQLite write lock would hold every submit)
    plan = service.rank(inputs, strategy=args.strategy, k=args.k, seed=args.seed)
    with transaction() as s:  # the write, the role checked again
        acting_user(s, args, action="queue.prioritise")
        out = service.apply(s, inputs, plan, top=args.top)
    if args.json:
        print_json(out)
        return 0
    how = (
        f"a random shuffle (seed {out['seed']})"
        if out["strategy"] == "random"
        else f"{out['strategy']} ({out['members']} members, {out['labeled_pairs']} labeled pairs)"
    )
    print(f"re-ordered {out['reordered']} open tasks of {out['project']!r} by {how}")
    if out["note"]:
        print(f"note: {out['note']}")
    rows = [{
        "task": r["task_id"], "priority": r["priority"],
        "disagreement": _f(r.get("disagreement")), "margin": _f(r.get("predicted_margin")),
        "prompt": _short(r["prompt"]),
    } for r in out["top"]]  # fmt: skip
    print_table(rows, ["task", "priority", "disagreement", "margin", "prompt"])
    return 0


def _f(value) -> str | None:
    return None if value is None else f"{value:.3f}"


def _short(text: str, width: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"

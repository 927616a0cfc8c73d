"""`rlhf review`: look at the labels that need it, accept, reject or relabel them, pause a
labeler (admins and engineers: the policy action "review").

    rlhf review queue --project P [--limit N] [--json]
    rlhf review accept|reject KIND LABEL_ID [--note TEXT] [--json]
    rlhf review relabel KIND LABEL_ID (--choice C [--strength S] | --order ID,ID,...) [--note TEXT]
    rlhf review history KIND LABEL_ID [--json]
    rlhf review pause NAME [--json]       rlhf review unpause NAME [--json]

KIND is preference, ranking or demonstration. Reviews are kept: the latest one of a label is
in force (a rejected label leaves later snapshots, a relabel's judgment replaces the
label's), `history` shows them all. What the queue's reasons mean is
labeling/quality/review.py's review_queue docstring. A paused labeler claims no new tasks.
"""

from __future__ import annotations

import argparse

from app.cli.common import acting_user, id_arg, int_in, print_json, print_table, transaction

KINDS = ("preference", "ranking", "demonstration")


def _order(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) < 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(
            f"an order is the answers' ids best first, separated by commas (3,1,2), not {text!r}"
        )
    return [int(p) for p in parts]


_order.__name__ = "order"


def register(sub) -> None:
    p = sub.add_parser("review", help="review labels: the queue, accept, reject, relabel, pause")
    actions = p.add_subparsers(dest="review_command", required=True, metavar="ACTION")

    q = actions.add_parser("queue", help="labels that need a look, most suspicious first")
    q.add_argument("--project", required=True)
    q.add_argument("--limit", type=int_in(1, 10_000), default=50, help="(default 50)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=queue)

    def label_args(parser) -> None:
        parser.add_argument("kind", metavar="KIND", choices=KINDS, help=", ".join(KINDS))
        parser.add_argument("label_id", metavar="LABEL_ID", type=id_arg("label"))

    for name, what in (("accept", "the label stands"),
                       ("reject", "the label leaves every later snapshot")):  # fmt: skip
        a = actions.add_parser(name, help=what)
        label_args(a)
        a.add_argument("--note", help="why (kept in the history)")
        a.add_argument("--json", action="store_true")
        a.set_defaults(func=review, action=name)

    r = actions.add_parser("relabel", help="your judgment replaces the label in later snapshots")
    label_args(r)
    judgment = r.add_mutually_exclusive_group(required=True)
    judgment.add_argument("--choice", help="for a preference: a, b, tie or both_bad")
    judgment.add_argument("--order", type=_order, help="for a ranking: response ids, best first")
    r.add_argument("--strength", type=int_in(1, 3), help="with --choice a or b: 1, 2 or 3")
    r.add_argument("--note", help="why (kept in the history)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=review, action="relabel")

    h = actions.add_parser("history", help="every review of one label, oldest first")
    label_args(h)
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=history)

    for name, what in (("pause", "the labeler claims no new tasks"),
                       ("unpause", "the labeler claims tasks again")):  # fmt: skip
        a = actions.add_parser(name, help=what)
        a.add_argument("name", metavar="NAME", help="the labeler's account name")
        a.add_argument("--json", action="store_true")
        a.set_defaults(func=pause, pause=name == "pause")


def queue(args) -> int:
    from labeling.quality.review import review_queue

    with transaction() as s:
        acting_user(s, args, action="review")
        entries = review_queue(s, args.project, limit=args.limit)
    if args.json:
        print_json(entries)
        return 0
    rows = [{
        "kind": e["kind"], "label": e["label_id"], "task": e["task_id"], "labeler": e["labeler"],
        "judgment": e["choice"] if e["order"] is None else ">".join(map(str, e["order"])),
        "strength": e["strength"],
        "posterior": None if e["posterior"] is None else f"{e['posterior']:.2f}",
        "reasons": ", ".join(e["reasons"]),
    } for e in entries]  # fmt: skip
    print_table(rows, ["kind", "label", "task", "labeler", "judgment", "strength", "posterior",
                       "reasons"])  # fmt: skip
    return 0


def review(args) -> int:
    from labeling.quality.review import describe, review_label

    with transaction() as s:
        me = acting_user(s, args, action="review")
        row = review_label(
            s, reviewer_id=me.id, kind=args.kind, label_id=args.label_id, action=args.action,
            choice=getattr(args, "choice", None), strength=getattr(args, "strength", None),
            order=getattr(args, "order", None), note=args.note,
        )  # fmt: skip
        out = describe(row, me.name)
    if args.json:
        print_json(out)
    else:
        done = {"accept": "accepted", "reject": "rejected", "relabel": "relabeled"}[args.action]
        print(f"{done} {args.kind} {args.label_id} (review #{out['review_id']}{_judged(out)})")
    return 0


def _judged(entry) -> str:
    judgment = entry["judgment"]
    if judgment is None:
        return ""
    if "order" in judgment:
        return ": " + ">".join(map(str, judgment["order"]))
    strength = f", strength {judgment['strength']}" if judgment["strength"] else ""
    return f": {judgment['choice']}{strength}"


def history(args) -> int:
    from labeling.quality.review import history as label_history

    with transaction() as s:
        acting_user(s, args, action="review")
        entries = label_history(s, kind=args.kind, label_id=args.label_id)
    if args.json:
        print_json(entries)
        return 0
    rows = [{
        "when": e["when"], "who": e["who"], "action": e["action"],
        "judgment": _judged(e).removeprefix(": ") or None, "note": e["note"],
        "in force": "yes" if e["in_force"] else None,
    } for e in entries]  # fmt: skip
    print_table(rows, ["when", "who", "action", "judgment", "note", "in force"])
    return 0


def pause(args) -> int:
    from labeling.quality.review import pause_labeler, unpause_labeler

    with transaction() as s:
        me = acting_user(s, args, action="review")
        change = pause_labeler if args.pause else unpause_labeler
        user = change(s, by_user_id=me.id, name=args.name)
        out = {"name": user.name, "role": user.role.value, "paused_at": user.paused_at}
    if args.json:
        print_json(out)
    elif out["paused_at"] is not None:
        print(f"paused {out['name']}: no new tasks until `rlhf review unpause {out['name']}`")
    else:
        print(f"unpaused {out['name']}: they can claim tasks again")
    return 0

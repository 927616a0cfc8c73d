"""`rlhf worker`: claim queued training runs from the database and run them (engineer, admin).

    rlhf worker                      poll for queued runs forever (every 10 s when idle)
    rlhf worker --once               run what is queued now, then exit
    rlhf worker --kinds sft,reward   only these kinds (e.g. a CPU host leaves dpo/rl to GPUs)

Several workers on several hosts can share one PostgreSQL: each queued run is claimed by
exactly one of them (FOR UPDATE SKIP LOCKED). Runs are queued with `rlhf train ... --queue`
or the UI's "launch training" form and cancelled from the UI (training/worker.py).
"""

from __future__ import annotations

from app.cli.common import acting_user, int_in, sessionmaker, transaction
from labeling.kinds import Role


def register(sub) -> None:
    p = sub.add_parser(
        "worker",
        help="claim queued training runs and run them (engineer, admin)",
        description=__doc__,
    )
    p.add_argument("--once", action="store_true", help="run what is queued now, then exit")
    p.add_argument(
        "--poll-seconds", type=float, default=10.0, help="wait between polls when idle (10)"
    )
    p.add_argument("--kinds", help="comma-separated run kinds to take: sft,reward,dpo,rl")
    p.add_argument("--host", help="the name recorded on the runs (default: this host's)")
    p.add_argument(
        "--reap-after",
        type=float,
        help="mark running runs with no heartbeat for this many seconds failed (dead workers)",
    )
    p.add_argument("--max-runs", type=int_in(1, 10**9), help="exit after this many runs")
    p.add_argument("--json", action="store_true", help="one JSON object per line per run")
    p.set_defaults(func=worker)


def worker(args) -> int:
    with transaction() as s:
        acting_user(s, args, Role.engineer, Role.admin)
    from training.worker import work

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else None
    done = work(
        sessionmaker(),
        once=args.once,
        poll_seconds=args.poll_seconds,
        kinds=kinds,
        host=args.host,
        reap_after=args.reap_after,
        json_output=args.json,
        max_runs=args.max_runs,
    )
    if args.once and not done and not args.json:
        print("no queued runs")
    return 0 if all(d["status"] == "succeeded" for d in done) else 1

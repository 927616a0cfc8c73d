"""`rlhf demo`: migrate the database and seed the demo accounts and projects."""

from __future__ import annotations

from app.cli.common import acting_user, print_json, transaction


def register(sub) -> None:
    p = sub.add_parser("demo", help="migrate and seed a small demo (accounts + two projects)")
    p.add_argument(
        "--with-labels", action="store_true",
        help="also the demo labelers' labels (with a held-out split) and an arena, demo-arena",
    )  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=demo)


def demo(args) -> int:
    from labeling import demo as demo_data
    from labeling import migrate
    from labeling.db import make_engine
    from labeling.settings import load_settings

    engine = make_engine()
    migrate.upgrade(engine)
    with transaction() as s:
        acting_user(s, args, action="demo", bootstrap=True)
        result = demo_data.seed(s)
        if args.with_labels:
            from labeling.demo_labels import seed_labels

            result.update(seed_labels(s))
    settings = load_settings()
    result["database"] = engine.url.render_as_string(hide_password=True)
    result["home"] = str(settings.home)
    if args.json:
        print_json(result)
        return 0
    print(f"database: {result['database']}")
    print(f"data root: {result['home']}")
    print(
        f"demo accounts: {', '.join(f'{n} ({r}) password {p}' for n, r, p in demo_data.ACCOUNTS)}"
    )
    print("projects: demo-compare (pairwise, 12 comparisons), demo-write (sft, 8 prompts)")
    if args.with_labels:
        print(
            f"labels: {result['preferences']} preferences, {result['demonstrations']} "
            f"demonstrations added; arena demo-arena with {result['arena_prompts']} new prompts"
        )
    print("next: `rlhf serve`, then log in at http://127.0.0.1:8501 as labeler / demo-labeler")
    return 0

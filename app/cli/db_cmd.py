"""`rlhf db upgrade|downgrade|current|check`."""

from __future__ import annotations

import sys

from app.cli.common import acting_user, print_json
from labeling.models import Role


def register(sub) -> None:
    db = sub.add_parser("db", help="database schema: migrate and check")
    dsub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = dsub.add_parser("upgrade", help="migrate to REV (default: head)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=upgrade)
    down = dsub.add_parser("downgrade", help="migrate down to REV ('base', '-1', or a revision)")
    down.add_argument("revision")
    down.set_defaults(func=downgrade)
    cur = dsub.add_parser("current", help="the revision the database is at")
    cur.add_argument("--json", action="store_true")
    cur.set_defaults(func=current)
    chk = dsub.add_parser("check", help="exit 1 when the models differ from the migrated schema")
    chk.add_argument("--json", action="store_true")
    chk.set_defaults(func=check)


def _engine():
    from labeling.db import make_engine

    return make_engine()


def _guard(args, engine) -> None:
    """Schema changes need an admin once the users table has anyone in it."""
    from sqlalchemy import inspect

    from app.cli.common import transaction

    if "users" not in inspect(engine).get_table_names():
        return
    with transaction() as session:
        acting_user(session, args, Role.admin, bootstrap=True)


def upgrade(args) -> int:
    from labeling import migrate

    engine = _engine()
    _guard(args, engine)
    migrate.upgrade(engine, args.revision)
    print(f"database at {migrate.current(engine) or 'base'}")
    return 0


def downgrade(args) -> int:
    from labeling import migrate

    engine = _engine()
    _guard(args, engine)
    migrate.downgrade(engine, args.revision)
    print(f"database at {migrate.current(engine) or 'base'}")
    return 0


def current(args) -> int:
    from labeling import migrate

    engine = _engine()
    rev, head = migrate.current(engine), migrate.head()
    if args.json:
        print_json({"current": rev, "head": head, "up_to_date": rev == head})
    else:
        print(f"{rev or 'base'}{' (head)' if rev == head else f' (head is {head})'}")
    return 0


def check(args) -> int:
    from labeling import migrate

    engine = _engine()
    rev, head = migrate.current(engine), migrate.head()
    diffs = [repr(d) for d in migrate.differences(engine)]
    ok = rev == head and not diffs
    if args.json:
        print_json({"current": rev, "head": head, "ok": ok, "differences": diffs})
    elif ok:
        print(f"ok: database at {rev}, schema matches the models")
    else:
        if rev != head:
            print(
                f"database at {rev or 'base'}, head is {head}: run `rlhf db upgrade`",
                file=sys.stderr,
            )
        for d in diffs:
            print(f"difference: {d}", file=sys.stderr)
    return 0 if ok else 1

"""`rlhf db upgrade|downgrade|current|check|backup|restore`."""

from __future__ import annotations

import sys

from app.cli.common import caller_name, human_size, print_json
from labeling.errors import InvalidInput


def register(sub) -> None:
    db = sub.add_parser("db", help="database schema: migrate and check; backup and restore")
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
    bk = dsub.add_parser(
        "backup", help="copy the whole database to PATH, consistently, while it is in use"
    )
    bk.add_argument("path", metavar="PATH", help="a file, or a folder for a dated file")
    bk.add_argument("--force", action="store_true", help="replace PATH if it exists")
    bk.add_argument("--json", action="store_true")
    bk.set_defaults(func=backup)
    rs = dsub.add_parser(
        "restore",
        help="replace the database's contents with a backup (the current ones are saved first)",
    )
    rs.add_argument("path", metavar="PATH", help="a file written by `rlhf db backup`")
    rs.add_argument("--yes", action="store_true", help="really replace every row")
    rs.add_argument("--json", action="store_true")
    rs.set_defaults(func=restore)


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
        _require_admin_on_any_schema(session, args)


def _require_admin_on_any_schema(session, args) -> None:
    """acting_user(action="db.manage", bootstrap=True), reading only the users columns every
    revision has: the ORM's User would select columns that a later migration adds."""
    from sqlalchemy import func, select

    from labeling.accounts import policies
    from labeling.errors import PermissionDenied
    from labeling.kinds import with_article
    from labeling.models import User

    roles = policies.allowed("db.manage")
    if not session.scalar(select(func.count()).select_from(User)):
        return
    name = caller_name(args)
    if not name:
        raise PermissionDenied(
            "who is running this? set RLHF_USER=NAME or pass --user NAME "
            f"(an account with role {' or '.join(r.value for r in roles)})"
        )
    found = session.execute(
        select(User.name, User.role, User.active).where(User.name == name)
    ).first()
    if found is None or not found.active:
        raise PermissionDenied("unknown or deactivated account")
    if found.role not in roles:
        raise PermissionDenied(
            f"{found.name} is {with_article(found.role.value)}; this needs "
            + " or ".join(r.value for r in roles)
        )


def _migrate(args, direction: str) -> int:
    from alembic.util import CommandError

    from labeling import migrate

    engine = _engine()
    _guard(args, engine)
    try:
        getattr(migrate, direction)(engine, args.revision)
    except CommandError as e:  # unknown or unreachable revision: alembic's reason, one line
        reason = str(e).splitlines()[0] if str(e) else "unknown revision"
        raise InvalidInput(
            f"cannot {direction} to {args.revision!r}: {reason} "
            f"(the database is at {migrate.current(engine) or 'base'}; "
            f"use 'head', 'base', a relative step such as -1, or a revision: {_revisions()})"
        ) from None
    print(f"database at {migrate.current(engine) or 'base'}")
    return 0


def _revisions() -> str:
    from alembic.script import ScriptDirectory

    from labeling import migrate

    script = ScriptDirectory(str(migrate.SCRIPT_LOCATION))
    return ", ".join(reversed([r.revision for r in script.walk_revisions()]))


def upgrade(args) -> int:
    return _migrate(args, "upgrade")


def downgrade(args) -> int:
    return _migrate(args, "downgrade")


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


def backup(args) -> int:
    from labeling import backup as backups

    engine = _engine()
    _guard(args, engine)  # a backup holds every password hash: admins only
    result = backups.backup(engine, args.path, overwrite=args.force)
    if args.json:
        print_json(result.to_json())
    else:
        print(
            f"backed up the {result.database} database (schema {result.revision or 'base'}, "
            f"{human_size(result.bytes)}) to {result.path} in {result.seconds:.1f} s"
        )
    return 0


def restore(args) -> int:
    from labeling import backup as backups
    from labeling.settings import load_settings

    engine = _engine()
    _guard(args, engine)
    revision = backups.inspect_backup(engine, args.path)  # refuse a bad file before anything
    if not args.yes:
        raise InvalidInput(
            f"restoring replaces every row of the current database with {args.path} "
            f"(schema {revision}); rerun with --yes to do it (the current contents are "
            "saved to a safety backup first)"
        )
    result = backups.restore(engine, args.path, safety_dir=load_settings().home / "backups")
    if args.json:
        print_json(result.to_json())
        return 0
    print(f"restored {result.path} (schema {result.revision}) in {result.seconds:.1f} s")
    if result.safety_backup is not None:
        print(f"the previous contents are saved in {result.safety_backup}")
    print("every web session was ended: users sign in again")
    if result.revision != result.head:
        print(f"the backup's schema is older than this rlhf ({result.head}): run `rlhf db upgrade`")
    return 0

"""`rlhf users add|list|set-role|set-password|deactivate|activate` (admin only; the first
admin bootstraps). set-password is also open to any user for their own account, given the
current password: with --password-stdin, stdin then holds two lines, current and new."""

from __future__ import annotations

import getpass
import sys

from app.cli.common import acting_user, print_json, print_table, transaction
from labeling.errors import InvalidInput, PermissionDenied
from labeling.kinds import Role


def register(sub) -> None:
    p = sub.add_parser("users", help="accounts and roles")
    usub = p.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = usub.add_parser("add", help="create an account (the first one may be created by anyone)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--json", action="store_true")
    add.set_defaults(func=add_user)
    ls = usub.add_parser("list", help="list accounts")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_users)
    sr = usub.add_parser("set-role", help="change an account's role")
    sr.add_argument("name")
    sr.add_argument("role", choices=[r.value for r in Role])
    sr.set_defaults(func=set_role)
    sp = usub.add_parser(
        "set-password",
        help="a new password (an admin for anyone; a user for themselves, with the current one); "
        "ends every browser session of the account",
    )
    sp.add_argument("name")
    sp.add_argument(
        "--password-stdin", action="store_true",
        help="read the new password from stdin (a user changing their own: the current "
        "password on the first line, the new one on the second)",
    )  # fmt: skip
    sp.set_defaults(func=set_password)
    de = usub.add_parser("deactivate", help="block an account (takes effect at its next action)")
    de.add_argument("name")
    de.set_defaults(func=lambda a: _set_active(a, False))
    ac = usub.add_parser("activate", help="unblock an account")
    ac.add_argument("name")
    ac.set_defaults(func=lambda a: _set_active(a, True))


def _read_password(args, prompt: str = "password: ", *, twice: bool = True) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InvalidInput("no password on stdin")
        password = line.rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(prompt)
        if twice and getpass.getpass("again: ") != password:
            raise InvalidInput("the passwords differ")
    else:
        raise InvalidInput("no terminal to ask for a password: use --password-stdin")
    return password


def _row(u) -> dict:
    return {
        "id": u.id,
        "name": u.name,
        "role": u.role.value,
        "active": u.active,
        "created_at": u.created_at,
    }


def add_user(args) -> int:
    from labeling.accounts import users

    password = _read_password(args)
    with transaction() as s:
        acting = acting_user(s, args, action="users.manage", bootstrap=True)
        if acting is None and args.role != Role.admin.value:
            raise InvalidInput("the first account must be an admin (--role admin)")
        user = users.add_user(s, name=args.name, role=args.role, password=password)
        row = _row(user)
    if args.json:
        print_json(row)
    else:
        print(f"added {row['name']} ({row['role']})")
    return 0


def list_users(args) -> int:
    from labeling.accounts import users

    with transaction() as s:
        acting_user(s, args, action="users.manage")
        rows = [_row(u) for u in users.list_users(s)]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["id", "name", "role", "active", "created_at"])
    return 0


def set_role(args) -> int:
    from labeling.accounts import users

    with transaction() as s:
        acting_user(s, args, action="users.manage")
        user = users.set_role(s, args.name, args.role)
        print(f"{user.name} is now {user.role.value}")
    return 0


def _set_active(args, active: bool) -> int:
    from labeling.accounts import users

    with transaction() as s:
        acting_user(s, args, action="users.manage")
        user = users.set_active(s, args.name, active)
        print(f"{user.name} {'activated' if active else 'deactivated'}")
    return 0


def set_password(args) -> int:
    from labeling.accounts import policies, users

    with transaction() as s:
        acting = acting_user(s, args, action="users.own_password")
        if acting.role in policies.allowed("users.manage"):
            current = None  # an admin resets anyone's password, their own included
        elif acting.name == args.name:
            current = _read_password(args, "current password: ", twice=False)
        else:
            raise PermissionDenied(
                f"{acting.name} is a {acting.role.value}: only an admin sets another "
                "account's password"
            )
        new = _read_password(args, "new password: ")
        user = users.set_password(s, args.name, new, current_password=current)
        print(f"{user.name} has a new password; their browser sessions have ended")
    return 0

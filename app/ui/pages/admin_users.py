"""Admin · Users: the accounts, adding one, changing a role, resetting a password,
deactivating and reactivating. A reset or a deactivation logs the user out everywhere.

An admin cannot deactivate or demote their own account here (another admin can): that keeps
at least the caller able to undo a mistake.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.ui import auth
from app.ui.actions import act, show_flash
from app.ui.db import transaction
from app.ui.render import inline
from labeling.accounts import users
from labeling.errors import InvalidInput, PermissionDenied
from labeling.kinds import with_article
from labeling.models import Role

ROLE_NAMES = [r.value for r in Role]
NEW = "user-new-"


def render() -> None:
    me = auth.require_action("users.manage")
    st.title("Users")
    show_flash()
    with transaction() as s:
        rows = [
            {
                "id": u.id,
                "name": u.name,
                "role": u.role.value,
                "active": bool(u.active),
                "password": bool(u.password_hash),
                "created_at": u.created_at,
            }  # fmt: skip
            for u in users.list_users(s)
        ]
    st.dataframe(
        pd.DataFrame(rows, columns=["id", "name", "role", "active", "password", "created_at"]),
        hide_index=True,
        column_config={"password": st.column_config.CheckboxColumn("has password")},
    )

    add_tab, change_tab = st.tabs(["Add a user", "Change a user"])
    with add_tab:
        left, middle, right = st.columns(3)
        left.text_input("Name", key=NEW + "name", max_chars=64)
        middle.selectbox("Role", ROLE_NAMES, index=ROLE_NAMES.index("labeler"), key=NEW + "role")
        right.text_input(
            "Password", type="password", key=NEW + "password",
            help=f"at least {users.MIN_PASSWORD} characters, not a common password "
            "(may stay empty for single sign-on)",
            autocomplete="new-password",
        )  # fmt: skip
        st.button("Add user", type="primary", key=NEW + "add", on_click=_add, args=(me.id,))
    with change_tab:
        names = {r["id"]: r["name"] for r in rows}
        by_id = {r["id"]: r for r in rows}
        if not names:
            return
        user_id = st.selectbox(
            "User", list(names), format_func=names.__getitem__, key="user-change-id"
        )
        row = by_id[user_id]
        st.caption(
            f"**{inline(row['name'])}** is a {row['role']}, "
            + ("active." if row["active"] else "**deactivated**.")
        )
        left, right = st.columns(2)
        with left:
            st.selectbox(
                "New role",
                ROLE_NAMES,
                index=ROLE_NAMES.index(row["role"]),
                key=f"user-{user_id}-role",
            )
            st.button(
                "Change role", key=f"user-{user_id}-set-role", on_click=_set_role,
                args=(me.id, row["name"], f"user-{user_id}-role"),
            )  # fmt: skip
        with right:
            st.write("")
            if row["active"]:
                st.button(
                    "Deactivate", key=f"user-{user_id}-deactivate", icon=":material/block:",
                    on_click=_set_active, args=(me.id, row["name"], False),
                )  # fmt: skip
            else:
                st.button(
                    "Activate", key=f"user-{user_id}-activate", icon=":material/check_circle:",
                    on_click=_set_active, args=(me.id, row["name"], True),
                )  # fmt: skip
        if user_id != me.id:  # one's own goes through Account, which asks for the current one
            st.text_input(
                "New password", type="password", key=f"user-{user_id}-password",
                autocomplete="new-password",
                help=f"at least {users.MIN_PASSWORD} characters; logs the user out everywhere",
            )  # fmt: skip
            st.button(
                "Reset password", key=f"user-{user_id}-reset", icon=":material/key:",
                on_click=_reset_password, args=(me.id, row["name"], f"user-{user_id}-password"),
            )  # fmt: skip


def _add(me: int) -> None:
    ss = st.session_state
    name = (ss.get(NEW + "name") or "").strip()
    role = ss.get(NEW + "role") or "labeler"
    password = ss.get(NEW + "password") or ""

    def action(s) -> str:
        if not password and not auth.oidc_configured():
            raise InvalidInput("give the new account a password: it logs in with it")
        user = users.add_user(s, name=name, role=role, password=password or None)
        return f"Added {user.name} ({user.role.value})."

    if act(me, "users.manage", action):
        for key in (NEW + "name", NEW + "password", NEW + "role"):
            ss.pop(key, None)


def _set_role(me: int, name: str, role_key: str) -> None:
    role = st.session_state.get(role_key)

    def action(s) -> str:
        user = users.get_user(s, name)
        if user.id == me and role != Role.admin.value:
            raise PermissionDenied("you cannot demote yourself: ask another admin")
        users.set_role(s, name, role)
        return f"{name} is now {with_article(str(role))}."

    act(me, "users.manage", action)


def _set_active(me: int, name: str, active: bool) -> None:
    def action(s) -> str:
        user = users.get_user(s, name)
        if user.id == me and not active:
            raise PermissionDenied("you cannot deactivate yourself: ask another admin")
        users.set_active(s, name, active)
        if active:
            return f"{name} is active again."
        return f"{name} is deactivated: their next action logs them out."

    act(me, "users.manage", action)


def _reset_password(me: int, name: str, password_key: str) -> None:
    password = st.session_state.get(password_key) or ""

    def action(s) -> str:
        if users.get_user(s, name).id == me:
            raise PermissionDenied("change your own password on the Account page")
        users.set_password(s, name, password)
        return f"{name} has a new password and was logged out everywhere."

    if act(me, "users.manage", action):
        st.session_state.pop(password_key, None)

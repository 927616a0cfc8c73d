"""The sidebar: which pages each role sees, decided by the same policies the pages check.

Every entry names the action its page requires (app.ui.auth.require_action, with the roles
in labeling/accounts/policies.py), so a change of who may open a page is one line there, and
the navigation follows it. A page's module is imported only when the role is shown it.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import streamlit as st

from labeling.accounts import policies
from labeling.kinds import Role


class PageEntry(NamedTuple):
    module: str  # app/ui/pages/<module>.py, imported only when the role sees it
    title: str
    icon: str
    url_path: str
    action: str  # the policy its render() requires


# Section -> pages, in the order the sidebar shows them. Import is listed once, under
# Engineer: admins see that section too. An admin has 15 pages: past 12 Streamlit would
# fold the last ones behind "View more", so main.py shows the navigation expanded.
SECTIONS: dict[str, list[PageEntry]] = {
    "Label": [
        PageEntry("compare", "Compare", ":material/compare:", "compare", "label"),
        PageEntry("write", "Write", ":material/edit_note:", "write", "label"),
        PageEntry("rank", "Rank", ":material/format_list_numbered:", "rank", "label"),
        PageEntry("judge", "Judge", ":material/gavel:", "judge", "label"),
        PageEntry("review_questions", "Questions", ":material/quiz:", "questions", "label"),
        PageEntry("progress", "My progress", ":material/insights:", "progress", "label"),
    ],
    "Results": [
        PageEntry(
            "leaderboard", "Leaderboard", ":material/leaderboard:", "leaderboard", "leaderboard"
        ),
        PageEntry("account", "Account", ":material/person:", "account", "users.own_password"),
    ],
    "Engineer": [
        PageEntry("admin_import", "Import", ":material/upload:", "admin_import", "import"),
        PageEntry(
            "engineer_snapshots",
            "Snapshots",
            ":material/inventory_2:",
            "snapshots",
            "snapshot.read",
        ),
        PageEntry("quality", "Label quality", ":material/fact_check:", "quality", "quality"),
        PageEntry(
            "engineer_training", "Launch training", ":material/rocket_launch:", "training", "train"
        ),
        PageEntry(
            "engineer_runs",
            "Runs and checkpoints",
            ":material/model_training:",
            "runs",
            "runs.read",
        ),
        PageEntry("engineer_probes", "Probes", ":material/psychology_alt:", "probes", "probe"),
    ],
    "Admin": [
        PageEntry(
            "admin_projects", "Projects", ":material/folder:", "admin_projects", "projects.manage"
        ),
        PageEntry("admin_users", "Users", ":material/group:", "admin_users", "users.manage"),
        PageEntry(
            "admin_dashboard", "Dashboard", ":material/monitoring:", "admin_dashboard", "dashboard"
        ),
    ],
}


def visible_sections(role: Role) -> dict[str, list[PageEntry]]:
    """The sections and pages `role` may open; sections left empty are not shown."""
    shown = {
        name: [entry for entry in entries if role in policies.allowed(entry.action)]
        for name, entries in SECTIONS.items()
    }
    return {name: entries for name, entries in shown.items() if entries}


def pages(role: Role) -> dict[str, list]:
    """st.Page objects for `role`; a page's module is imported only when it is shown.

    Streamlit serves the default page at "/" and nowhere else, so a first page that were the
    default would answer its own URL (/compare) with "Page not found". The default is a hidden
    page that forwards "/" to the role's first page instead: every page keeps its URL."""
    sections = {
        name: [
            st.Page(
                importlib.import_module(f"app.ui.pages.{e.module}").render,
                title=e.title,
                icon=e.icon,
                url_path=e.url_path,
            )
            for e in entries
        ]
        for name, entries in visible_sections(role).items()
    }
    first_section = next(iter(sections.values()))
    first = first_section[0]
    home = st.Page(
        lambda: st.switch_page(first), title=first.title, icon=first.icon, url_path="home",
        default=True, visibility="hidden",
    )  # fmt: skip
    first_section.insert(0, home)
    return sections

"""The sidebar and the pages decide access from one table (labeling/accounts/policies.py),
and the pages share one act / flash (app/ui/actions.py). Checked from the code: no database
needed, except the flash, which runs in Streamlit's AppTest."""

from __future__ import annotations

import ast
from pathlib import Path

from streamlit.testing.v1 import AppTest

from app.ui import navigation, render
from labeling.accounts import policies
from labeling.models import Role

UI = Path(__file__).resolve().parents[3] / "app" / "ui"


def _titles(role: Role) -> dict[str, list[str]]:
    return {
        name: [e.title for e in entries]
        for name, entries in navigation.visible_sections(role).items()
    }


def test_each_role_sees_the_sections_its_policies_allow():
    labeler = _titles(Role.labeler)
    assert labeler == {
        "Label": ["Compare", "Write", "Rank", "Judge", "Questions", "My progress"],
        "Results": ["Leaderboard", "Account"],
    }
    engineer = _titles(Role.engineer)
    assert list(engineer) == ["Label", "Results", "Engineer"]
    assert engineer["Engineer"] == [
        "Import",
        "Snapshots",
        "Label quality",
        "Launch training",
        "Runs and checkpoints",
        "Probes",
    ]
    admin = _titles(Role.admin)
    assert list(admin) == ["Label", "Results", "Engineer", "Admin"]
    assert admin["Admin"] == ["Projects", "Users", "Dashboard"]
    assert sum(map(len, admin.values())) == 17


def _required_actions(path: Path) -> list[str]:
    """The actions named by auth.require_action("...") calls in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "require_action"
        ):
            assert isinstance(node.args[0], ast.Constant), f"{path.name}: name the action"
            found.append(node.args[0].value)
    return found


def test_every_page_requires_the_action_the_navigation_names():
    entries = [e for section in navigation.SECTIONS.values() for e in section]
    listed = {e.module for e in entries}
    on_disk = {p.stem for p in (UI / "pages").glob("*.py")} - {"__init__", "login"}
    assert listed == on_disk  # every page is in the navigation, once
    for entry in entries:
        policies.allowed(entry.action)  # a known action
        path = UI / "pages" / f"{entry.module}.py"
        assert _required_actions(path) == [entry.action], entry.module


def test_one_act_and_one_flash_for_the_whole_ui():
    defined: dict[str, list[str]] = {}
    for path in UI.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in ("act", "flash", "show_flash"):
                defined.setdefault(node.name, []).append(str(path.relative_to(UI)))
            # no page keeps its own table of roles: it names an action instead
            if isinstance(node, ast.Assign) and path.parent.name == "pages":
                assert "ROLES" not in [t.id for t in node.targets if isinstance(t, ast.Name)]
        src = path.read_text()
        assert "auth.require(" not in src or path.name == "auth.py", path
    assert defined == {n: ["actions.py"] for n in ("act", "flash", "show_flash")}


def test_flash_is_always_shown_inertly():
    message = "Added **<img src=x onerror=alert(1)>** [x](javascript:alert(1))"
    script = (
        "from app.ui.actions import flash, show_flash\n"
        "flash({kind!r}, {message!r})\n"
        "show_flash()\n"
        "show_flash()\n"  # shown once
    )
    for kind, element in (("success", "success"), ("warning", "warning"), ("error", "error")):
        at = AppTest.from_string(script.format(kind=kind, message=message)).run()
        shown = [e.value for e in getattr(at, element)]
        assert shown == [render.inert_markdown(message)], kind
        assert "<img" not in shown[0]

"""The direction of imports, read from the code with ast (nothing is imported):

    app -> labeling, reward, training        reward -> training -> labeling

- labeling imports none of app, reward, training, and no ML library (torch, transformers,
  trl, peft, accelerate), not even lazily inside a function;
- labeling/ratings is the statistics library: no SQLAlchemy, nothing from labeling outside
  labeling/ratings except labeling.errors;
- training imports no reward (reward imports training) and no app; reward imports no app;
- none of them imports tests or bench.

Every import counts: module level, inside functions, under TYPE_CHECKING, and
importlib.import_module("...") with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "labeling", "reward", "training")
ML_LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate")

# (importing module, imported module) -> why it is still there. Each entry is a known
# violation to remove; the test fails when one is no longer needed, so delete it then.
ALLOWED: dict[tuple[str, str], str] = {}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def rule_broken(source: str, target: str) -> str | None:
    """Why `source` may not import `target`, or None when it may."""
    for outside in ("tests", "bench"):
        if _within(target, outside):
            return f"the packages import no {outside}"
    if _within(source, "labeling"):
        for other in ("app", "reward", "training", *ML_LIBRARIES):
            if _within(target, other):
                return f"labeling imports no {other}"
    if _within(source, "labeling.ratings"):
        if _within(target, "sqlalchemy"):
            return "labeling.ratings imports no database code"
        if (
            _within(target, "labeling")
            and not _within(target, "labeling.ratings")
            and target != "labeling.errors"
        ):
            return "labeling.ratings imports nothing from labeling but ratings and errors"
    if _within(source, "training"):
        for other in ("reward", "app"):
            if _within(target, other):
                return f"training imports no {other} ({other} imports training)"
    if _within(source, "reward") and _within(target, "app"):
        return "reward imports no app"
    return None


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(root: Path, name: str) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported_modules(root: Path, path: Path) -> list[tuple[str, int]]:
    """(module, line) for every import in the file at `path`, relative ones resolved;
    `from pkg import name` is pkg.name when that is a module of ours, else pkg."""
    module = _module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((full if _is_module(root, full) else base, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (
                    isinstance(node.func, ast.Name)
                    and node.func.id in ("import_module", "__import__")
                )
            )
        ):
            found.append((node.args[0].value, node.lineno))
    return found


def violations(root: Path, allowed: dict[tuple[str, str], str]) -> tuple[list[str], set]:
    """The imports that break a rule (as 'file:line: a imports b: why'), and the entries of
    `allowed` that were used."""
    broken, used = [], set()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            source = _module_name(root, path)
            for target, line in imported_modules(root, path):
                why = rule_broken(source, target)
                if why is None:
                    continue
                key = next((k for k in allowed if k[0] == source and _within(target, k[1])), None)
                if key is not None:
                    used.add(key)
                    continue
                broken.append(f"{path.relative_to(root)}:{line}: {source} imports {target}: {why}")
    return broken, used


def test_imports_follow_the_direction():
    broken, used = violations(ROOT, ALLOWED)
    assert not broken, "\n".join(broken)
    stale = set(ALLOWED) - used
    assert not stale, f"no longer needed, delete from ALLOWED: {sorted(stale)}"


def test_the_check_sees_every_kind_of_import(tmp_path):
    """The checker on a synthetic tree: each kind of violation is found, allowed imports
    pass, and an allowlist entry silences exactly its own case."""
    files = {
        "app/__init__.py": "",
        "app/cli.py": "import torch\nfrom labeling import db\nfrom reward import judge\n",
        "app/fixtures.py": "from tests.factories import make_user\n",
        "labeling/__init__.py": "",
        "labeling/db.py": "import sqlalchemy\n",
        "labeling/errors.py": "",
        "labeling/lazy.py": "def f():\n    import transformers\n    from training import sft\n",
        "labeling/typed.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch.nn\n"
        ),
        "labeling/dynamic.py": "import importlib\nimportlib.import_module('peft')\n",
        "labeling/ratings/__init__.py": "from . import fit\nfrom labeling import errors\n",
        "labeling/ratings/fit.py": "import numpy\nfrom .. import db\n",
        "labeling/ratings/orm.py": "def f():\n    from sqlalchemy.orm import Session\n",
        "training/__init__.py": "",
        "training/sft.py": "from labeling.db import x\nfrom reward.evaluate import score\n",
        "reward/__init__.py": "",
        "reward/judge.py": "from training import sft\nfrom app import cli\n",
        "reward/evaluate.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    broken, _ = violations(tmp_path, {})
    found = {line.split(": ", 1)[1].rsplit(": ", 1)[0] for line in broken}
    assert found == {
        "labeling.lazy imports transformers",
        "labeling.lazy imports training.sft",
        "labeling.typed imports torch.nn",
        "labeling.dynamic imports peft",
        "labeling.ratings.fit imports labeling.db",
        "labeling.ratings.orm imports sqlalchemy.orm",
        "training.sft imports reward.evaluate",
        "reward.judge imports app.cli",
        "app.fixtures imports tests.factories",
    }, broken

    allowed = {("training.sft", "reward.evaluate"): "being moved"}
    broken, used = violations(tmp_path, allowed)
    assert used == set(allowed)
    assert not any(line.startswith("training/sft.py") for line in broken)
    assert len(broken) == 8

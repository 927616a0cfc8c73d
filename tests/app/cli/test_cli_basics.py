import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COMMAND_MODULES = sorted(p.stem for p in (ROOT / "app" / "cli").glob("*_cmd.py"))
# What a command that does not use them must not load: the ORM, the dataframes and the maths,
# the migrations, the UI, the ML stack.
HEAVY = (
    "sqlalchemy", "alembic", "pandas", "pyarrow", "numpy", "scipy", "streamlit",
    "torch", "transformers", "trl", "datasets", "peft", "accelerate",
)  # fmt: skip


def _python(code: str, **kwargs) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `code` in a fresh interpreter; also the heavy libraries it had loaded at the end
    (reported on stderr's last line)."""
    probe = (
        f"{code}\nimport json as _json, sys as _sys\n_sys.stdout.flush()\n"
        f"_heavy = sorted({{m.split('.')[0] for m in _sys.modules}} & set({HEAVY!r}))\n"
        "print('HEAVY', _json.dumps(_heavy), file=_sys.stderr)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, **kwargs
    )
    last = (out.stderr.strip().splitlines() or [""])[-1]
    return out, json.loads(last.removeprefix("HEAVY ")) if last.startswith("HEAVY ") else None


def test_help_loads_no_heavy_library():
    code = "from app.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    out, heavy = _python(code, check=True)
    assert heavy == []
    assert "COMMAND" in out.stdout


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_each_command_registers_without_heavy_imports(module):
    """`rlhf --help` imports every *_cmd module to register it: each loads what its command
    uses inside the command's function, never at import."""
    _, heavy = _python(f"import app.cli.{module}", check=True)
    assert heavy == [], f"app/cli/{module}.py imports {heavy} at module level"


def test_labeling_imports_no_ml_libraries():
    code = (
        "import sys, pkgutil, importlib, labeling\n"
        "for m in pkgutil.walk_packages(labeling.__path__, 'labeling.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('HEAVY', [m for m in ('torch', 'transformers', 'trl') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout


@pytest.mark.parametrize("database", ["missing", "unmigrated"])
def test_leaderboard_of_a_file_needs_no_account_and_no_database(tmp_path, database):
    """A battles file is pure computation: no RLHF_USER, no database (none at all, or an
    empty unmigrated file), and neither the ORM nor the database is touched."""
    battles = tmp_path / "battles.csv"
    battles.write_text("model_a,model_b,winner\nx,y,model_a\nx,y,tie\ny,x,model_b\nx,y,model_a\n")
    home = tmp_path / "home"
    db = tmp_path / "empty.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLHF_")}
    env["RLHF_HOME"] = str(home)
    if database == "unmigrated":
        db.write_bytes(b"")
        env["RLHF_DATABASE_URL"] = f"sqlite:///{db}"
    argv = ["leaderboard", "--battles", str(battles), "--json", "--ci", "sandwich"]
    out, heavy = _python(f"from app.cli.main import main\nassert main({argv!r}) == 0", env=env)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {row["model"] for row in rows} == {"x", "y"}
    assert rows[0]["model"] == "x" and rows[0]["rank"] == 1
    # The maths loads, the ORM does not; no database file appears, the empty one stays empty.
    assert "numpy" in heavy and "sqlalchemy" not in heavy, heavy
    assert not home.exists()
    assert database == "missing" or db.stat().st_size == 0


def test_leaderboard_of_a_project_still_checks_the_account(cli, admin):
    refused = cli("leaderboard", "--project", "anything")
    assert refused.code == 1 and "who is running this?" in refused.err
    unknown = cli("leaderboard", "--project", "anything", user="nobody")
    assert unknown.code == 1 and "unknown or deactivated account" in unknown.err


def test_command_roles_come_from_the_policies(cli, admin):
    from labeling.accounts import policies

    added = cli(
        "users", "add", "lab", "--role", "labeler", "--password-stdin",
        user=admin, stdin="a-labeler-password\n",
    )  # fmt: skip
    assert added.code == 0, added.err
    needs = " or ".join(r.value for r in policies.allowed("arena.manage"))
    refused = cli("arena", "status", "--project", "anything", user="lab")
    assert refused.code == 1 and f"this needs {needs}" in refused.err
    refused = cli("snapshot", "list", user="lab")
    needs = " or ".join(r.value for r in policies.allowed("snapshot.read"))
    assert refused.code == 1 and f"this needs {needs}" in refused.err
    assert cli("projects", "list", user="lab").code == 0  # projects.list: every role

import subprocess
import sys


def test_help_does_not_import_torch():
    code = (
        "import sys; from app.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout
    assert "COMMAND" in out.stdout


def test_labeling_imports_no_ml_libraries():
    code = (
        "import sys, pkgutil, importlib, labeling\n"
        "for m in pkgutil.iter_modules(labeling.__path__):\n"
        "    importlib.import_module('labeling.' + m.name)\n"
        "print('HEAVY', [m for m in ('torch', 'transformers', 'trl') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout

"""How long an `rlhf` command takes to start, against a bare Python start, one run.

    python bench/cli_startup.py [--runs 7]

Each command runs in a fresh process, --runs times, interleaved (one round runs every
command once, so drift on a shared machine hits all of them alike); medians are printed.

  python -c pass                         a bare interpreter: the floor
  python -c "import pandas, sqlalchemy.orm"
                                         what every command paid before issue 10, when each
                                         *_cmd module imported the ORM, pandas and the maths
  python -c "import labeling.ratings.leaderboard"
                                         the maths a leaderboard needs (numpy, scipy, pandas)
  rlhf --help                            registers every command, imports none of their work
  rlhf leaderboard --battles small.csv --json
                                         a 200-battle file, 5 models; no account, no database

Goal (issue 10): `rlhf --help` within 10x `python -c pass`. Ratios are printed last, on
lines starting with "ratio ".
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path, where its other benchmarks would
# shadow standard modules of the same name (bench/queue.py vs. queue): drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]


def rlhf() -> list[str]:
    """The console script next to this interpreter (as a user runs it), else the module."""
    script = Path(sys.executable).with_name("rlhf")
    found = str(script) if script.exists() else shutil.which("rlhf")
    return [found] if found else [sys.executable, "-m", "app.cli.main"]


def write_battles(path: Path, n: int = 200, seed: int = 0) -> None:
    rng = random.Random(seed)
    models = [f"model-{i}" for i in range(5)]
    lines = ["model_a,model_b,winner"]
    for _ in range(n):
        a, b = rng.sample(models, 2)
        lines.append(f"{a},{b},{rng.choice(['model_a', 'model_b', 'model_a', 'tie'])}")
    path.write_text("\n".join(lines) + "\n")


def time_once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        battles = Path(tmp) / "small.csv"
        write_battles(battles)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RLHF_")}
        env["RLHF_HOME"] = str(Path(tmp) / "home")  # never created: no database is opened
        py = sys.executable
        commands = {
            "python -c pass": [py, "-c", "pass"],
            "import pandas, sqlalchemy.orm": [py, "-c", "import pandas, sqlalchemy.orm"],
            "import labeling.ratings.leaderboard": [
                py, "-c", "import labeling.ratings.leaderboard",
            ],
            "rlhf --help": [*rlhf(), "--help"],
            "rlhf leaderboard --battles small.csv --json": [
                *rlhf(), "leaderboard", "--battles", str(battles), "--json",
            ],
        }  # fmt: skip
        for argv in commands.values():  # warm the file cache and the bytecode
            time_once(argv, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                times[name].append(time_once(argv, env))

    median = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"{'command':46} {'median s':>9} {'min s':>7} {'max s':>7}   ({args.runs} runs)")
    for name, ts in times.items():
        print(f"{name:46} {median[name]:9.3f} {min(ts):7.3f} {max(ts):7.3f}")
    bare, help_ = median["python -c pass"], median["rlhf --help"]
    board = median["rlhf leaderboard --battles small.csv --json"]
    maths = median["import labeling.ratings.leaderboard"]
    print(f"ratio rlhf --help / python -c pass: {help_ / bare:.1f}x (goal: at most 10x)")
    print(
        "ratio import pandas+sqlalchemy.orm (the old floor of every command) / rlhf --help: "
        f"{median['import pandas, sqlalchemy.orm'] / help_:.1f}x"
    )
    print(
        f"ratio rlhf leaderboard --battles / importing its maths: {board / maths:.2f}x "
        "(what the command adds to the numpy/scipy/pandas it needs)"
    )


if __name__ == "__main__":
    main()

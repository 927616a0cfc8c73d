"""A new user's first hour: the README's "Try the whole loop" block, timed command by command.

    python bench/first_hour.py                  # a fresh data root, the default policy cache too
    python bench/first_hour.py --warm-cache     # keep the de-quantized policy between runs
    python bench/first_hour.py --keep /tmp/fh   # keep the data root to look at afterwards

The commands are read from README.md between the `whole-loop` markers, so what is timed is
what the README tells a user to type (`export` lines set the environment of the lines after
them). They run one by one with bash, in a scratch RLHF_HOME with its own SQLite database,
offline. The one step a person does in the browser (a few blind votes in demo-arena) is
done here by a scripted labeler through the same labeling queue the Compare page uses,
choosing at random with a fixed seed: the bench times the machine, not the person.

Printed: per command, the minutes it took beside the minutes the README expects, then the
total, the load average (a shared machine inflates minutes) and last the ratio of the
measured total to the README's 15-minute promise.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/queue.py would shadow the standard library's queue: drop bench/ from the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
BEGIN, END = "<!-- whole-loop:begin -->", "<!-- whole-loop:end -->"
PROMISE_MIN = 15.0
VOTE_MARK = "# (browser)"  # a README line done by a person; the bench votes for them
EXPECTED = re.compile(r"~\s*([\d.]+)\s*min")


def readme_steps(readme: Path = ROOT / "README.md") -> list[tuple[str, float | None]]:
    """(command, expected minutes) of every line in the README's whole-loop bash block."""
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    fence = re.search(r"```bash\n(.*?)```", block, re.S)
    if fence is None:
        raise SystemExit("the whole-loop block has no ```bash fence")
    steps = []
    for line in fence.group(1).splitlines():
        if not line.strip() or (line.lstrip().startswith("#") and VOTE_MARK not in line):
            continue
        found = EXPECTED.search(line)
        steps.append((line.strip(), float(found.group(1)) if found else None))
    return steps


def scripted_votes(env: dict, project: str, votes: int, seed: int = 0) -> int:
    """A labeler's blind votes on the arena's open tasks, through the labeling queue."""
    os.environ.update(env)
    from labeling import projects, queue
    from labeling.accounts.users import get_user
    from labeling.db import make_engine, make_sessionmaker

    rng = random.Random(seed)
    engine = make_engine()
    cast = 0
    try:
        with make_sessionmaker(engine).begin() as s:
            arena = projects.get_project(s, project)
            user = get_user(s, "labeler")
            while cast < votes:
                assignment = queue.claim_next(s, project_id=arena.id, user_id=user.id)
                if assignment is None:
                    break
                choice = rng.choice(("a", "b", "a", "b", "tie"))
                queue.submit_preference(
                    s, task_id=assignment.task.id, user_id=user.id, choice=choice,
                    strength=None if choice == "tie" else 2,
                    time_spent_ms=rng.randint(8_000, 30_000),
                )  # fmt: skip
                cast += 1
    finally:
        engine.dispose()
    return cast


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="keep the data root in DIR (new or empty)")
    parser.add_argument("--warm-cache", action="store_true",
                        help="reuse the de-quantized default policy in --models-cache")  # fmt: skip
    parser.add_argument("--models-cache", type=Path, default=Path("/tmp/rlhf-bench/models"))
    parser.add_argument("--votes", type=int, default=8, help="scripted arena votes (8)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per command")
    opts = parser.parse_args()

    steps = readme_steps()
    home = opts.keep or Path(tempfile.mkdtemp(prefix="rlhf-first-hour-"))
    if home.exists() and any(home.iterdir()):
        print(f"{home} is not empty: pass a new or empty --keep directory", file=sys.stderr)
        return 2
    home.mkdir(parents=True, exist_ok=True)
    if opts.warm_cache:
        opts.models_cache.mkdir(parents=True, exist_ok=True)
        (home / "models").symlink_to(opts.models_cache.resolve(), target_is_directory=True)
    env = {**os.environ, "RLHF_HOME": str(home),
           "RLHF_DATABASE_URL": f"sqlite:///{home / 'rlhf.db'}", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "RLHF_USER": "admin",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    print(f"{len(steps)} commands from README.md; data root {home}; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    started = time.monotonic()
    expected_total = 0.0
    try:
        for command, expected in steps:
            expected_total += expected or 0.0
            clock = time.monotonic()
            if command.startswith("export "):
                name, _, value = command.removeprefix("export ").partition("=")
                env[name.strip()] = shlex.split(value.split("#", 1)[0])[0]
                continue
            if VOTE_MARK in command:
                cast = scripted_votes(env, "demo-arena", opts.votes)
                outcome = f"{cast} scripted votes"
            else:
                proc = subprocess.run(
                    ["bash", "-c", command], env=env, cwd=home, capture_output=True,
                    text=True, timeout=opts.timeout,
                )  # fmt: skip
                if proc.returncode != 0:
                    tail = (proc.stderr.strip() or proc.stdout.strip())[-1500:]
                    print(f"FAILED ({proc.returncode}): {command}\n{tail}", flush=True)
                    return 1
                outcome = "ok"
            minutes = (time.monotonic() - clock) / 60
            want = f"~{expected:g} min" if expected is not None else "-"
            shown = command.split("#", 1)[0].strip()
            print(f"{minutes:5.1f} min  (README {want:>9s})  {outcome:16s} {shown}", flush=True)
    finally:
        if opts.keep is None:
            shutil.rmtree(home, ignore_errors=True)
    total = (time.monotonic() - started) / 60
    print(f"total {total:.1f} min (README ~{expected_total:g} min); "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"ratio measured / promised ({PROMISE_MIN:g} min): {total / PROMISE_MIN:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

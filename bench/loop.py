"""Proof that the loop makes a model better: base -> SFT -> GRPO -> PPO on a checkable task.

    python bench/loop.py                   # the full bench (400 problems, 30% held out)
    python bench/loop.py --quick           # wiring only: few problems, 1-2 steps a stage
    python bench/loop.py --skip-ppo --problems 400 --keep /tmp/loop-home

The task family is bench/loop_tasks.py (metric unit conversions with an exact answer). The
bench drives the real product through its CLI (`python -m app.cli.main`), in a scratch
RLHF_HOME with its own SQLite database, as a team would:
  1. accounts (an admin, an engineer), an sft project with a held-out fraction;
  2. `rlhf import` of prompt / answer / completion rows (the completion is the written
     solution: a demonstration), `rlhf snapshot create --kind sft` (held-out problems are
     chosen by the prompts' hash and never trained on);
  3. `rlhf checkpoints add --model default` (SmolLM2-135M-Instruct), evaluated;
  4. `rlhf train sft` on the train split's solutions, evaluated;
  5. `rlhf train rl --algo grpo --reward verifiable` from the SFT checkpoint, evaluated;
  6. `rlhf train rl --algo ppo --reward verifiable` from the SFT checkpoint, evaluated;
  7. an arena judged by the verifier: per held-out problem, every pair of checkpoints
     battles (a correct answer beats a wrong one; both right: tie; both wrong: tie
     (bothbad)), written as a battles file that `rlhf leaderboard --battles` ranks.
Every evaluation is `rlhf eval policy --verifiable --json`: greedy answers to the held-out
problems, accuracy with a 95% Wilson interval. One line per stage (accuracy, interval, n,
minutes), then the leaderboard; the last line compares the best RL checkpoint with the base.
The default policy's safetensors cache (made from its GGUF once, ~1 min) is kept in
--models-cache between runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
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
from bench.loop_tasks import make_problems, write_jsonl  # noqa: E402

PASSWORD = "bench-password-1"
# LoRA on every linear layer with a high learning rate: SFT learns the task in ~30 steps
# (a trial: 40 steps at 1e-3 took 2-digit conversions from 0% to 98%; the bench: 30 steps,
# 0.9% -> 100% on 116 held-out problems, 14 min at load 3-9 on 2 cores).
LORA = ["--lora_r", "16", "--lora_alpha", "32", "--lora_dropout", "0.0",
        "--lora_target_modules", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
        "up_proj", "down_proj"]  # fmt: skip
NO_SAVES = ["--save_steps", "1000"]  # no trainer checkpoints mid-run: the bench never resumes


class StageFailed(RuntimeError):
    pass


def stage_flags(opts) -> dict[str, list[str]]:
    """The training flags of each stage (TRL / PPOConfig field names)."""
    quick = opts.quick
    sft = ["--max_steps", "2" if quick else str(opts.sft_steps), "--learning_rate", opts.sft_lr,
           "--per_device_train_batch_size", "8", "--max_length", "96", *LORA, *NO_SAVES]  # fmt: skip
    grpo = ["--max_steps", "1" if quick else str(opts.grpo_steps), "--learning_rate", opts.grpo_lr,
            "--per_device_train_batch_size", "8", "--num_generations", "4",
            "--max_completion_length", "16", "--temperature", "1.0", "--beta", "0.02",
            *LORA, *NO_SAVES]  # fmt: skip
    ppo = ["--max_steps", "1" if quick else str(opts.ppo_steps), "--learning_rate", opts.ppo_lr,
           "--per_device_train_batch_size", "8", "--response_length", "16",
           "--temperature", "0.7", "--kl_coef", "0.02", *LORA, *NO_SAVES]  # fmt: skip
    return {"sft": sft, "grpo": grpo, "ppo": ppo}


# --- the CLI, as a user runs it ------------------------------------------------------------


def last_json(text: str):
    """The last JSON value printed on its own lines (commands may print progress first)."""
    decoder = json.JSONDecoder()
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i][:1] in "{[":
            try:
                value, end = decoder.raw_decode("\n".join(lines[i:]))
            except json.JSONDecodeError:
                continue
            return value
    raise ValueError("no JSON in the output")


def rlhf(env: dict, user: str | None, *args: str, stdin: str | None = None, timeout=3600):
    """`python -m app.cli.main ARGS` as `user`; its JSON output, or StageFailed with the tail
    of its output."""
    run_env = {**env, **({"RLHF_USER": user} if user else {})}
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli.main", *args], env=run_env, cwd=ROOT, input=stdin,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-2000:]
        raise StageFailed(f"rlhf {' '.join(args[:3])} failed ({proc.returncode}): {tail}")
    try:
        return last_json(proc.stdout)
    except ValueError:
        return None


def set_up(env: dict, home: Path, opts) -> dict:
    """Accounts, the project, the problems imported, the snapshot, the base checkpoint."""
    rlhf(env, None, "db", "upgrade")
    rlhf(env, None, "users", "add", "admin", "--role", "admin", "--password-stdin",
         stdin=PASSWORD + "\n")  # fmt: skip
    rlhf(env, "admin", "users", "add", "engineer", "--role", "engineer", "--password-stdin",
         stdin=PASSWORD + "\n")  # fmt: skip
    rlhf(env, "admin", "projects", "create", "conversions", "--kind", "sft",
         "--heldout-fraction", str(opts.heldout_fraction))  # fmt: skip
    problems = make_problems(opts.problems, seed=opts.seed)
    path = write_jsonl(home / "conversions.jsonl", problems)
    imported = rlhf(env, "engineer", "import", "--project", "conversions", str(path), "--json")
    snap = rlhf(env, "engineer", "snapshot", "create", "--project", "conversions",
                "--kind", "sft", "--json")  # fmt: skip
    base = rlhf(env, "engineer", "checkpoints", "add", "--model", "default", "--json")
    return {"imported": imported["imported"], "snapshot": snap["id"],
            "splits": snap["splits"], "base": base["checkpoint_id"]}  # fmt: skip


def evaluate(env: dict, checkpoint: int, snapshot: int, opts) -> dict:
    return rlhf(env, "engineer", "eval", "policy", "--checkpoint", str(checkpoint),
                "--snapshot", str(snapshot), "--verifiable",
                "--max_new_tokens", str(opts.max_new_tokens), "--json")  # fmt: skip


def train(env: dict, kind: str, snapshot: int, base: int, flags: list[str], algo=None) -> dict:
    args = ["train", kind, "--snapshot", str(snapshot), "--base", f"checkpoint:{base}", "--json"]
    if algo:
        args += ["--algo", algo, "--reward", "verifiable"]
    return rlhf(env, "engineer", *args, *flags)


# --- the arena judged by the verifier --------------------------------------------------------


def verifier_battles(correct: dict[str, list[int]]) -> list[dict[str, str]]:
    """Per problem, every pair of checkpoints: the correct answer wins; both right is a tie,
    both wrong a tie (bothbad). `correct` maps a model name to its per-problem 0/1 list."""
    battles = []
    names = list(correct)
    n = len(next(iter(correct.values()), []))
    for i in range(n):
        for a, b in itertools.combinations(names, 2):
            ca, cb = correct[a][i] > 0, correct[b][i] > 0
            if ca != cb:
                winner = "model_a" if ca else "model_b"
            else:
                winner = "tie" if ca else "tie (bothbad)"
            battles.append({"model_a": a, "model_b": b, "winner": winner, "category": "verifier"})
    return battles


def leaderboard(env: dict, battles: list[dict[str, str]], path: Path) -> list[dict]:
    with open(path, "w", encoding="utf-8") as fh:
        for battle in battles:
            fh.write(json.dumps(battle) + "\n")
    return rlhf(env, None, "leaderboard", "--battles", str(path), "--json")


# --- main --------------------------------------------------------------------------------------


def line(name: str, result: dict, minutes: float) -> str:
    return (f"{name:5s} accuracy {result['accuracy']:.3f}  95% CI [{result['ci_low']:.3f}, "
            f"{result['ci_high']:.3f}]  n={result['n']}  {minutes:.1f} min")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=400, help="problems generated (400)")
    parser.add_argument("--heldout-fraction", type=float, default=0.3, help="held out (0.3)")
    parser.add_argument("--quick", action="store_true", help="wiring smoke: 40 problems, 1-2 steps")
    parser.add_argument("--skip-ppo", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the scratch home in DIR")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sft-steps", type=int, default=30)
    parser.add_argument("--grpo-steps", type=int, default=8)
    parser.add_argument("--ppo-steps", type=int, default=8)
    parser.add_argument("--sft-lr", default="1e-3")
    parser.add_argument("--grpo-lr", default="2e-5")
    parser.add_argument("--ppo-lr", default="1e-5")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="per answer (24)")
    parser.add_argument(
        "--models-cache", type=Path, default=Path("/tmp/rlhf-bench/models"),
        help="where the default policy's safetensors cache is kept between runs",
    )  # fmt: skip
    opts = parser.parse_args()
    if opts.quick:
        opts.problems = min(opts.problems, 40)

    home = opts.keep or Path(tempfile.mkdtemp(prefix="rlhf-loop-"))
    if home.exists() and any(home.iterdir()):
        print(f"{home} is not empty: pass a new or empty --keep directory", file=sys.stderr)
        return 2
    home.mkdir(parents=True, exist_ok=True)
    opts.models_cache.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(opts.models_cache.resolve(), target_is_directory=True)
    env = {**os.environ, "RLHF_HOME": str(home),
           "RLHF_DATABASE_URL": f"sqlite:///{home / 'rlhf.db'}", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}  # fmt: skip
    flags = stage_flags(opts)
    started = time.monotonic()
    try:
        info = set_up(env, home, opts)
        print(f"task: unit conversions, {info['imported']} problems, snapshot "
              f"{info['snapshot']} (train {info['splits']['train']}, held out "
              f"{info['splits']['heldout']}); load {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores", flush=True)  # fmt: skip
        results, names = {}, {}

        def stage(name: str, checkpoint: int, clock: float) -> None:
            results[name] = evaluate(env, checkpoint, info["snapshot"], opts)
            names[name] = f"{name}-ckpt{checkpoint}"
            print(line(name, results[name], (time.monotonic() - clock) / 60), flush=True)

        clock = time.monotonic()
        stage("base", info["base"], clock)
        clock = time.monotonic()
        sft = train(env, "sft", info["snapshot"], info["base"], flags["sft"])
        stage("sft", sft["checkpoint_id"], clock)
        clock = time.monotonic()
        grpo = train(env, "rl", info["snapshot"], sft["checkpoint_id"], flags["grpo"], "grpo")
        stage("grpo", grpo["checkpoint_id"], clock)
        if not opts.skip_ppo:
            clock = time.monotonic()
            ppo = train(env, "rl", info["snapshot"], sft["checkpoint_id"], flags["ppo"], "ppo")
            stage("ppo", ppo["checkpoint_id"], clock)
        battles = verifier_battles({names[k]: r["correct"] for k, r in results.items()})
        board = leaderboard(env, battles, home / "verifier_battles.jsonl")
    except StageFailed as e:
        print(f"FAILED: {e}", flush=True)
        return 1
    finally:
        if opts.keep is None:
            shutil.rmtree(home, ignore_errors=True)
    print(f"leaderboard (verifier arena, {len(battles)} battles):")
    for row in board:
        rating = "unranked" if row["rating"] is None else f"{row['rating']:.1f}"
        low, high = row.get("ci_low"), row.get("ci_high")
        ci = f" [{low:.1f}, {high:.1f}]" if low is not None and high is not None else ""
        print(f"  {row['rank']}. {row['model']:16s} {rating}{ci}  votes {row['votes']}")
    print(f"total {(time.monotonic() - started) / 60:.1f} min; load {os.getloadavg()[0]:.1f}")
    rl = max((k for k in ("grpo", "ppo") if k in results), key=lambda k: results[k]["accuracy"])
    base, best = results["base"], results[rl]
    gain = 100 * (best["accuracy"] - base["accuracy"])
    overlap = best["ci_low"] <= base["ci_high"] and base["ci_low"] <= best["ci_high"]
    print(f"RL ({rl}) beats base by {gain:+.1f} points "
          f"(intervals overlap: {'yes' if overlap else 'no'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

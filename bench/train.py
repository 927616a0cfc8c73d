"""Training throughput: plain TRL defaults against our `cpu-demo` preset, side by side.

    python bench/train.py                 # DPO on SmolLM2-135M, reward on MiniLM, accuracy
    python bench/train.py --steps 4 --no-accuracy
    python bench/train.py --accuracy      # only: the default reward model's held-out accuracy

Same data, same machine, one run. The HH-RLHF harmless sample
(../shared/data/hh-rlhf-harmless-sample.jsonl) is imported into a scratch SQLite database and
frozen as a preference snapshot; every variant reads the same rows of its train split.
Each variant runs in its own subprocess, so peak memory (VmHWM from /proc/self/status: the
process's resident high-water mark, which sees torch's allocations) does not mix.

Variants (the batch size, max_length and rows are the same on both sides of a pair):
  dpo-trl      DPOTrainer with DPOConfig defaults: full fine-tune in float32 (TRL's
               default bf16=True refuses a CPU without use_cpu), a frozen copy
               of the policy as the reference model, TRL's default activation checkpointing.
  dpo-ours     the cpu-demo `dpo:` preset (LoRA, reference log-probs precomputed once by the
               base with adapters off) + length grouping (train_sampling_strategy=
               group_by_length; transformers 5 replaced group_by_length with this field)
               + bf16 where the CPU has native bf16 (avx512_bf16 / amx_bf16).
  reward-trl   RewardTrainer with RewardConfig defaults on all-MiniLM-L6-v2.
  reward-ours  the cpu-demo `reward:` preset + length grouping + bf16 where supported.
tokens/s counts non-padding tokens (TRL's own num_tokens: the attention masks' sum) over
trainer.train()'s wall time (which includes the reference precompute for dpo-ours).
Length grouping is off by default: with TRL 1.16 / transformers 5.23 the preference
trainers' datasets have no `input_ids` column and Trainer drops an added `length` column
(remove_unused_columns) before LengthGroupedSampler reads it ("Can only automatically infer
lengths ..."); --group-by-length tries it anyway.
Ratios are printed last (goal: >= 2x for DPO, >= 1.5x for the reward model).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/queue.py would shadow the standard library's queue: drop bench/ from the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-sample.jsonl"
GOALS = {"dpo": 2.0, "reward": 1.5}


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# --- set-up (parent) ---------------------------------------------------------------------


def prepare(home: Path) -> dict:
    """Scratch database, the HH sample imported and snapshotted; returns the split files."""
    from labeling import importer, migrate, projects, snapshots
    from labeling.db import make_engine, make_sessionmaker

    db = home / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{db}")
    migrate.upgrade(engine)
    with make_sessionmaker(engine).begin() as s:
        project = projects.create_project(s, name="hh-harmless", kind="pairwise")
        result = importer.import_file(s, project=project, path=HH, skip_invalid=True)
        snap, _ = snapshots.create_snapshot(s, project=project, kind="preference")
        files = snapshots.snapshot_files(snap)
        info = {
            "snapshot_id": snap.id,
            "train": str(files["train"]),
            "heldout": str(files["heldout"]),
            "imported": result.imported,
            "rows": snap.rows,
        }
    engine.dispose()
    return info


def child(args: list[str], env: dict, timeout: float) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": (proc.stderr or proc.stdout)[-1500:]}


# --- the variants (children) ---------------------------------------------------------------


def rows(train: str, n: int, columns: list[str]):
    import datasets

    ds = datasets.Dataset.from_parquet(train).select_columns(columns)
    return ds.select(range(min(n, len(ds))))


def with_lengths(ds):
    """A `length` column (characters of the pair) for the length-grouped sampler, which can
    infer lengths only from an `input_ids` column (the preference trainers have none)."""

    def size(row):
        return {"length": sum(len(m["content"]) for k in ("prompt", "chosen", "rejected")
                              for m in row[k])}  # fmt: skip

    return ds.map(size)


def result_of(trainer, seconds: float) -> dict:
    tokens = max((h.get("num_tokens", 0) for h in trainer.state.log_history), default=0)
    return {
        "steps": trainer.state.global_step,
        "tokens": int(tokens),
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1) if seconds else 0.0,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def run_dpo(variant: str, opts) -> dict:
    import copy

    from trl import DPOConfig, DPOTrainer

    from training import spec as common
    from training.models import load_policy, resolve_model

    preset = common.load_preset("cpu-demo", "dpo")
    steps, batch = opts.steps, opts.batch or preset.get("per_device_train_batch_size", 4)
    max_length = preset.get("max_length", 256)
    data = rows(opts.train, steps * batch, ["prompt", "chosen", "rejected"])
    model, tokenizer = load_policy(resolve_model("default", kind="policy").path)
    out = str(Path(opts.home) / "bench-out" / variant)
    same = {"max_steps": steps, "per_device_train_batch_size": batch, "max_length": max_length}
    if variant == "dpo-trl":
        config = DPOConfig(output_dir=out, report_to="none", save_strategy="no", bf16=False, **same)
        config.logging_steps = 1
        ref_model, peft = copy.deepcopy(model).eval(), None
    else:
        flags = [f"--{k}={v}" for k, v in same.items()]
        if opts.group_by_length:  # see the module docstring: fails in TRL 1.16
            flags += ["--train_sampling_strategy", "group_by_length"]
        flags += ["--bf16", "true", "--use_cpu", "true"] if opts.bf16 else ["--bf16", "false"]
        config, model_config, _ = common.parse_config(DPOConfig, "cpu-demo", "dpo", flags)
        config.output_dir = out
        ref_model, peft = None, common.peft_config(model_config)
        data = with_lengths(data) if opts.group_by_length else data
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=config,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=peft,
    )
    start = time.perf_counter()
    trainer.train()
    return result_of(trainer, time.perf_counter() - start)


def run_reward(variant: str, opts) -> dict:
    from trl import RewardConfig, RewardTrainer

    from training import spec as common
    from training.models import load_reward_model, resolve_model

    preset = common.load_preset("cpu-demo", "reward")
    batch = opts.batch_reward or preset.get("per_device_train_batch_size", 16)
    max_length = preset.get("max_length", 256)
    data = rows(opts.train, opts.reward_rows, ["prompt", "chosen", "rejected", "margin"])
    model, tokenizer = load_reward_model(resolve_model("default", kind="reward").path)
    out = str(Path(opts.home) / "bench-out" / variant)
    same = {"num_train_epochs": 1, "per_device_train_batch_size": batch, "max_length": max_length}
    if variant == "reward-trl":
        config = RewardConfig(
            output_dir=out, report_to="none", save_strategy="no", bf16=False, **same
        )
        config.logging_steps = 1
        peft = None
    else:
        flags = [f"--{k}={v}" for k, v in same.items()]
        if opts.group_by_length:  # see the module docstring: fails in TRL 1.16
            flags += ["--train_sampling_strategy", "group_by_length"]
        flags += ["--bf16", "true", "--use_cpu", "true"] if opts.bf16 else ["--bf16", "false"]
        config, model_config, _ = common.parse_config(RewardConfig, "cpu-demo", "reward", flags)
        config.output_dir = out
        peft = common.peft_config(model_config)
        data = with_lengths(data) if opts.group_by_length else data
    trainer = RewardTrainer(
        model=model, args=config, train_dataset=data, processing_class=tokenizer, peft_config=peft
    )
    start = time.perf_counter()
    trainer.train()
    return result_of(trainer, time.perf_counter() - start)


def run_accuracy(opts) -> dict:
    """The default reward model, cpu-demo preset, one epoch on the HH snapshot's train split
    through the real recipe (reward/train.py): its held-out accuracy."""
    from labeling.accounts.users import add_user
    from labeling.db import make_engine, make_sessionmaker
    from reward.train import run

    maker = make_sessionmaker(make_engine())
    with maker.begin() as s:
        user = add_user(s, name="bench", role="engineer", password="bench-password-1")
        user_id = user.id
    result = run(snapshot_id=opts.snapshot_id, created_by=user_id, sessionmaker=maker,
                 json_output=True)  # fmt: skip
    m = result["metrics"]
    return {"heldout_accuracy": m["heldout_accuracy"], "heldout_n": m["heldout_n"],
            "train_rows": m["train_rows"], "steps": m["steps"], "seconds": m["seconds"]}  # fmt: skip


def child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    for name in ("--home", "--train"):
        parser.add_argument(name)
    for name in ("--steps", "--batch", "--batch-reward", "--reward-rows", "--snapshot-id"):
        parser.add_argument(name, type=int)
    parser.add_argument("--bf16", type=int, default=0)
    parser.add_argument("--group-by-length", type=int, default=0)
    opts = parser.parse_args(argv)
    variant = opts.child
    with open(os.devnull, "w") as devnull:  # the trainers' prints stay off our stdout
        stdout, sys.stdout = sys.stdout, devnull
        try:
            if variant == "prepare-models":
                from training.models import resolve_model

                resolve_model("default", kind="policy")
                result = {"ok": True}
            elif variant.startswith("dpo"):
                result = run_dpo(variant, opts)
            elif variant.startswith("reward"):
                result = run_reward(variant, opts)
            else:
                result = run_accuracy(opts)
        finally:
            sys.stdout = stdout
    print(json.dumps(result), flush=True)
    return 0


# --- main (parent) -------------------------------------------------------------------------


def main() -> int:
    if "--child" in sys.argv:
        return child_main(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="DPO steps per variant (4)")
    parser.add_argument("--batch", type=int, default=0, help="DPO batch (preset's)")
    parser.add_argument("--batch-reward", type=int, default=0, help="reward batch (preset's)")
    parser.add_argument("--reward-rows", type=int, default=256, help="reward pairs (256)")
    parser.add_argument("--accuracy", action="store_true", help="only the accuracy run")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the accuracy run")
    parser.add_argument("--only", choices=["dpo", "reward"], help="only one pair of variants")
    parser.add_argument(
        "--group-by-length",
        action="store_true",
        help="add length grouping to ours (fails in TRL 1.16, see above)",
    )
    opts = parser.parse_args()

    home = Path(os.environ.get("RLHF_BENCH_HOME", "/tmp/rlhf-bench"))
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "RLHF_HOME": str(home), "RLHF_DATABASE_URL": f"sqlite:///{home / 'bench.db'}",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}  # fmt: skip
    os.environ.update(env)
    started = time.monotonic()
    info = prepare(home)
    bf16 = cpu_has_bf16()
    print(f"data: {HH.name}: {info['imported']} imported, snapshot {info['snapshot_id']}; "
          f"cpu bf16: {'yes' if bf16 else 'no'}; cores: {os.cpu_count()}", flush=True)  # fmt: skip
    common = ["--home", str(home), "--train", info["train"], "--steps", str(opts.steps),
              "--batch", str(opts.batch), "--batch-reward", str(opts.batch_reward),
              "--reward-rows", str(opts.reward_rows), "--bf16", str(int(bf16)),
              "--snapshot-id", str(info["snapshot_id"]),
              "--group-by-length", str(int(opts.group_by_length))]  # fmt: skip
    if opts.accuracy:
        acc = child(["accuracy", *common], env, 900)
        print(f"reward accuracy (MiniLM, cpu-demo, 1 epoch): {json.dumps(acc)}")
        return 0

    child(["prepare-models", *common], env, 300)  # the GGUF -> safetensors cache, once
    pairs = [p for p in ("dpo", "reward") if opts.only in (None, p)]
    results: dict[str, dict] = {}
    for pair in pairs:
        for side in ("trl", "ours"):
            variant = f"{pair}-{side}"
            results[variant] = r = child([variant, *common], env, 600)
            if "error" in r:
                print(f"{variant:12s} FAILED: {r['error']}", flush=True)
                continue
            print(f"{variant:12s} steps={r['steps']:<3d} tokens={r['tokens']:<7d} "
                  f"seconds={r['seconds']:<8.2f} tokens/s={r['tokens_per_s']:<8.1f} "
                  f"peak_rss={r['peak_rss_mb']:.0f} MiB", flush=True)  # fmt: skip
    if not opts.no_accuracy:
        acc = child(["accuracy", *common], env, 600)
        print(f"reward accuracy (MiniLM, cpu-demo, 1 epoch on the HH snapshot): {json.dumps(acc)}")
    print(f"total bench time: {time.monotonic() - started:.0f} s")
    for pair in pairs:
        base, ours = results.get(f"{pair}-trl", {}), results.get(f"{pair}-ours", {})
        if "tokens_per_s" not in base or "tokens_per_s" not in ours or not base["tokens_per_s"]:
            print(f"ratio {pair}: not measured")
            continue
        speed = ours["tokens_per_s"] / base["tokens_per_s"]
        memory = ours["peak_rss_mb"] / base["peak_rss_mb"]
        verdict = "goal met" if speed >= GOALS[pair] else "goal MISSED"
        print(f"ratio {pair}: tokens/s x{speed:.2f} (goal >= {GOALS[pair]}x, {verdict}), "
              f"peak memory x{memory:.2f} (ours / trl)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

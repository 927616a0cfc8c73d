"""Reward-model held-out accuracy on real HH-RLHF harmless pairs: plain TRL against ours.

    python bench/reward.py                  # trl, ours-minilm, ours-smollm2 (the whole bench)
    python bench/reward.py --quick          # a smoke run: few pairs, few steps, short budget
    python bench/reward.py --only ours-minilm --flags "--num_train_epochs 2"

The HH-RLHF harmless sample (../shared/data/hh-rlhf-harmless-sample.jsonl, 600 pairs) is
imported into a scratch SQLite database with a fixed 20% held-out split (the prompt hash
decides) and frozen as a preference snapshot; every variant trains on its train split and is
scored on the same held-out rows by reward/evaluate.py. Each variant runs in its own
subprocess (bench/train.py's pattern).

Variants:
  trl           RewardTrainer with RewardConfig's defaults (lr 1e-4, 3 epochs, batch 8) on
                all-MiniLM-L6-v2, the old way: every pair with a side over max_length is
                dropped by the trainer. max_length is 512, not TRL's 1024: MiniLM has 512
                positions, longer rows would crash it. --trl-as-ours: the cpu-demo preset's
                max_length, batch and learning rate instead (its epochs unless 0). The model
                is transformers' own BertForSequenceClassification ([CLS] pooler, random head).
  ours-minilm   the real recipe (reward/train.py) with --base minilm and the cpu-demo
                `reward:` preset (+ the per-backbone flags below): every pair fitted to the
                budget, MiniLM scoring its last token, the head fitted as a linear probe on
                the frozen features, 0 epochs of fine-tuning (`--flags "--num_train_epochs 3"`:
                LP-FT).
  ours-smollm2  the real recipe with --base policy:default: SmolLM2-135M-Instruct as a
                sequence classifier, LoRA + the new score head, bf16 autocast where the CPU
                has it (avx512_bf16 / amx_bf16).
Each line: held-out accuracy, its 95% Wilson interval, "longer wins" on the same rows, ECE,
pairs trained on / dropped, minutes; the load average is printed with it (a shared machine
inflates minutes, not accuracy). The ratio (ours, the default backbone / trl accuracy) last.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/queue.py would shadow the standard library's queue: drop bench/ from the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-sample.jsonl"
HELDOUT_FRACTION = 0.2
VARIANTS = ("trl", "ours-minilm", "ours-smollm2")
BASES = {"ours-minilm": "minilm", "ours-smollm2": "policy:default"}
# Flags per backbone over the cpu-demo preset: each one's best recipe as measured here.
BACKBONE_FLAGS = {
    "ours-minilm": ["--use_peft", "false"],
    "ours-smollm2": ["--use_peft", "true"],
}
QUICK_FLAGS = ["--max_steps", "2", "--max_length", "128", "--per_device_train_batch_size", "4"]


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --- set-up (parent) ---------------------------------------------------------------------


def prepare(home: Path, limit: int | None) -> dict:
    """Scratch database, the HH sample imported (20% held out) and snapshotted."""
    import shutil

    from labeling import importer, migrate, projects, snapshots
    from labeling.db import make_engine, make_sessionmaker

    db = home / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    for scratch in ("checkpoints", "runs", "bench-out"):  # a new database reuses run ids
        shutil.rmtree(home / scratch, ignore_errors=True)
    source = HH
    if limit:
        source = home / "hh-quick.jsonl"
        source.write_text("".join(HH.read_text().splitlines(keepends=True)[:limit]))
    engine = make_engine(f"sqlite:///{db}")
    migrate.upgrade(engine)
    with make_sessionmaker(engine).begin() as s:
        project = projects.create_project(
            s, name="hh-harmless", kind="pairwise", heldout_fraction=HELDOUT_FRACTION
        )
        result = importer.import_file(s, project=project, path=source, skip_invalid=True)
        snap, _ = snapshots.create_snapshot(s, project=project, kind="preference")
        files = snapshots.snapshot_files(snap)
        info = {"snapshot_id": snap.id, "train": str(files["train"]),
                "heldout": str(files["heldout"]), "imported": result.imported}  # fmt: skip
    engine.dispose()
    return info


def child(args: list[str], env: dict, timeout: float) -> dict:
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", *args],
            env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": (proc.stderr or proc.stdout)[-1500:]}


# --- the variants (children) ---------------------------------------------------------------


def run_trl(opts) -> dict:
    """RewardTrainer, RewardConfig defaults, MiniLM; scored like ours on the held-out rows."""
    import datasets
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from reward.evaluate import preference_accuracy
    from reward.truncation import read_rows
    from training.models import load_reward_model, resolve_model

    # plain TRL: transformers' own BertForSequenceClassification (the [CLS] pooler, a random
    # head), not our last-token classifier with its fitted head; our tokenizer set-up (EOS, the
    # encoder chat template), which RewardTrainer needs for conversations
    _, tokenizer = load_reward_model("minilm")
    folder = resolve_model("minilm", kind="reward").path
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=1, use_safetensors=True
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    train = datasets.Dataset.from_parquet(opts.train).select_columns(
        ["prompt", "chosen", "rejected", "margin"]
    )
    kwargs = {"max_length": 512}
    if opts.trl_as_ours:  # the same budget, epochs, batch and rate as ours: only the drops differ
        from training.spec import load_preset

        preset = load_preset("cpu-demo", "reward")
        keys = ("max_length", "num_train_epochs", "per_device_train_batch_size", "learning_rate")
        kwargs = {k: preset[k] for k in keys if preset.get(k)}  # epochs 0 (a probe): TRL's 3
    if opts.quick:
        kwargs.update(max_steps=2, max_length=128, per_device_train_batch_size=4)
    config = RewardConfig(
        output_dir=str(Path(opts.home) / "bench-out" / "trl"), report_to="none",
        save_strategy="no", bf16=False, use_cpu=True, **kwargs,
    )  # fmt: skip
    trainer = RewardTrainer(model=model, args=config, train_dataset=train,
                            processing_class=tokenizer)  # fmt: skip
    trainer.train()
    heldout = read_rows(opts.heldout)
    result = preference_accuracy(trainer.model, tokenizer, heldout, max_length=512)
    result.update(train_rows=len(train), trained_rows=len(trainer.train_dataset),
                  dropped_rows=len(train) - len(trainer.train_dataset))  # fmt: skip
    return result


def run_ours(variant: str, opts) -> dict:
    """The real recipe (reward/train.py) on the bench's snapshot."""
    from labeling.accounts.users import add_user
    from labeling.db import make_engine, make_sessionmaker
    from labeling.models import Checkpoint
    from reward.train import run
    from training.spec import Call, RunSpec

    flags = list(BACKBONE_FLAGS[variant])
    if variant == "ours-smollm2" and opts.bf16:
        flags += ["--bf16", "true", "--use_cpu", "true"]
    flags += QUICK_FLAGS if opts.quick else []
    flags += shlex.split(opts.flags or "")
    maker = make_sessionmaker(make_engine())
    with maker.begin() as s:
        name = f"bench-{variant}-{os.getpid()}"
        user_id = add_user(s, name=name, role="engineer", password="bench-password-1").id
    spec = RunSpec.from_flags("reward", snapshot_id=opts.snapshot_id, base=BASES[variant],
                              flags=flags)  # fmt: skip
    result = run(spec, Call(created_by=user_id, sessionmaker=maker, json_output=True))
    with maker.begin() as s:
        evaluation = dict(s.get(Checkpoint, result["checkpoint_id"]).evaluation)
    m = result["metrics"]
    evaluation.update(train_rows=m["train_rows"], truncated_rows=m["truncated_rows"],
                      dropped_rows=m["dropped_rows"], flags=" ".join(flags))  # fmt: skip
    evaluation["trained_rows"] = m["train_rows"] - m["dropped_rows"]
    return evaluation


def child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    for name in ("--home", "--train", "--heldout", "--flags"):
        parser.add_argument(name)
    parser.add_argument("--snapshot-id", type=int)
    parser.add_argument("--bf16", type=int, default=0)
    parser.add_argument("--quick", type=int, default=0)
    parser.add_argument("--trl-as-ours", type=int, default=0)
    opts = parser.parse_args(argv)
    started = time.monotonic()
    with open(os.devnull, "w") as devnull:  # the trainers' prints stay off our stdout
        stdout, sys.stdout = sys.stdout, devnull
        try:
            if opts.child == "prepare-models":
                from training.models import resolve_model

                resolve_model("policy:default", kind="reward")
                result = {"ok": True}
            elif opts.child == "trl":
                result = run_trl(opts)
            else:
                result = run_ours(opts.child, opts)
        finally:
            sys.stdout = stdout
    result["minutes"] = (time.monotonic() - started) / 60
    print(json.dumps(result), flush=True)
    return 0


# --- main (parent) -------------------------------------------------------------------------


def line(name: str, r: dict) -> str:
    if "error" in r:
        return f"{name:13s} FAILED: {r['error']}"
    return (
        f"{name:13s} accuracy={r['accuracy']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] "
        f"n={r['n']} longer_wins={r['longer_wins_accuracy']:.3f} ece={r['ece']:.3f} "
        f"trained={r['trained_rows']}/{r['train_rows']} dropped={r['dropped_rows']} "
        f"truncated={r.get('truncated_rows', '-')} minutes={r['minutes']:.1f} "
        f"load={load_average()}"
    )


def main() -> int:
    if "--child" in sys.argv:
        return child_main(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 40 pairs, 2 steps")
    parser.add_argument("--only", choices=VARIANTS, action="append", help="variants to run")
    parser.add_argument("--flags", default="", help="more recipe flags for ours-* variants")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per variant")
    parser.add_argument(
        "--trl-as-ours",
        action="store_true",
        help="trl with the cpu-demo preset's max_length, epochs, batch and learning rate "
        "(the old recipe: only the dropped pairs differ from ours-minilm)",
    )
    opts = parser.parse_args()

    home = Path(os.environ.get("RLHF_BENCH_HOME", "/tmp/rlhf-bench-reward"))
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "RLHF_HOME": str(home),
           "RLHF_DATABASE_URL": f"sqlite:///{home / 'bench.db'}",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}  # fmt: skip
    os.environ.update(env)
    started = time.monotonic()
    info = prepare(home, 40 if opts.quick else None)
    bf16 = cpu_has_bf16()
    print(f"data: {HH.name}: {info['imported']} imported, snapshot {info['snapshot_id']} "
          f"({HELDOUT_FRACTION:.0%} held out); cpu bf16: {'yes' if bf16 else 'no'}; "
          f"cores: {os.cpu_count()}; load: {load_average()}", flush=True)  # fmt: skip
    common = ["--home", str(home), "--train", info["train"], "--heldout", info["heldout"],
              "--snapshot-id", str(info["snapshot_id"]), "--bf16", str(int(bf16)),
              "--quick", str(int(opts.quick)), "--flags", opts.flags,
              "--trl-as-ours", str(int(opts.trl_as_ours))]  # fmt: skip
    variants = [v for v in VARIANTS if not opts.only or v in opts.only]
    if "ours-smollm2" in variants:
        child(["prepare-models", *common], env, 600)  # the GGUF -> safetensors cache, once
    results: dict[str, dict] = {}
    for variant in variants:
        results[variant] = child([variant, *common], env, opts.timeout)
        print(line(variant, results[variant]), flush=True)
    print(f"total bench time: {(time.monotonic() - started) / 60:.1f} min")
    from training.models import REWARD_DEFAULT

    ours = "ours-smollm2" if REWARD_DEFAULT.startswith("policy:") else "ours-minilm"
    base, mine = results.get("trl", {}), results.get(ours, {})
    if not base.get("accuracy") or mine.get("accuracy") is None:
        print(f"ratio {ours} / trl accuracy: not measured")
        return 0
    print(f"ratio {ours} / trl accuracy: x{mine['accuracy'] / base['accuracy']:.3f} "
          f"({mine['accuracy']:.3f} / {base['accuracy']:.3f}; goal: >= 0.65 held-out and above "
          f"longer-wins {mine['longer_wins_accuracy']:.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

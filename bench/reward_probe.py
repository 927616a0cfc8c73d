"""What each reward backbone knows before any fine-tuning: a linear head on its frozen features,
5-fold cross-validated on every pair of the HH harmless sample (each pair held out once, so
~600 held-out predictions instead of bench/reward.py's 126).

    python bench/reward_probe.py [--max-length 384] [--folds 5] [--limit N]

Features are what a sequence classifier's head reads of prompt + answer through the chat
template, fitted to the budget exactly as training and scoring fit them
(training.scoring.fit_conversation): SmolLM2-135M-Instruct's last-token hidden state (what
LlamaForSequenceClassification pools), all-MiniLM-L6-v2's last token ([SEP]) and its mean.
The head is an L2 logistic regression on feature differences (chosen - rejected); its
strength is chosen inside each training fold (nested: 3 inner folds), so the held-out
figure is not picked on the held-out pairs. Printed per feature: accuracy with a 95% Wilson
interval, and "longer wins" on the same pairs; the ratio (SmolLM2 / MiniLM last token) last.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-sample.jsonl"


def pairs(limit: int | None) -> list[dict]:
    """The sample through our own importer and a preference snapshot (both splits)."""
    import tempfile

    from labeling import importer, migrate, projects, snapshots
    from labeling.db import make_engine, make_sessionmaker
    from reward.truncation import read_rows

    home = Path(tempfile.mkdtemp(prefix="rlhf-bench-probe-"))
    source = HH
    if limit:
        source = home / "hh.jsonl"
        source.write_text("".join(HH.read_text().splitlines(keepends=True)[:limit]))
    engine = make_engine(f"sqlite:///{home / 'bench.db'}")
    migrate.upgrade(engine)
    import os

    os.environ["RLHF_HOME"] = str(home)
    with make_sessionmaker(engine).begin() as s:
        project = projects.create_project(s, name="hh", kind="pairwise")
        importer.import_file(s, project=project, path=source, skip_invalid=True)
        snap, _ = snapshots.create_snapshot(s, project=project, kind="preference")
        files = snapshots.snapshot_files(snap)
        rows = [r for split in ("train", "heldout") if Path(files[split]).exists()
                for r in read_rows(files[split])]  # fmt: skip
    engine.dispose()
    return rows


def features(backbone: str, rows: list[dict], max_length: int):
    """{name: array (pairs, 2, hidden)} of the backbone's frozen features."""
    import numpy as np
    import torch

    from training.models import load_policy, load_reward_model
    from training.scoring import fit_conversation

    if backbone == "smollm2":
        model, tokenizer = load_policy("default")
        trunk, autocast = model.model, torch.bfloat16
    else:
        model, tokenizer = load_reward_model("minilm")
        trunk, autocast = model.base_model, None
    trunk.eval()
    ids = [fit_conversation(tokenizer, list(r.get("prompt") or []) + list(r[side]), max_length)[1]
           for r in rows for side in ("chosen", "rejected")]  # fmt: skip
    out: dict[str, list] = {"last": [None] * len(ids), "mean": [None] * len(ids)}
    pad = tokenizer.pad_token_id or 0
    by_length = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # less padding per batch
    for start in range(0, len(ids), 8):
        batch = by_length[start : start + 8]
        width = max(len(ids[i]) for i in batch)
        x = torch.tensor([ids[i] + [pad] * (width - len(ids[i])) for i in batch])
        mask = torch.tensor([[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in batch])
        with torch.no_grad(), torch.autocast("cpu", dtype=autocast or torch.float32,
                                             enabled=autocast is not None):  # fmt: skip
            h = trunk(input_ids=x, attention_mask=mask).last_hidden_state.float()
        last = h[torch.arange(len(batch)), mask.sum(1) - 1]
        mean = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        for j, i in enumerate(batch):
            out["last"][i], out["mean"][i] = last[j].numpy(), mean[j].numpy()
    names = ("last",) if backbone == "smollm2" else ("last", "mean")
    return {n: np.stack(out[n]).reshape(len(rows), 2, -1) for n in names}


def nested_cv(x, k: int) -> tuple[int, int, list[float]]:
    """(correct, n, the strength chosen in each outer fold), the strength chosen inside each
    training fold as the reward recipe's head fitting chooses it (reward/head_init.py)."""
    from reward.head_init import choose_strength, fit, folds_of

    d = x[:, 0] - x[:, 1]
    outer = folds_of(len(d), k, seed=0)
    correct, chosen = 0, []
    for f in range(k):
        train, test = d[outer != f], d[outer == f]
        best = choose_strength(train)[0]
        chosen.append(best)
        sd = train.std(0) + 1e-6
        correct += int((((test / sd) @ fit(train / sd, best)) > 0).sum())
    return correct, len(d), chosen


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--limit", type=int, help="the first N lines of the sample (a smoke run)")
    opts = parser.parse_args()
    rows = pairs(opts.limit)
    longer = sum(len(r["chosen"][-1]["content"]) > len(r["rejected"][-1]["content"]) for r in rows)
    print(f"data: {len(rows)} pairs of {HH.name}; {opts.folds}-fold nested CV; budget "
          f"{opts.max_length} tokens; longer wins {longer / len(rows):.3f}", flush=True)  # fmt: skip
    results = {}
    for backbone in ("minilm", "smollm2"):
        start = time.monotonic()
        feats = features(backbone, rows, opts.max_length)
        seconds = time.monotonic() - start
        for name, x in feats.items():
            correct, n, chosen = nested_cv(x, opts.folds)
            low, high = wilson(correct, n)
            results[(backbone, name)] = correct / n
            print(f"{backbone:8s} {name:5s} frozen + linear head: accuracy {correct / n:.3f} "
                  f"[{low:.3f}, {high:.3f}] n={n}  C per fold {chosen}  features "
                  f"{seconds / 60:.1f} min", flush=True)  # fmt: skip
    ratio = results[("smollm2", "last")] / results[("minilm", "last")]
    print(f"ratio smollm2 / minilm (last token, frozen + linear head): x{ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

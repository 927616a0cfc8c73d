"""Active learning on real HH-RLHF harmless pairs: labels spent against held-out accuracy,
when simulated labelers reveal labels in the order each strategy asks, against random order.

    python bench/active.py                  # the whole bench (a few minutes on 2 cores)
    python bench/active.py --quick          # a smoke run: 200 pairs, short texts
    python bench/active.py --cache /tmp/hh-emb.npz   # embed once, rerun from the file

The sample (../shared/data/hh-rlhf-harmless-sample.jsonl, 600 pairs, parsed by the importer's
hh-rlhf format) is embedded ONCE by the default reward backbone (all-MiniLM-L6-v2, frozen:
reward/active.py's embed, prompt + answer through its chat template, cut to --max-length
tokens), and every strategy reuses the embeddings. A fixed held-out set (150 pairs) is split
off; the rest is the pool. Each run starts from the same random seed set of labels (40) and
adds batches (40) chosen by its strategy from the pool's unlabeled pairs, refitting the same
ensemble as `rlhf queue prioritise` (reward/active.py: k = 5 bootstrap logistic heads,
L2 = reward.active.L2; the default base's score head is untrained, so no prior) after each
batch. The labeler is simulated: the pair's HH label (chosen beats rejected) is revealed.
Accuracy: the share of held-out pairs whose ensemble-mean predicted margin favours the chosen
answer. Every strategy runs over --seeds seeds (each seed: its own seed set, bootstrap and
shuffle) and the curves are their means.

Printed: the curve per strategy (labels spent -> mean held-out accuracy), then the labels
each strategy needs until its mean curve first reaches the target (the accuracy random
reaches with the whole pool, minus one point), and last the ratio: labels random needs /
labels each active strategy needs, the command's default (margin) last (above 1: active
learning saves labels). The mean accuracy over the whole curve is printed too: the curves
are flat and noisy here, so "first reaches the target" moves with a single point.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# bench/queue.py would shadow the standard library's queue: drop bench/ from the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-sample.jsonl"
HELDOUT, SEED_SET, BATCH = 150, 40, 40
STRATEGIES = ("random", "disagreement", "margin")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def read_pairs(limit: int | None) -> list[tuple[list[dict], str, str]]:
    """(prompt messages, chosen, rejected) per parsable HH row, in file order."""
    from labeling.import_formats import RowProblem, parse_row

    out = []
    with open(HH, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            try:
                row = parse_row("hh-rlhf", number, json.loads(line), None)
            except RowProblem:
                continue
            out.append((row.messages, row.texts[0], row.texts[1]))
            if limit and len(out) >= limit:
                break
    return out


def embed_pairs(pairs, max_length: int) -> np.ndarray:
    """x = emb(prompt + chosen) - emb(prompt + rejected) for every pair, one pass."""
    import transformers

    from reward.active import embed
    from training.models import load_reward_model

    transformers.logging.set_verbosity_error()  # the untrained head's load report: expected
    model, tokenizer = load_reward_model("default")
    conversations = []
    for messages, chosen, rejected in pairs:
        for text in (chosen, rejected):
            conversations.append(list(messages) + [{"role": "assistant", "content": text}])
    emb, _ = embed(model, tokenizer, conversations, max_length=max_length)
    return emb[0::2] - emb[1::2]


def simulate(
    x: np.ndarray, strategy: str, seed: int, *, k: int, l2: float
) -> list[tuple[int, float]]:
    """(labels spent, held-out accuracy) after the seed set and after each batch."""
    from reward import active

    n = len(x)
    split = np.random.default_rng(12345).permutation(n)  # the same held-out set for all
    held, pool = split[:HELDOUT], split[HELDOUT:]
    rng = np.random.default_rng(seed)
    labeled = list(rng.choice(pool, SEED_SET, replace=False))
    curve = []
    while True:
        # every pair is oriented chosen - rejected: A wins; the model has no bias term, so
        # orientation changes nothing (x(B, A) = -x(A, B))
        heads = active.fit_ensemble(x[labeled], np.ones(len(labeled), bool), k=k, seed=seed, l2=l2)
        held_margin = active.score_pairs(heads, x[held]).margin
        curve.append((len(labeled), float(np.mean(held_margin > 0))))
        left = np.setdiff1d(pool, labeled)
        if len(left) == 0:
            return curve
        scores = active.score_pairs(heads, x[left])
        picks = active.order(strategy, scores, seed=seed + 1000 * len(labeled))[:BATCH]
        labeled.extend(left[picks])


def needed(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((spent for spent, accuracy in curve if accuracy >= target - 1e-12), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 pairs, 64 tokens")
    parser.add_argument("--seeds", type=int, default=10, help="runs per strategy (default 10)")
    parser.add_argument("--k", type=int, default=5, help="ensemble heads (default 5)")
    parser.add_argument("--l2", type=float, help="the heads' ridge (default reward.active.L2)")
    parser.add_argument("--max-length", type=int, default=256, help="tokens per text")
    parser.add_argument("--cache", type=Path, help="an .npz of the pair features, reused")
    opts = parser.parse_args()
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "TOKENIZERS_PARALLELISM": "false"})  # fmt: skip
    os.environ.setdefault("RLHF_HOME", "/tmp/rlhf-bench-active")
    from reward import active

    started = time.monotonic()
    max_length = 64 if opts.quick else opts.max_length
    if opts.cache and opts.cache.is_file():
        x = np.load(opts.cache)["x"]
        how = f"features from {opts.cache}"
    else:
        pairs = read_pairs(200 if opts.quick else None)
        x = embed_pairs(pairs, max_length)
        if opts.cache:
            np.savez(opts.cache, x=x)
        how = f"embedded in {time.monotonic() - started:.0f} s"
    x = x / active.feature_scale(x)
    l2 = active.L2 if opts.l2 is None else opts.l2
    pool = len(x) - HELDOUT
    print(f"data: {HH.name}: {len(x)} pairs ({HELDOUT} held out, pool {pool}); backbone: "
          f"all-MiniLM-L6-v2 frozen, {max_length} tokens, {how}; ensemble k={opts.k}, "
          f"L2={l2}; seed set {SEED_SET}, batches of {BATCH}; {opts.seeds} seeds; "
          f"load: {load_average()}", flush=True)  # fmt: skip

    curves = {}
    for strategy in STRATEGIES:
        runs = [simulate(x, strategy, seed, k=opts.k, l2=l2) for seed in range(opts.seeds)]
        spent = [s for s, _ in runs[0]]
        mean = np.mean([[a for _, a in run] for run in runs], axis=0)
        spread = np.std([[a for _, a in run] for run in runs], axis=0)
        curves[strategy] = list(zip(spent, mean.tolist(), strict=True))
        points = " ".join(f"{s}:{a:.3f}" for s, a in curves[strategy])
        print(f"{strategy:12s} labels:accuracy {points}  (std over seeds at the end "
              f"{spread[-1]:.3f})", flush=True)  # fmt: skip

    full = curves["random"][-1][1]
    target = full - 0.01
    need = {s: needed(curves[s], target) for s in STRATEGIES}
    print(
        f"target: {target:.3f} held-out accuracy (random with the whole pool, {full:.3f}, "
        "minus one point)"
    )
    for strategy in STRATEGIES:
        got = need[strategy]
        print(f"{strategy:12s} needs {got if got is not None else f'more than {pool}'} labels")
    for strategy in STRATEGIES:
        mean = np.mean([a for _, a in curves[strategy]])
        print(f"{strategy:12s} mean accuracy over the curve {mean:.3f}")
    print(f"bench time: {(time.monotonic() - started) / 60:.1f} min")
    for strategy in STRATEGIES[1:]:  # the command's default strategy (margin) last
        base, mine = need["random"], need[strategy]
        if base is None or mine is None:
            print(f"ratio labels random / {strategy} to reach {target:.3f}: not reached "
                  f"(random {base}, {strategy} {mine})")  # fmt: skip
        else:
            print(f"ratio labels random / {strategy} to reach {target:.3f}: "
                  f"x{base / mine:.2f} ({base} / {mine})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

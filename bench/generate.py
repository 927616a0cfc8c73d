"""Generation throughput: batched (training/generate.py) against one prompt at a time.

    python bench/generate.py                      # 32 prompts, 64 new tokens, greedy, auto batch
    python bench/generate.py --batch_size 16 --max_new_tokens 32 --prompts 16

The default policy (SmolLM2-135M-Instruct, `load_policy("default")`; the first load converts
its GGUF, ~30 s, cached under $RLHF_BENCH_HOME/models, default /tmp/rlhf-bench) answers the
same fixed, varied short prompts greedily through the same code path (`generate_texts`):
batched (length-sorted, left-padded, batch size fitted to memory or --batch_size) and with
batch size 1. Greedy decoding makes both sides' answers the same (the script counts the
exact matches; float32 round-off in padded batches could flip a near-tie).

The machine is shared: other jobs come and go, and they slow batch-1 decoding and batched
decoding by very different amounts (two OpenMP threads that wait for each other in every
matmul suffer most when a third process takes a core mid-matmul). So the two sides are
interleaved in --rounds rounds: each round answers 1/rounds of the prompts one at a time,
then all prompts batched; each side's tokens/s is its total generated tokens (non-pad, up to
and including each answer's EOS) over its total generation wall time. The 1-minute load
average after each run is shown. torch uses all of the machine's cores. The ratio is
printed last (goal: >= 4x).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/queue.py would shadow the standard library's queue: drop bench/ from the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
GOAL = 4.0

# Held-out-like prompts: short, varied in topic and length (a few are multi-turn).
PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for sleeping better.",
    "Explain photosynthesis to a ten-year-old.",
    "Write a haiku about autumn leaves.",
    "How do I boil an egg?",
    "What is the difference between weather and climate?",
    "Suggest a name for a friendly robot.",
    "Why is the sky blue?",
    "Translate 'good morning' into Spanish and German.",
    "What are prime numbers? Give two examples.",
    "Summarise the plot of Cinderella in two sentences.",
    "How can I make my code easier to read?",
    "What should I pack for a weekend hiking trip?",
    "Is a tomato a fruit or a vegetable?",
    "Write a short thank-you note to a teacher.",
    "What does a database index do?",
    "Name three animals that live in the ocean.",
    "How many minutes are there in a day?",
    "Give me a simple recipe for pancakes.",
    "What is the boiling point of water at sea level?",
    "Explain what a black hole is in one paragraph.",
    "How do bees make honey?",
    "What is a good way to start learning to draw?",
    "Write one sentence that uses the word 'serendipity'.",
    "What causes rainbows?",
    "List four primary colours used in printing.",
    "How do I politely decline an invitation?",
    "What is the Pythagorean theorem?",
    "Hi!",
    "Why do cats purr?",
    [
        ("user", "I want to learn a new language."),
        ("assistant", "That's great! Which language interests you?"),
        ("user", "Maybe Italian. Where should I start?"),
    ],
    [
        ("user", "Can you help me plan a birthday party?"),
        ("assistant", "Of course. How many guests are you expecting?"),
        ("user", "About ten people, mostly kids. What games could we play?"),
    ],
]


def conversations(count: int) -> list[list[dict]]:
    out = []
    for p in PROMPTS[:count]:
        turns = [("user", p)] if isinstance(p, str) else p
        out.append([{"role": r, "content": c} for r, c in turns])
    return out


@dataclass
class Side:
    """One variant's totals over the rounds."""

    tokens: int = 0
    seconds: float = 0.0
    batches: int = 0
    prompt_padding: int = 0
    slots: int = 0  # decode steps x rows
    batch_size: int = 0
    loads: list[float] = field(default_factory=list)

    def add(self, result) -> None:
        self.tokens += result.total_tokens
        self.seconds += result.seconds
        self.batches += result.batches
        self.prompt_padding += result.padding["prompt_padding"]
        self.slots += result.padding["steps_x_rows"]
        self.batch_size = result.batch_size
        self.loads.append(os.getloadavg()[0])

    def report(self, name: str) -> float:
        rate = self.tokens / self.seconds
        print(
            f"{name:<14} batch {self.batch_size:>3}  batches {self.batches:>3}  "
            f"tokens {self.tokens:>5}  seconds {self.seconds:6.1f}  tokens/s {rate:7.2f}  "
            f"prompt padding {self.prompt_padding:>4} tokens  "
            f"decode slots after EOS {1 - self.tokens / max(1, self.slots):.0%}  "
            f"load avg {min(self.loads):.1f}-{max(self.loads):.1f}"
        )
        return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=len(PROMPTS))
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--batch_size", type=int, help="default: auto_batch_size")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (see above)")
    opts = parser.parse_args()

    home = Path(os.environ.get("RLHF_BENCH_HOME", "/tmp/rlhf-bench"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["RLHF_HOME"] = str(home)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from training.generate import generate_texts
    from training.models import load_policy

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(cores)
    model, tokenizer = load_policy("default")
    prompts = conversations(opts.prompts)
    print(
        f"SmolLM2-135M-Instruct, float32, {cores} threads, {len(prompts)} prompts, "
        f"max_new_tokens {opts.max_new_tokens}, greedy, {opts.rounds} interleaved rounds, "
        f"torch {torch.__version__}"
    )
    generate_texts(model, tokenizer, prompts[:2], max_new_tokens=4, batch_size=2)  # warm-up

    common = {"max_new_tokens": opts.max_new_tokens, "temperature": 0.0}
    batched, single = Side(), Side()
    batched_ids: list[list[int]] = []
    single_ids: dict[int, list[int]] = {}
    for r in range(opts.rounds):
        # A quarter (1/rounds) of the prompts one at a time, then all of them batched.
        part = list(range(r, len(prompts), opts.rounds))
        one = generate_texts(model, tokenizer, [prompts[i] for i in part], batch_size=1, **common)
        single.add(one)
        single_ids.update(zip(part, one.token_ids, strict=True))
        many = generate_texts(model, tokenizer, prompts, batch_size=opts.batch_size, **common)
        batched.add(many)
        batched_ids = many.token_ids
    fast = batched.report("batched")
    slow = single.report("one at a time")
    same = sum(batched_ids[i] == single_ids[i] for i in range(len(prompts)))
    print(f"identical answers: {same}/{len(prompts)}")
    print(f"ratio batched/one-at-a-time tokens/s: {fast / slow:.2f}x (goal >= {GOAL:g}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

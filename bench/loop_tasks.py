"""The task family of bench/loop.py: metric unit conversions with one exact answer.

    make_problems(500, seed=0) -> [{"prompt": "Convert 44 km to m.", "answer": "44000",
                                    "completion": "44 km = 44000 m."}, ...]

Why this family: the default policy (SmolLM2-135M-Instruct, de-quantized from Q4_1) gets
almost none right at baseline (it rambles, invents factors: "1000 m = 4400 m"), while the rule
(a known factor of 10, 100 or 1000: append zeros) is learnable by LoRA on a 2-core CPU in
a few dozen steps. Prompts and answers are short, so generation (the cost on a CPU) is cheap.
The written solution restates the question and ends on the result, which is what the
verifier reads (training/verifiers.py: a \\boxed{} else the last number).
No torch, no database: the bench and its test import this alone.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# (from, to, factor): converting to the smaller unit multiplies by a power of ten.
CONVERSIONS = (
    ("km", "m", 1000),
    ("m", "cm", 100),
    ("cm", "mm", 10),
    ("m", "mm", 1000),
    ("kg", "g", 1000),
    ("g", "mg", 1000),
    ("L", "mL", 1000),
)
LOW, HIGH = 2, 999  # the quantity converted


def make_problem(rng: random.Random) -> dict[str, str]:
    unit, to, factor = rng.choice(CONVERSIONS)
    quantity = rng.randint(LOW, HIGH)
    result = quantity * factor
    return {
        "prompt": f"Convert {quantity} {unit} to {to}.",
        "answer": str(result),
        "completion": f"{quantity} {unit} = {result} {to}.",
    }


def make_problems(n: int, seed: int = 0) -> list[dict[str, str]]:
    """n distinct problems, the same for the same (n, seed)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    space = len(CONVERSIONS) * (HIGH - LOW + 1)
    if n > space:
        raise ValueError(f"at most {space} distinct problems")
    rng = random.Random(seed)
    seen: set[str] = set()
    out = []
    while len(out) < n:
        problem = make_problem(rng)
        if problem["prompt"] not in seen:
            seen.add(problem["prompt"])
            out.append(problem)
    return out


def write_jsonl(path: Path, problems: list[dict[str, str]]) -> Path:
    """One JSON object a line: prompt, answer, completion (what `rlhf import` reads)."""
    with open(path, "w", encoding="utf-8") as fh:
        for problem in problems:
            fh.write(json.dumps(problem) + "\n")
    return path

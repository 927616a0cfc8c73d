"""Untrusted-text renderer: the old regex renderer against the CommonMark one, in one run.

    python bench/render.py                 # 60k-character word, 100k mixed, typical 2 kB
    python bench/render.py --runs 7 --word 20000

Baseline: the renderer this project shipped before issue 9 (regexes for fences, code spans
and bare addresses; copied below unchanged). Its e-mail pattern is quadratic in a run of
word characters: a 60,000-character word takes tens of seconds, so the baseline runs that
case `--baseline-runs` times only (default 1). Ours: app.ui.render.inert_markdown
(markdown-it-py, re-emitted, checked once more before it returns).

Printed: median seconds of each case for both, which path ours took (parsed, or plain
for text over its size budget), and last the ratios baseline / ours.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.ui import render  # noqa: E402

# --- the baseline: app/ui/render.py before issue 9, unchanged ------------------------------

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})[^\n]*\n.*?(?:^(?P=fence)[ \t]*$|\Z)", re.M | re.S)
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
_ESCAPE = str.maketrans(
    {"<": "&lt;", ">": "&gt;", "&": "&amp;", "[": "\\[", "]": "\\]", "$": "\\$", ":": "&#58;",
     "\\": "\\\\"}
)  # fmt: skip
_AUTOLINK = re.compile(
    r"(?i)(?:\b(?:https?|ftp)://|\bwww\.|\bmailto:)[^\s<>()\[\]]*|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
)


def old_inert_markdown(text: str) -> str:
    out: list[str] = []
    pos = 0
    for fence in _FENCE.finditer(text):
        out.append(_old_escape_inline(text[pos : fence.start()]))
        block = fence.group(0)
        if not block.endswith("\n"):
            block += "\n"
        opener = fence.group("fence")
        if not re.search(rf"^{re.escape(opener)}[ \t]*$", block.split("\n", 1)[1], re.M):
            block += opener + "\n"
        out.append(block)
        pos = fence.end()
    out.append(_old_escape_inline(text[pos:]))
    return "".join(out)


def _old_escape_inline(text: str) -> str:
    out, pos = [], 0
    for span in _CODE_SPAN.finditer(text):
        out.append(_old_escape_plain(text[pos : span.start()]))
        out.append(span.group(0))
        pos = span.end()
    out.append(_old_escape_plain(text[pos:]))
    return "".join(out)


def _old_escape_plain(text: str) -> str:
    out, pos = [], 0
    for match in _AUTOLINK.finditer(text):
        out.append(text[pos : match.start()].translate(_ESCAPE))
        longest = max((len(run) for run in re.findall(r"`+", match.group(0))), default=0)
        fence, pad = "`" * (longest + 1), " " if longest else ""
        out.append(f"{fence}{pad}{match.group(0)}{pad}{fence}")
        pos = match.end()
    out.append(text[pos:].translate(_ESCAPE))
    return "".join(out)


# --- the cases ------------------------------------------------------------------------------

PIECES = [
    "Some prose, with a few words in it. ", "**bold** ", "*emphasis* ", "`code` ",
    "[a link](http://example.invalid/x) ", "\n\n", "- a list item\n", "1. a numbered one\n",
    "> a quote\n", "```python\nprint('hi')\n```\n", "## A heading\n", "www.example.invalid ",
    "a@b.example ", ":smile: ", "$x$ ", "<b>html</b> ", "![img](http://example.invalid/p.png) ",
]  # fmt: skip


def mixed(size: int, seed: int = 9) -> str:
    rng = random.Random(seed)
    out, n = [], 0
    while n < size:
        out.append(rng.choice(PIECES))
        n += len(out[-1])
    return "".join(out)[:size]


def median_s(fn, text: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per case (median)")
    parser.add_argument("--baseline-runs", type=int, default=1, help="baseline runs, long word")
    parser.add_argument("--word", type=int, default=60_000, help="length of the long word")
    args = parser.parse_args()
    cases = {
        f"one {args.word:,}-character word": ("w" * args.word, args.baseline_runs),
        "100k characters of mixed Markdown": (mixed(100_000), args.runs),
        "a typical 2 kB answer": (mixed(2_000, seed=3), args.runs),
    }
    rows = []
    print(f"{'case':40s} {'baseline s':>11s} {'ours s':>9s}  ours took")
    for name, (text, base_runs) in cases.items():
        ours = median_s(render.inert_markdown, text, args.runs)
        base = median_s(old_inert_markdown, text, base_runs)
        path = "plain (over budget)" if render._too_big(text) else "parsed"
        rows.append((name, base, ours))
        print(f"{name:40s} {base:11.4f} {ours:9.4f}  {path}", flush=True)
    print()
    for name, base, ours in rows:
        print(f"ratio baseline/ours, {name}: {base / ours:.3g}x")


if __name__ == "__main__":
    main()

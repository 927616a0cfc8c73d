"""Verifiable rewards: the final answer of a completion checked against a gold answer.

    verifiable_rewards(["... so the answer is 42."], ["42"]) -> [1.0]

1. The final answer is extracted (`extract_answer`): with a project's `pattern` (a regex),
   its last match - the first group, else the whole match - and nothing else (the project
   said how answers are written; no match is no answer). Without one, the first that applies:
   the last `\\boxed{...}` (nested braces kept: `\\boxed{\\frac{3}{4}}`), the text after the
   last `####` (GSM8K), the words after the last "answer is" / "answer:", the last number
   (1,234.5, -7, 3/4, 50%).
2. It is compared with the gold answer (`answers_match`), from which the same markers are
   taken first (a GSM8K solution "... #### 72" has the gold answer 72):
   - numbers: both sides read as numbers ("1,000", "$1,000", "1000.0", "+3", "3/4",
     "\\frac{3}{4}", "0.75", "75%") are equal exactly, or within a relative tolerance of
     1e-6 and at most 1e-6 apart (rounding noise, never another whole number); a
     percentage also matches its fraction (50% == 0.5) as well as its number (50% == 50);
     against a numeric gold answer, an answer with words ("x = 5", "42 apples") is its last
     number;
   - otherwise the texts are equal after normalising: lower case, LaTeX `\\text{}` / `$`
     wrappers and punctuation dropped, a leading "the", "a" or "an" dropped, spaces folded.
3. Where TRL's optional dependency math_verify is installed, `trl.rewards.accuracy_reward`
   is asked too and a completion it accepts counts as correct (symbolic equivalence:
   \\frac{1}{2} == 0.5 == 1/2, intervals, sets); without it (the default here) only the rules
   above apply. `math_verify_available()` says which.
4. The reward is 1.0 for a correct answer, else 0.0, plus `format_weight` where a final answer
   could be extracted at all (a small nudge to state one). A row without a gold answer
   scores 0.0 (plus the format part).

No torch; used by training/rl.py (GRPO, RLOO: `trl_reward_func` as a TRL reward function),
training/ppo.py and `rlhf eval policy --verifiable` (training/evaluate_policy.py).
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Callable
from fractions import Fraction

# 1,234.5 | 1234 | -7 | .5 | 3/4 | 50% | 2e5 - thousands groups only in threes, so "1,2,3" is three
# numbers and the last is 3.
NUMBER = re.compile(
    r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?"
    r"(?:\s*/\s*\d+(?:\.\d+)?)?%?"
    r"|(?<![\w.])[-+]?\.\d+%?"
)
BOX_OPENERS = ("\\boxed{", "\\fbox{")
HASHES = re.compile(r"####\s*(.+)")
ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*[:=]?\s*(.+)", re.IGNORECASE)
_FRAC = re.compile(r"^\\d?frac\{([^{}]+)\}\{([^{}]+)\}$")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")
_ARTICLE = re.compile(r"^(?:the|a|an)\s+")
REL_TOL = 1e-6
ABS_TOL = 1e-6
MAX_NUMBER_CHARS = 400


def _boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} / \\fbox{...}, braces balanced; None if none."""
    best_at, best = -1, None
    for opener in BOX_OPENERS:
        start = text.rfind(opener)
        if start <= best_at:
            continue
        depth, i = 1, start + len(opener)
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            best_at, best = start, text[start + len(opener) : i - 1]
    return best


def _clean_tail(text: str) -> str:
    """A phrase after a marker, up to the end of its line and without a closing full stop."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.strip().rstrip(".").strip()


def extract_answer(text: str, pattern: str | None = None) -> str | None:
    """The completion's final answer, or None when it has none (see the module docstring)."""
    if not isinstance(text, str):
        return None
    if pattern:
        found = re.findall(pattern, text)
        if not found:
            return None
        last = found[-1]
        answer = (last[0] if isinstance(last, tuple) else last).strip()
        return answer or None
    boxed = _boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    for marker in (HASHES, ANSWER_IS):
        matches = marker.findall(text)
        if matches:
            tail = _clean_tail(matches[-1])
            if tail:
                return tail
    numbers = NUMBER.findall(text)
    return numbers[-1].strip() if numbers else None


def gold_final_answer(gold: str) -> str:
    """The final answer inside a gold answer that is a whole solution (\\boxed{}, ####);
    else the gold answer itself."""
    boxed = _boxed(gold)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    matches = HASHES.findall(gold)
    if matches and _clean_tail(matches[-1]):
        return _clean_tail(matches[-1])
    return gold.strip()


def _numbers(text: str) -> list[Fraction]:
    """The values `text` may mean as a number, exactly ([] when it is not one); a percentage
    means both its number and its fraction."""
    t = text.strip().strip("$").replace("\\$", "").replace("\\!", "").replace(" ", "")
    t = t.replace("\\left", "").replace("\\right", "").strip("()")
    t = t.replace("\u2212", "-").replace(",", "").rstrip(".")
    percent = t.endswith("%")
    t = t.removesuffix("%").removesuffix("\\")
    sign = ""
    if t[:1] in "+-" and t[1:]:
        sign, t = t[0], t[1:]
    if len(t) > MAX_NUMBER_CHARS:
        return []
    frac = _FRAC.match(t)
    try:
        if frac:
            value = _exact(frac.group(1)) / _exact(frac.group(2))
        elif "/" in t:
            num, den = t.split("/", 1)
            value = _exact(num) / _exact(den)
        else:
            value = _exact(t)
    except (ValueError, ZeroDivisionError, OverflowError):
        return []
    value = -value if sign == "-" else value
    return [value, value / 100] if percent else [value]


def _exact(text: str) -> Fraction:
    """A decimal as an exact Fraction; with an exponent through float, so "1e999999999"
    (inf: refused) never builds a number with a billion digits."""
    if "e" in text.lower():
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(text)
        return Fraction(value)
    return Fraction(text)


def _close(a: Fraction, b: Fraction, rel_tol: float) -> bool:
    """Exactly equal, or within rel_tol of each other and at most ABS_TOL apart: rounding
    noise (0.3333333333333333 == 1/3), never a different whole number (1000000.5 != 1000000,
    123456790 != 123456789)."""
    if a == b:
        return True
    try:
        return abs(float(a - b)) <= min(rel_tol * float(max(abs(a), abs(b))), ABS_TOL)
    except OverflowError:  # hundreds of digits apart
        return False


def _normalise(text: str) -> str:
    text = _TEXT_WRAPPER.sub(r"\1", text).replace("$", "")
    text = re.sub(r"[^\w\s.-]", " ", text.lower())
    text = " ".join(text.split()).strip(" .")
    return _ARTICLE.sub("", text)


def answers_match(predicted: str | None, gold: str, *, rel_tol: float = REL_TOL) -> bool:
    """Numbers equal within rel_tol (1,000 == 1000.0, 3/4 == 0.75, 50% == 0.5), else the
    normalised texts equal; the gold answer's own final answer (\\boxed{}, ####) is taken
    first."""
    if predicted is None or gold is None:
        return False
    gold = gold_final_answer(str(gold))
    a, b = _numbers(predicted), _numbers(gold)
    if b and not a:  # a numeric gold answer: "x = 5", "42 apples" mean their last number
        numbers = NUMBER.findall(predicted)
        a = _numbers(numbers[-1]) if numbers else []
    if a and b:
        return any(_close(x, y, rel_tol) for x in a for y in b)
    return _normalise(predicted) == _normalise(gold) != ""


# --- TRL's math_verify check, where its optional dependency is installed -----------------


def math_verify_available() -> bool:
    return importlib.util.find_spec("math_verify") is not None


def _math_verify(completions: list[str], answers: list[str | None]) -> list[bool]:
    """TRL's accuracy_reward on the rows that have a gold answer (False elsewhere, and where
    it cannot parse the gold answer)."""
    from trl.rewards import accuracy_reward

    rows = [i for i, gold in enumerate(answers) if gold is not None]
    out = [False] * len(completions)
    if not rows:
        return out
    scores = accuracy_reward(
        [[{"role": "assistant", "content": completions[i]}] for i in rows],
        [str(answers[i]) for i in rows],
    )
    for i, score in zip(rows, scores, strict=True):
        out[i] = bool(score) and score >= 1.0
    return out


def correctness(
    completions: list[str],
    answers: list[str | None],
    *,
    pattern: str | None = None,
    use_math_verify: bool | None = None,
) -> list[tuple[str | None, bool]]:
    """(extracted final answer, correct?) per completion. use_math_verify: None = where
    installed."""
    if use_math_verify is None:
        use_math_verify = math_verify_available()
    out = []
    for completion, gold in zip(completions, answers, strict=True):
        predicted = extract_answer(completion, pattern)
        ok = gold is not None and answers_match(predicted, str(gold))
        out.append((predicted, ok))
    if use_math_verify and pattern is None:  # a project's own format is checked by its regex
        verified = _math_verify(list(completions), list(answers))
        out = [(p, ok or v) for (p, ok), v in zip(out, verified, strict=True)]
    return out


def verifiable_rewards(
    completions: list[str],
    answers: list[str | None],
    *,
    pattern: str | None = None,
    format_weight: float = 0.0,
) -> list[float]:
    """1.0 for a correct final answer, else 0.0; plus format_weight where an answer could be
    extracted at all. A row without a gold answer scores 0.0 (plus the format part)."""
    out = []
    for predicted, ok in correctness(completions, answers, pattern=pattern):
        value = 1.0 if ok else 0.0
        if format_weight and predicted is not None:
            value += format_weight
        out.append(value)
    return out


def completion_text(completion) -> str:
    """A TRL completion (a string, or a conversation: a list of {role, content}) as text."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role") == "assistant")


def trl_reward_func(*, pattern: str | None = None, format_weight: float = 0.0) -> Callable:
    """A reward function for TRL's GRPOTrainer / RLOOTrainer (`reward_funcs=`): the dataset's
    `answer` column arrives as a keyword argument."""

    def verifier(prompts, completions, answer=None, **_):
        answers = list(answer) if answer is not None else [None] * len(completions)
        texts = [completion_text(c) for c in completions]
        return verifiable_rewards(texts, answers, pattern=pattern, format_weight=format_weight)

    verifier.__name__ = "verifier"
    return verifier

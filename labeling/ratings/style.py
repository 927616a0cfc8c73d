"""Style features of an answer (length and markdown) and the covariates style control fits.

With `fit(..., style=True)` every battle gets f_k = (a_k − b_k)/(a_k + b_k) for each feature
in STYLE_FEATURES and d = θ_a − θ_b + β·f (see labeling/ratings/leaderboard.py).
"""

from __future__ import annotations

import re

import numpy as np

STYLE_FEATURES = ("length", "headers", "lists", "bold")


_CODE_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)
_HEADER = re.compile(r"^ {0,3}#{1,6}\s", re.M)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s", re.M)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")


def style_features(text: str) -> dict[str, float]:
    """Style counts of one answer, for style control.

    length: whitespace-separated words (a tokenizer-free stand-in for tokens; read_battles takes
    Chatbot Arena's token counts when a dump has them). headers: lines starting with 1–6 '#'.
    lists: ordered and unordered list items. bold: **bold** and __bold__ spans. Fenced code
    blocks count towards length but not markdown (a '# comment' in code is no header).
    """
    prose = _CODE_FENCE.sub("", text)
    return {
        "length": float(len(text.split())),
        "headers": float(len(_HEADER.findall(prose))),
        "lists": float(len(_LIST_ITEM.findall(prose))),
        "bold": float(len(_BOLD.findall(prose))),
    }


def _normalised_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a − b)/(a + b) per feature, 0 where both are 0: Chatbot Arena's style covariates."""
    total = a + b
    return np.divide(a - b, total, out=np.zeros_like(total), where=total > 0)

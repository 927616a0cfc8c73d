"""Content hashes: the identity of prompts, responses and tasks, for de-duplication and splits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_hash(messages: list[dict[str, Any]]) -> str:
    """Identity of a conversation: only roles and contents count."""
    core = [{"role": m["role"], "content": m["content"]} for m in messages]
    return sha256_text(canonical_json(core))


def task_hash(kind: str, prompt_sha: str, response_shas: Iterable[str] = ()) -> str:
    return sha256_text(canonical_json([kind, prompt_sha, list(response_shas)]))


def split_for_hash(content_hash: str, heldout_fraction: float) -> str:
    """Stable split from the prompt's hash: the same prompt always lands in the same split."""
    bucket = int(content_hash[:8], 16) / 0x1_0000_0000
    return "heldout" if bucket < heldout_fraction else "train"

"""Register a model that no run trained (the default policy, a local directory, a hub id) as a
checkpoint, so it can answer prompts and enter arenas as a baseline.

    rlhf checkpoints add --model default --name smollm2-base
    rlhf checkpoints add --model /models/my-sft --kind policy --json

The weights are loaded through training/models.py (safetensors only) and written again as
safetensors into an atomic checkpoint directory under $RLHF_HOME/checkpoints/NAME; the
checkpoint has no run and no snapshot, and names its source in `base_model` and `config`.
"""

from __future__ import annotations

import re
from typing import Any

from labeling.bounds import check_name
from labeling.errors import InvalidInput
from labeling.registry import training_records


def add_model(
    sessionmaker, *, model: str, name: str | None = None, kind: str = "policy"
) -> dict[str, Any]:
    from training.models import load_policy, load_reward_model, resolve_model

    if kind not in ("policy", "reward"):
        raise InvalidInput("kind must be policy or reward")
    if name is not None:
        # Refuse bidi/zero-width characters with their own sentence before the directory
        # name's stricter ASCII rule (training_records.prepare_checkpoint_dir) applies.
        name = check_name(name, "checkpoint")
    resolved = resolve_model(model, kind=kind)
    if resolved.checkpoint_id is not None:
        raise InvalidInput(f"{model!r} is already checkpoint {resolved.checkpoint_id}")
    name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", resolved.base_model.rsplit("/", 1)[-1]).strip(
        "-"
    )
    loader = load_policy if kind == "policy" else load_reward_model
    weights, tokenizer = loader(model)

    def save(directory) -> None:
        weights.save_pretrained(directory, safe_serialization=True)
        tokenizer.save_pretrained(directory)

    directory = training_records.write_checkpoint_dir(name, save)
    with sessionmaker.begin() as s:
        checkpoint = training_records.register_checkpoint(
            s, kind=kind, directory=directory, run_id=None, base_model=resolved.base_model,
            config={"source": model}, name=name,
        )  # fmt: skip
        return {"checkpoint_id": checkpoint.id, "name": name, "kind": kind, "path": str(directory)}

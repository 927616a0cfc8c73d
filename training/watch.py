"""The over-optimisation watch of an RL run: is the policy still getting better, or is it
gaming the reward model? Every algorithm of `rlhf train rl` runs it (GRPO / RLOO: a
TrainerCallback; PPO: a call in its own loop).

    rlhf train rl ... [--watch_every 10] [--watch_prompts 4] [--watch_judge checkpoint:9|verifiable]
                      [--kl_budget 20] [--stop_on_divergence]

The defaults cost about 11% of a cpu-demo run (measured with GRPO and PPO on the default
models: 2 points of 4 prompts in 10 steps, ~4.4 s each with one thread; a point is a
generation and two forwards of the watch's prompts). The divergence rule needs 3 points:
with a judge, watch more often (--watch_every 3).

 1. The prompts: a fixed held-out set the run does not train on - up to --watch_prompts
    (default 4) of the snapshot's held-out split, chosen by the config's seed; a snapshot
    without held-out prompts has that many held back from its training prompts (never
    leaving fewer than MIN_TRAIN_ROWS to train on). Which and how many is in the run's
    config (`watch`: source, prompts, their SHA-256).
 2. At step 0 (before any update) and every --watch_every steps (default 10; and at the last
    step) the policy answers them: sampled at temperature 1 with a fixed seed (the
    training's random state is left as it was), up to the run's completion length. Then, stored as run
    metrics at that step (the RunMetric rows the recorder writes; the Runs page and
    `rlhf runs` show them):
      watch/reward        mean of the run's own reward on those answers (the reward model's
                          score standardised with its checkpoint's score mean / std, times
                          its weight, plus the verifier's) and watch/reward_se its standard error
      watch/kl            KL(policy || base) per answer: the sum over the answer's tokens of
                          the per-token estimate k3 = (r - 1) - log r, r = p_base / p_policy,
                          on the policy's own samples (unbiased like log p_policy - log p_base,
                          but never below 0 and less noisy on a few prompts), averaged over
                          the answers; watch/kl_per_token: the same per token.
                          The base is the reference of the KL term: with LoRA the policy with
                          its adapters disabled, else a frozen copy
      watch/length        mean answer length in tokens (up to and including the EOS)
      watch/distinct_1, watch/distinct_2   distinct word uni- / bigrams over all answers,
                          divided by all of them (1: no repetition)
      watch/judge         with --watch_judge: a length-neutral judge's mean score on the same
                          answers (another reward checkpoint, standardised the same way, or
                          `verifiable`: the share of gold answers matched) and watch/judge_se
      watch/diverging     with a judge: 1 when the reward climbs while the judge does not
                          (see `diverging`), else 0
      watch/human_diverging   with --gold_check_steps: 1 when the labelers' votes on the gold
                          checks say the same (see `human_diverging`), else 0
 3. The stop rule. --kl_budget X: when watch/kl passes X the run stops and the checkpoint it
    registers is the policy at the best watch point within the budget (highest
    watch/reward); --stop_on_divergence (needs --watch_judge): when the watch flags
    divergence the run stops and keeps the policy at the judge's best watch point. The
    trainable weights (LoRA: the adapters) are copied in memory at each point that is the
    best so far. The run's metrics record `watch_stopped` (kl_budget, divergence, or null),
    `watch_best_step` and `watch_points`; `--json` prints the summary under "watch".
--watch_every 0 turns the watch off.
 4. The gold checks (--gold_check_steps 20,40 [--gold_check_arena NAME]; GoldChecks below):
    at each listed step the policy is written atomically and registered as a checkpoint of
    the run (rl-grpo-run12-step20, parent = the base, config {"gold_check_step": 20}); after
    the run each enters an arena against the base alone (training/arena_entry.py) for
    labelers to judge blind, and labeling/arena/gold_checks.py turns their votes into win
    rates with Wilson intervals (the Runs page shows them beside watch/reward). The human
    side of the divergence rule: at each watch point the run reads the votes on its gold
    checks so far; when two checks with at least MIN_GOLD_VOTES votes each show the reward
    (the watch point at or before each check's step) rising by Z standard errors while the
    win rate against the base does not rise, that counts as divergence too (warned, and
    with --stop_on_divergence the run stops). The checks enter the arena only after the run
    (generating their answers would stall training), so votes exist during a run only where
    someone entered a check by hand while it trains (`rlhf arena enter --project NAME
    --checkpoint ID`: a gold check is paired with its base alone); with no votes yet only
    the automatic judge (--watch_judge) can stop a run. The run never waits for votes.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_EVERY = 10
DEFAULT_PROMPTS = 4
WINDOW = 3  # watch points the divergence rule looks back over
Z = 2.0  # the reward's rise must be this many standard errors to count
MIN_GOLD_VOTES = 10  # labelers' votes a gold check needs before its win rate counts


# --- the numbers ---------------------------------------------------------------------------


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct word n-grams over all the texts divided by all their n-grams (0 when none)."""
    grams = []
    for text in texts:
        words = text.split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def kl_k3(logprobs, ref_logprobs):
    """Per-token KL(policy || reference) on the policy's own samples, Schulman's k3:
    (r - 1) - log r with r = p_ref / p. Unbiased like k1 (log p - log p_ref), never negative,
    and with less variance: on a few watch prompts k1 often comes out below 0."""
    import torch

    log_ratio = logprobs - ref_logprobs
    return torch.expm1(-log_ratio) + log_ratio


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean) of the values."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def completion_logprobs(model, sequences, attention_mask, completion_mask, width):
    """Per-token log-probabilities of the completion tokens sequences[:, width:] (0 where
    masked), as training/evaluate_policy.py computes them, with logits for the completion's
    positions only (the lm head over a 49k vocabulary is a good part of a small model's
    forward on the CPU)."""
    import torch

    with torch.inference_mode():
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        n = sequences.shape[1] - width
        logits = model(
            input_ids=sequences, attention_mask=attention_mask, position_ids=position_ids,
            logits_to_keep=n + 1,
        ).logits  # fmt: skip
        logits = logits[:, -(n + 1) : -1].float()
        tokens = sequences[:, width:]
        logps = torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return logps * completion_mask


def _rise(points: list[dict], key: str) -> tuple[float, float]:
    """(last - first, z) of a metric over the points; z = the rise over its standard error."""
    first, last = points[0], points[-1]
    rise = last[key] - first[key]
    se = math.sqrt(first.get(key + "_se", 0.0) ** 2 + last.get(key + "_se", 0.0) ** 2)
    if se == 0:
        return rise, math.copysign(math.inf, rise) if rise else 0.0
    return rise, rise / se


def diverging(points: list[dict], window: int = WINDOW, z: float = Z) -> bool:
    """Over the last `window` watch points ({"reward", "reward_se", "judge", "judge_se"}):
    the reward rose significantly (last - first over at least z standard errors of the
    difference) while the judge did not rise (last - first <= 0). Fewer points: False."""
    if len(points) < window or any(p.get("judge") is None for p in points[-window:]):
        return False
    recent = points[-window:]
    _, reward_z = _rise(recent, "reward")
    judge_rise, _ = _rise(recent, "judge")
    return reward_z >= z and judge_rise <= 0


def human_diverging(
    checks: list[dict], points: list[dict], *, z: float = Z, min_votes: int = MIN_GOLD_VOTES
) -> bool:
    """The labelers' side of the divergence rule. checks: gold-check results
    (labeling/arena/gold_checks.py: step, wins, losses, ties, n; one row per arena, pooled
    here); points: the watch's. Of the gold checks with at least `min_votes` votes against
    the base, the first and the last by step: the watch's reward (the point at or nearest
    before each step) rose by at least z standard errors while the win rate (ties half) did
    not rise. Fewer than two such checks: False."""
    pooled: dict[int, list[float]] = {}
    for c in checks:
        score_n = pooled.setdefault(int(c["step"]), [0.0, 0.0])
        score_n[0] += c.get("wins", 0) + c.get("ties", 0) / 2
        score_n[1] += c.get("n", 0)
    judged = sorted((step, sn[0] / sn[1]) for step, sn in pooled.items() if sn[1] >= min_votes)
    if len(judged) < 2:
        return False

    def at(step: int) -> dict | None:
        before = [p for p in points if p["step"] <= step]
        return before[-1] if before else None

    (first_step, first_rate), (last_step, last_rate) = judged[0], judged[-1]
    first, last = at(first_step), at(last_step)
    if first is None or last is None or first is last:
        return False
    _, reward_z = _rise([first, last], "reward")
    return reward_z >= z and last_rate <= first_rate


# --- the prompts ---------------------------------------------------------------------------


def pick_prompts(
    heldout: list[dict], train: list[dict], n: int, seed: int, min_train: int
) -> tuple[list[dict], list[dict], str]:
    """(watch prompts, training prompts, source): up to n of the held-out rows (a seeded
    choice), else up to n held back from the training rows (never leaving fewer than
    min_train); source is "heldout", "train" (held back) or "none"."""
    import random

    if n <= 0:
        return [], train, "none"
    if heldout:
        order = list(range(len(heldout)))
        random.Random(seed).shuffle(order)
        return [heldout[i] for i in sorted(order[:n])], train, "heldout"
    k = min(n, len(train) - min_train)
    if k <= 0:
        return [], train, "none"
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    back = set(order[:k])
    return (
        [r for i, r in enumerate(train) if i in back],
        [r for i, r in enumerate(train) if i not in back],
        "train",
    )


def prompts_sha(rows: list[dict]) -> str:
    return hashlib.sha256(
        json.dumps([r["prompt"] for r in rows], sort_keys=True).encode()
    ).hexdigest()


# --- the watch -----------------------------------------------------------------------------

ScoreFn = Callable[[list[list[dict]], list[str], list[dict]], list[float]]


@dataclass
class Watch:
    """Measures a policy on the watch prompts and applies the stop rule; see the module
    docstring. store(step, {"watch/...": value}) writes the metrics (rank 0)."""

    rows: list[dict]  # [{"prompt": messages, "answer": ...}]
    tokenizer: Any
    reward_fn: ScoreFn
    every: int = DEFAULT_EVERY
    max_new_tokens: int = 16
    judge_fn: ScoreFn | None = None
    kl_budget: float | None = None
    stop_on_divergence: bool = False
    seed: int = 0
    batch_size: int = 8
    store: Callable[[int, dict[str, float]], None] | None = None
    reference: Any = None  # the KL reference when the policy has no adapters to disable
    launch: Any = None  # training.launch.Launch: under a multi-process launch rank 0 decides
    gold_votes: Callable[[], list[dict]] | None = None  # the run's gold-check results so far
    points: list[dict] = field(default_factory=list)
    stopped: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    restored_step: int | None = None  # the step whose weights the run keeps after a stop
    _kept: dict[str, tuple[int, dict]] = field(default_factory=dict)  # reason -> (step, weights)

    # -- when --

    def due(self, step: int, last_step: int | None = None) -> bool:
        if not self.rows or self.every <= 0 or self.stopped:
            return False
        return step % self.every == 0 or (last_step is not None and step == last_step)

    # -- what --

    def measure(self, model) -> dict[str, float]:
        """The watch's numbers for the model as it is now (its mode is left as it was)."""
        import torch

        from training.generate import generate

        was_training = model.training
        prompts = [r["prompt"] for r in self.rows]
        try:
            with torch.random.fork_rng(devices=[]):  # the training's random state is untouched
                batches = generate(
                    model, self.tokenizer, prompts, max_new_tokens=self.max_new_tokens,
                    batch_size=self.batch_size, temperature=1.0, seed=self.seed,
                )  # fmt: skip
            texts, kl_sums, tokens = [], [], []
            for sequences, mask, keep, width, batch_texts in batches:
                logps = completion_logprobs(model, sequences, mask, keep, width)
                ref = self._reference_logprobs(model, sequences, mask, keep, width)
                kl_sums.extend(float(v) for v in (kl_k3(logps, ref) * keep).sum(1))
                tokens.extend(int(v) for v in keep.sum(1))
                texts.extend(batch_texts)
        finally:
            model.train(was_training)
        reward, reward_se = mean_se([float(v) for v in self.reward_fn(prompts, texts, self.rows)])
        kl, _ = mean_se(kl_sums)
        out = {
            "reward": reward, "reward_se": reward_se, "kl": kl,
            "kl_per_token": sum(kl_sums) / max(sum(tokens), 1),
            "length": sum(tokens) / len(tokens),
            "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
        }  # fmt: skip
        if self.judge_fn is not None:
            judged = [float(v) for v in self.judge_fn(prompts, texts, self.rows)]
            out["judge"], out["judge_se"] = mean_se(judged)
        return out

    def _reference_logprobs(self, model, sequences, mask, keep, width):
        if hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                return completion_logprobs(model, sequences, mask, keep, width)
        if self.reference is None:  # a frozen copy of the policy as it was at the first point
            import copy

            self.reference = copy.deepcopy(model).eval().requires_grad_(False)
        return completion_logprobs(self.reference, sequences, mask, keep, width)

    def after_step(self, model, step: int) -> str | None:
        """Measure at `step`, store, keep the weights if it is a best point, and apply the
        stop rule: returns why to stop (kl_budget, divergence) or None."""
        import time

        started = time.perf_counter()
        values = self.measure(model)
        point = {"step": step, **values}
        self.points.append(point)
        flagged = diverging(self.points) if self.judge_fn is not None else False
        if self.judge_fn is not None:
            point["diverging"] = float(flagged)
        human = False
        if self.gold_votes is not None:  # labelers' votes on the gold checks, where any exist
            human = human_diverging(self.gold_votes(), self.points)
            point["human_diverging"] = float(human)
        within = self.kl_budget is None or values["kl"] <= self.kl_budget
        if (
            self.kl_budget is not None
            and within
            and self._best("reward", within_budget=True) is point
        ):
            self._keep("kl_budget", step, model)
        if self.stop_on_divergence and self._best("judge") is point:
            self._keep("divergence", step, model)
        if flagged:
            warning = (
                f"watch: step {step}: the reward rose over the last {WINDOW} watch points "
                f"({self.points[-WINDOW]['reward']:.3f} -> {values['reward']:.3f}) while the "
                f"judge did not ({self.points[-WINDOW]['judge']:.3f} -> {values['judge']:.3f}): "
                "the policy may be gaming the reward model"
            )
            self.warnings.append(warning)
            print(warning, file=sys.stderr)
        if human:
            warning = (
                f"watch: step {step}: the reward rose while the labelers' win rate against the "
                "base on the gold checks did not: the policy may be gaming the reward model"
            )
            self.warnings.append(warning)
            print(warning, file=sys.stderr)
        flagged = flagged or human
        if not within:
            self.stopped = "kl_budget"
        elif flagged and self.stop_on_divergence:
            self.stopped = "divergence"
        if self.launch is not None and self.launch.world_size > 1:
            stopped = self.stopped
            self.stopped = self.launch.share(lambda: stopped)  # every rank stops together
        if self.store is not None:
            self.store(step, {f"watch/{k}": v for k, v in point.items() if k != "step"})
        self.seconds += time.perf_counter() - started
        return self.stopped

    def _best(self, key: str, within_budget: bool = False) -> dict | None:
        candidates = [
            p for p in self.points
            if not within_budget or self.kl_budget is None or p["kl"] <= self.kl_budget
        ]  # fmt: skip
        return max(candidates, key=lambda p: p[key], default=None)  # the first of equals

    def _keep(self, reason: str, step: int, model) -> None:
        weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        self._kept[reason] = (step, weights)

    @property
    def best_step(self) -> int | None:
        """The watch point the run keeps (or would keep) as its checkpoint."""
        if self.stopped in self._kept:
            return self._kept[self.stopped][0]
        if self.stop_on_divergence and "divergence" in self._kept:
            return self._kept["divergence"][0]
        if "kl_budget" in self._kept:
            return self._kept["kl_budget"][0]
        best = self._best("reward")
        return best["step"] if best else None

    def restore(self, model) -> int | None:
        """After a stop: the kept weights back into the model; returns their step (None when
        the run did not stop: the final policy is kept)."""
        import torch

        if self.stopped not in self._kept:
            return None
        step, weights = self._kept[self.stopped]
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        self.restored_step = step
        return step

    def summary(self) -> dict[str, Any]:
        last = self.points[-1] if self.points else {}
        return {
            "stopped": self.stopped,
            "best_step": self.best_step if self.points else None,
            "checkpoint_step": self.restored_step,  # None: the final policy
            "points": len(self.points),
            "prompts": len(self.rows),
            "every": self.every,
            "seconds": round(self.seconds, 3),
            "diverging": bool(
                any(p.get("diverging") or p.get("human_diverging") for p in self.points)
            ),
            "last": {k: v for k, v in last.items() if k not in ("diverging", "human_diverging")},
            "warnings": list(self.warnings),
        }

    def metrics(self) -> dict[str, Any]:
        """What the run's final metrics record of the watch."""
        out = self.summary()
        return {
            "watch_stopped": out["stopped"], "watch_best_step": out["best_step"],
            "watch_points": out["points"], "watch_seconds": out["seconds"],
            "watch_diverging": out["diverging"],
        }  # fmt: skip

    # -- GRPO / RLOO --

    def callback(self):
        """A transformers TrainerCallback: a point at step 0 and every `every` steps (and
        the last); a stop sets control.should_training_stop."""
        from transformers import TrainerCallback

        watch = self

        class WatchCallback(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kwargs):
                if state.global_step == 0 and watch.due(0):
                    watch.after_step(model, 0)

            def on_step_end(self, args, state, control, model=None, **kwargs):
                if watch.due(state.global_step, state.max_steps):
                    if watch.after_step(model, state.global_step):
                        control.should_training_stop = True

        return WatchCallback()


# --- the gold checks -----------------------------------------------------------------------


@dataclass
class GoldChecks:
    """The gold checks of a run (--gold_check_steps): at each listed step the policy's
    trainable state (LoRA: the adapter and a pointer to the base; else the whole model) is
    written atomically as checkpoint `{prefix}-step{S}` and registered as a policy checkpoint
    of this run, parent = the base, config {"gold_check_step": S}; rank 0 writes, every rank
    takes part. After the run each enters an arena against the base alone
    (training/arena_entry.py); labeling/arena/gold_checks.py turns the votes into win rates."""

    steps: list[int]
    prefix: str  # rl-grpo-run12: the run's checkpoint name without its snapshot hash
    run_id: int
    sessionmaker: Any
    launch: Any
    tokenizer: Any
    resolved: Any  # the base (training.models.ResolvedModel): parent, base model, LoRA base
    lora: bool
    config: dict[str, Any] = field(default_factory=dict)  # recorded on each checkpoint
    saved: list[dict] = field(default_factory=list)  # [{"step", "checkpoint_id"}]
    warnings: list[str] = field(default_factory=list)

    def due(self, step: int) -> bool:
        return step in self.steps and all(s["step"] != step for s in self.saved)

    def after_step(self, model, step: int) -> int | None:
        """Save and register the policy of `step`; returns the checkpoint id (every rank).
        A step registered before (a resumed run) is not written again; a policy with
        NaN/inf weights is not registered (a warning says so)."""
        from labeling.registry import training_records
        from training.checkpoint import save_policy_state, write_checkpoint
        from training.recorder import nonfinite_parameters

        def existing() -> int | None:
            from labeling.arena.gold_checks import run_gold_checks

            with self.sessionmaker.begin() as s:
                for check in run_gold_checks(s, self.run_id):
                    if check["step"] == step:
                        return check["checkpoint_id"]
            return None

        checkpoint_id = self.launch.share(existing)
        if checkpoint_id is None:
            bad = nonfinite_parameters(model)
            if bad:
                warning = (f"gold check at step {step}: the policy has NaN/inf weights "
                           f"({bad[0]}, ...); it was not registered")  # fmt: skip
                self.warnings.append(warning)
                print(warning, file=sys.stderr)
                return None
            name = f"{self.prefix}-step{step}"

            def save(directory) -> None:
                if self.launch.is_main:  # the whole model is on every rank: rank 0 writes
                    save_policy_state(
                        model, self.tokenizer, directory,
                        lora_base=self.resolved if self.lora else None,
                    )  # fmt: skip

            directory = write_checkpoint(self.launch, name, save)

            def register() -> int:
                with self.sessionmaker.begin() as s:
                    return training_records.register_checkpoint(
                        s, kind="policy", directory=directory, run_id=self.run_id,
                        base_model=self.resolved.base_model,
                        parent_id=self.resolved.checkpoint_id,
                        config={**self.config, "gold_check_step": step},
                    ).id  # fmt: skip

            checkpoint_id = self.launch.share(register)
        self.saved.append({"step": step, "checkpoint_id": checkpoint_id})
        return checkpoint_id

    def summary(self) -> list[dict]:
        """--json's gold_checks before the arena entry: [{"step", "checkpoint_id", "arena",
        "tasks"}] (arena / tasks: None until the checkpoint has entered)."""
        return [
            {"step": s["step"], "checkpoint_id": s["checkpoint_id"], "arena": None, "tasks": None}
            for s in self.saved
        ]

    def callback(self):
        """A transformers TrainerCallback (GRPO / RLOO): a gold check at each listed step."""
        from transformers import TrainerCallback

        checks = self

        class GoldCheckCallback(TrainerCallback):
            def on_step_end(self, args, state, control, model=None, **kwargs):
                if checks.due(state.global_step):
                    checks.after_step(model, state.global_step)

        return GoldCheckCallback()

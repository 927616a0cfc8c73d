"""Online RL of a policy: GRPO or RLOO (TRL's trainers), or PPO (ours, training/ppo.py),
against a reward model, a verifier of final answers, or both.

    rlhf train rl --reward checkpoint:4 --base checkpoint:7 --snapshot 3 [--algo grpo|rloo|ppo]
                  [--preset cpu-demo|gpu|FILE.yaml] [--json]
                  [--max_steps 2 --beta 0.05 --num_generations 2 --max_completion_length 16]
    rlhf train rl --reward verifiable --snapshot 5 [--answer_pattern REGEX] [--format_weight 0.1]
    rlhf train rl --reward checkpoint:4=0.5,verifiable=1.0 --snapshot 5 ...
    rlhf train rl --reward checkpoint:4 --snapshot 3 [--watch_every 10] [--watch_prompts 4]
                  [--watch_judge checkpoint:9|verifiable] [--kl_budget 20] [--stop_on_divergence]
    rlhf train rl --reward checkpoint:4 --base checkpoint:7 --snapshot 3 --gold_check_steps 5,10
                  [--gold_check_arena my-arena]
    python -m training.rl --reward 4 --base 7 --snapshot 3 ...   (RLHF_USER names the engineer)

--algo: GRPO (group relative policy optimisation, the default) or RLOO (REINFORCE
leave-one-out) run TRL's GRPOTrainer / RLOOTrainer; PPO runs our own recipe
(training/ppo.py: TRL 1.x ships no PPOTrainer), with a value model (--critic shared|reward).
The algorithm run is recorded in the run's config (`algo`) and in the checkpoint's name
(rl-grpo-run12-..., rl-rloo-run13-..., rl-ppo-run14-...).

--reward: one reward model (checkpoint:ID of a reward checkpoint, `default`, a directory),
`verifiable` (training/verifiers.py: the completion's final answer - a \boxed{}, the last
number, or --answer_pattern's first group - checked against the prompt's gold `answer`;
--format_weight adds that much where an answer could be extracted), or both,
comma-separated, each with an optional =WEIGHT (default 1): `checkpoint:4=0.5,verifiable=1`.
--answer_pattern defaults to the snapshot's filters' `answer_pattern`.

The over-optimisation watch (training/watch.py; every algorithm, on unless --watch_every 0):
at step 0 and every --watch_every steps (default 10, and the last step) the policy answers
a fixed set of --watch_prompts (default 4) held-out prompts - the snapshot's held-out split,
else prompts held back from training - and the run's metrics get watch/reward (the run's
own reward), watch/kl and watch/kl_per_token (to the base), watch/length, watch/distinct_1,
watch/distinct_2, and with --watch_judge (another reward checkpoint, or `verifiable`) a
length-neutral judge's watch/judge and watch/diverging (the reward climbing while the judge
does not). --kl_budget NATS stops the run once watch/kl passes it and keeps the best watch
point within it; --stop_on_divergence stops on divergence and keeps the judge's best
point. `--json` adds the watch's summary under "watch" (stopped, best_step,
checkpoint_step, points, warnings); the run's metrics get watch_stopped / watch_best_step.

The gold checks (every algorithm; training/watch.py GoldChecks, labeling/arena/gold_checks.py):
`--gold_check_steps 20,40` registers the policy at those steps (LoRA: its adapter, written
atomically like the final checkpoint; rank 0 writes) as policy checkpoints of the run,
rl-grpo-run12-step20, parent = the base, config {"gold_check_step": 20}. After the run
(`rlhf train rl`, the worker) each answers the arena's prompts - --gold_check_arena NAME,
else every arena with auto-enter on - and is paired with the base alone, so labelers judge
"step 20 vs the base" blind; the base answers first where it has not. The base must be a
checkpoint (`rlhf checkpoints add --model default` registers the default); a step past
max_steps, a duplicate, a step <= 0, no arena, or FSDP / DeepSpeed are refused before any
model loads; a step the run does not reach (the watch stopped it) makes no check, and a
resumed run keeps the checks it registered before. `--json` adds "gold_checks": [{"step",
"checkpoint_id", "arena", "tasks"}] (tasks: new arena tasks against the base); the
Runs page shows each check's win rate against the base (ties half, 95% Wilson interval)
beside watch/reward at that step. Votes that exist while the run trains count for
--stop_on_divergence (training/watch.py, step 4).

Flags after the known ones are GRPOConfig / RLOOConfig / trl.ModelConfig fields (ppo: our
PPOConfig's). Top to bottom:
 1. config: the preset's `rl:` section (`ppo:` for --algo ppo), then the flags -> the config
    class + ModelConfig. `beta` > 0 keeps the policy close to the base (a KL penalty to the
    base, the reference); the presets set it.
 2. the prompts: from any snapshot kind that has them, read from its Parquet files -
    preference / kto: the `prompt` column; sft: `messages` without the last assistant turn -
    de-duplicated, with their gold `answer` where the snapshot has one. With the verifier,
    prompts without an answer are left out (counted: prompts_without_answer). Fewer than 2
    prompts fails before any model loads. The watch's prompts are chosen here (WatchPlan)
    and its judge checked. The base must be a policy and the reward model a
    reward model; anything else is refused before the run is recorded.
 3. the run is recorded (running; config with `algo`, `reward`, snapshot, base and reward
    checkpoints).
 4. the policy loads through training/models.py, and so does the reward model: a sequence
    classifier with one output. It is the trainer's reward function (`reward_funcs=`) with its
    own tokenizer (`reward_processing_classes=`): each prompt + sampled completion is rendered
    with the reward tokenizer's chat template and scored. The verifier is a reward function
    reading the dataset's `answer` column; with both, `reward_weights` weigh them. The
    reference for the KL term is the base: with LoRA the base with adapters disabled, else a
    frozen copy TRL loads from the base's directory. NaN/inf in the loss or grad norm fails
    the run, no checkpoint. The watch is a TrainerCallback beside the recorder; when its
    stop rule stopped the run, the kept watch point's weights go back into the policy.
 5. the policy (LoRA: the adapter and a pointer to the base; loading merges it) is written
    atomically under $RLHF_HOME/checkpoints/ and registered as a policy checkpoint whose
    parent is the base.

Multi-process (`torchrun --nproc_per_node 8 -m training.rl ...`, `accelerate launch ...`, or
`rlhf train rl` under either): every rank trains, rank 0 alone writes the run, its metrics
and the checkpoint's registration - one run and one checkpoint per launch
(training/launch.py).
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any

from labeling.errors import InvalidInput
from training import cli
from training.spec import ALGOS, DEFAULT_ALGO, VERIFIABLE, Call, RunSpec

__all__ = [
    "ALGOS", "DEFAULT_ALGO", "check_reward", "main", "make_parser", "prompt_rows", "prompts_of",
    "run",
]  # fmt: skip
PROMPT_KINDS = ("preference", "kto", "sft")
WATCH_DEFAULTS = (10, 4)  # training/watch.py's DEFAULT_EVERY, DEFAULT_PROMPTS (no torch here)


def prompt_rows(kind: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct prompts (conversations ending before the answer) of a snapshot split, as
    [{"prompt": messages, "answer": gold answer or None}]: preference / kto rows carry
    `prompt`; sft rows are `messages` minus the last assistant turn (a row may carry only the
    prompt and its gold `answer`). The first answer given for a prompt is kept."""
    if kind not in PROMPT_KINDS:
        raise InvalidInput(
            f"a {kind} snapshot has no prompts to use: use a {', '.join(PROMPT_KINDS)} snapshot"
        )
    out: list[dict[str, Any]] = []
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        if kind == "sft":
            messages = [dict(m) for m in row["messages"] or []]
            if messages and messages[-1]["role"] == "assistant":
                messages = messages[:-1]
        else:
            messages = [dict(m) for m in row["prompt"] or []]
        if not messages:
            continue
        answer = row.get("answer")
        answer = None if answer is None or str(answer).strip() == "" else str(answer)
        key = json.dumps(messages, sort_keys=True)
        if key not in seen:
            seen[key] = {"prompt": messages, "answer": answer}
            out.append(seen[key])
        elif seen[key]["answer"] is None:
            seen[key]["answer"] = answer
    return out


def prompts_of(kind: str, rows: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """The distinct prompts of a snapshot split (see prompt_rows)."""
    return [row["prompt"] for row in prompt_rows(kind, rows)]


def check_reward(resolved) -> None:
    """The reward model must be a reward checkpoint (or a non-checkpoint model)."""
    if resolved.checkpoint_id is not None and resolved.checkpoint_kind != "reward":
        raise InvalidInput(
            f"checkpoint {resolved.checkpoint_id} is a {resolved.checkpoint_kind} checkpoint, "
            "not a reward model: pass --reward a reward checkpoint (rlhf train reward)"
        )


def train_prompts(verifiable: bool):
    """read(snapshot) for prepare: the snapshot's training prompts (with the verifier only
    those with an answer), refused when too few, before any model loads; and the snapshot's
    own answer_pattern (its filters)."""

    def read(snapshot) -> dict[str, Any]:
        from labeling.snapshots import read_split
        from training.spec import MIN_TRAIN_ROWS

        rows = prompt_rows(
            getattr(snapshot.kind, "value", snapshot.kind), read_split(snapshot, "train")
        )
        without = 0
        if verifiable:
            answered = [r for r in rows if r["answer"] is not None]
            without, rows = len(rows) - len(answered), answered
            if len(rows) < MIN_TRAIN_ROWS:
                raise InvalidInput(
                    f"snapshot {snapshot.id} has {len(rows)} training prompts with a gold "
                    f"answer ({without} without): --reward verifiable needs at least "
                    f"{MIN_TRAIN_ROWS}; import prompt/answer rows and take a new sft snapshot"
                )
        elif len(rows) < MIN_TRAIN_ROWS:
            raise InvalidInput(
                f"snapshot {snapshot.id} has {len(rows)} training prompts: too few to train "
                f"(at least {MIN_TRAIN_ROWS}); label more and take a new snapshot"
            )
        pattern = (snapshot.filters or {}).get("answer_pattern")
        return {
            "rows": rows, "without_answer": without, "answer_pattern": pattern,
            "heldout": _heldout_prompts(snapshot, verifiable),
        }  # fmt: skip

    return read


def _heldout_prompts(snapshot, verifiable: bool) -> list[dict[str, Any]]:
    """The snapshot's held-out prompts (the watch's; with the verifier those with an answer)."""
    from labeling.errors import NotFound
    from labeling.snapshots import read_split

    try:
        split = read_split(snapshot, "heldout")
    except NotFound:
        return []
    rows = prompt_rows(getattr(snapshot.kind, "value", snapshot.kind), split)
    return [r for r in rows if r["answer"] is not None] if verifiable else rows


@dataclass
class Reward:
    """What --reward names, checked: the reward model (resolved, with its weight and the
    score mean / std stored on its checkpoint) and the verifier (its weight and settings)."""

    text: str
    model: str | None = None  # the model spec as given
    model_path: str | None = None
    checkpoint_id: int | None = None
    model_weight: float = 1.0
    score_mean: float | None = None
    score_std: float | None = None
    verifier_weight: float | None = None  # None: no verifier
    pattern: str | None = None
    format_weight: float = 0.0
    counts: dict[str, Any] = field(default_factory=dict)
    watch: Any = None  # the run's WatchPlan (prepare_rl)

    @property
    def record(self) -> dict[str, Any]:
        """What the run's config records about the reward."""
        out: dict[str, Any] = {"reward": self.text}
        if self.verifier_weight is not None:
            out.update(answer_pattern=self.pattern, format_weight=self.format_weight)
        return out

    def verifier(self):
        from training.verifiers import trl_reward_func

        return trl_reward_func(pattern=self.pattern, format_weight=self.format_weight)

    def weights(self) -> list[float]:
        """The weights, in the order of trl_functions (reward model, then verifier)."""
        out = [self.model_weight] if self.model is not None else []
        return out + ([self.verifier_weight] if self.verifier_weight is not None else [])

    def trl_functions(self, load_reward_model) -> tuple[list, list]:
        """(reward_funcs, reward_processing_classes) for GRPO / RLOO: the reward model with
        its tokenizer, the verifier (a function reading the dataset's `answer` column)."""
        funcs, classes = [], []
        if self.model is not None:
            model, tokenizer = load_reward_model(self.model_path)
            funcs.append(model)
            classes.append(tokenizer)
        if self.verifier_weight is not None:
            funcs.append(self.verifier())
            classes.append(None)
        return funcs, classes

    def function(self, device, loaded=None):
        """PPO's reward_fn(prompts, completion texts, rows) (and the watch's): the reward
        model's score of prompt + completion (standardised with the checkpoint's score mean /
        std where it has them) times its weight, plus the verifier's reward times its weight.
        loaded: the reward model and its tokenizer, already loaded (GRPO / RLOO's)."""
        from training.verifiers import verifiable_rewards

        scorer = None
        if self.model is not None:
            from training.models import load_reward_model
            from training.scoring import score

            if loaded is not None:
                reward_model, reward_tokenizer = loaded
            else:
                reward_model, reward_tokenizer = load_reward_model(self.model_path)
                reward_model.to(device)
                reward_model.requires_grad_(False)
            mean = self.score_mean or 0.0
            std = self.score_std if self.score_std and self.score_std > 0 else 1.0

            def scorer(prompts, texts):
                conversations = [
                    [*p, {"role": "assistant", "content": t}]
                    for p, t in zip(prompts, texts, strict=True)
                ]
                raw = score(reward_model, reward_tokenizer, conversations)
                return [(r - mean) / std for r in raw]

        def reward_fn(prompts, texts, rows):
            total = [0.0] * len(texts)
            if scorer is not None:
                scores = scorer(prompts, texts)
                total = [t + self.model_weight * r for t, r in zip(total, scores, strict=True)]
            if self.verifier_weight is not None:
                answers = [row.get("answer") for row in rows]
                checked = verifiable_rewards(
                    texts, answers, pattern=self.pattern, format_weight=self.format_weight
                )
                total = [t + self.verifier_weight * v for t, v in zip(total, checked, strict=True)]
            return total

        return reward_fn


def prepare_rl(spec: RunSpec, sessionmaker=None):
    """Steps 1-2 for every algorithm: config, prompts, base, reward - all checked before any
    model loads. Returns (training.prepare.Inputs, prompt rows, Reward)."""
    from training import data
    from training.models import resolve_model
    from training.prepare import prepare

    parts = spec.rewards()
    if not parts:
        raise InvalidInput(
            "online RL needs a reward: pass --reward checkpoint:ID (a reward checkpoint from "
            "`rlhf train reward`), --reward verifiable (gold answers), or both "
            "(checkpoint:ID=0.5,verifiable=1)"
        )
    weights = dict(parts)
    verifiable = VERIFIABLE in weights
    check_gold_base(spec)
    # config, then the prompts, the base (a policy) and the reward model, checked before any
    # model loads; a reward checkpoint is refused as the base
    inputs = prepare(
        spec, snapshot_kind=None, model_kind="policy", sessionmaker=sessionmaker,
        read=train_prompts(verifiable),
    )  # fmt: skip
    read = inputs.extra
    reward = Reward(text=spec.reward)
    model = spec.reward_model()
    if model is not None:
        resolved_reward = inputs.launch.share(lambda: resolve_model(model, kind="reward"))
        check_reward(resolved_reward)
        reward.model, reward.model_path = model, resolved_reward.path
        reward.checkpoint_id, reward.model_weight = resolved_reward.checkpoint_id, weights[model]
        reward.score_mean, reward.score_std = _checkpoint_stats(inputs, reward.checkpoint_id)
    if verifiable:
        reward.verifier_weight = weights[VERIFIABLE]
        reward.pattern = spec.answer_pattern or read["answer_pattern"]
        reward.format_weight = float(spec.format_weight or 0.0)
    rows = data.snapshot_rows(inputs.files)
    reward.watch = watch_plan(spec, inputs, read, reward)
    check_gold_checks(spec, inputs)
    train = reward.watch.train_rows
    reward.counts = {"train_prompts": len(train), "train_rows": rows["train"]}
    if verifiable:
        reward.counts["prompts_without_answer"] = read["without_answer"]
    return inputs, train, reward


def check_gold_base(spec: RunSpec) -> None:
    """--gold_check_steps judges the run against its base: the base must be a checkpoint."""
    if not spec.watch.get("gold_check_steps"):
        return
    from training.spec import _checkpoint_id

    if _checkpoint_id(spec.base or spec.fields.get("model_name_or_path")) is None:
        raise InvalidInput(
            "--gold_check_steps pairs the run's checkpoints with its base in an arena, so the "
            "base must be a checkpoint: register it (`rlhf checkpoints add --model default "
            "--name smollm2-base`) and pass --base checkpoint:ID"
        )


def check_gold_checks(spec: RunSpec, inputs) -> None:
    """The gold checks, before any model loads: every step within max_steps, one process's
    model to save (no FSDP / DeepSpeed), and an arena to enter (--gold_check_arena, else an
    auto-enter arena)."""
    import os

    steps = spec.watch.get("gold_check_steps")
    if not steps:
        return
    check_gold_base(spec)
    max_steps = int(getattr(inputs.config, "max_steps", 0) or 0)
    if max_steps <= 0:
        raise InvalidInput("--gold_check_steps needs --max_steps N (the steps must be known)")
    if steps[-1] > max_steps:
        raise InvalidInput(
            f"--gold_check_steps: step {steps[-1]} is past max_steps {max_steps}; list steps "
            f"from 1 to {max_steps}"
        )
    sharded = getattr(inputs.config, "fsdp", None) or getattr(inputs.config, "deepspeed", None)
    if sharded or any(
        os.environ.get(f"ACCELERATE_USE_{name}", "").lower() in ("1", "true")
        for name in ("FSDP", "DEEPSPEED")
    ):  # fmt: skip
        raise InvalidInput(
            "--gold_check_steps saves the policy from one process: not under FSDP / DeepSpeed"
        )

    def arena_named() -> None:
        from labeling import arena
        from labeling.projects import get_project

        name = spec.watch.get("gold_check_arena")
        with inputs.sessionmaker.begin() as s:
            if name:
                arena._check_arena(get_project(s, name))
            elif not arena.auto_enter_projects(s):
                raise InvalidInput(
                    "--gold_check_steps: no arena to enter: name one (--gold_check_arena NAME) "
                    "or turn auto-enter on for one (`rlhf arena config --project NAME "
                    "--auto-enter`)"
                )

    inputs.launch.share(arena_named)


def make_gold_checks(spec: RunSpec, run, tokenizer, resolved, *, algo: str, lora: bool):
    """The run's GoldChecks (training/watch.py; None without --gold_check_steps), with the
    checks a resumed run registered before."""
    steps = spec.watch.get("gold_check_steps")
    if not steps:
        return None
    from training.watch import GoldChecks

    def registered() -> list[dict]:
        from labeling.arena.gold_checks import run_gold_checks

        with run.sessionmaker.begin() as s:
            return [
                {"step": c["step"], "checkpoint_id": c["checkpoint_id"]}
                for c in run_gold_checks(s, run.id)
            ]

    return GoldChecks(
        steps=list(steps), prefix=f"rl-{algo}-run{run.id}", run_id=run.id,
        sessionmaker=run.sessionmaker, launch=run.launch, tokenizer=tokenizer,
        resolved=resolved, lora=lora,
        config={"algo": algo, "gold_check_arena": spec.watch.get("gold_check_arena")},
        saved=run.launch.share(registered),
    )  # fmt: skip


@dataclass
class WatchPlan:
    """The watch of a run (training/watch.py), settled before any model loads: its settings,
    its prompts (and the training prompts left), the judge (a Reward, or None)."""

    every: int
    rows: list[dict[str, Any]]
    train_rows: list[dict[str, Any]]
    source: str
    judge: Reward | None
    settings: dict[str, Any]

    @property
    def record(self) -> dict[str, Any]:
        """What the run's config records: the settings as given, and `watch`: what it is."""
        from training.watch import prompts_sha

        return {
            **self.settings,
            "watch": {
                "every": self.every, "prompts": len(self.rows), "source": self.source,
                "prompts_sha256": prompts_sha(self.rows) if self.rows else None,
                "judge": self.judge.text if self.judge else None,
                "kl_budget": self.settings.get("kl_budget"),
                "stop_on_divergence": bool(self.settings.get("stop_on_divergence")),
            },
        }  # fmt: skip

    def make(self, tokenizer, reward_fn, judge_fn, *, sessionmaker, run_id, launch,
             max_new_tokens: int, seed: int):  # fmt: skip
        """The Watch of this run, storing its points as the run's metrics (rank 0)."""
        from training.watch import Watch

        def store(step: int, values: dict[str, float]) -> None:
            if launch.is_main:
                from labeling.registry import training_records

                with sessionmaker.begin() as s:
                    training_records.log_metrics(s, run_id, step=step, values=values)

        return Watch(
            rows=self.rows, tokenizer=tokenizer, reward_fn=reward_fn, every=self.every,
            max_new_tokens=max_new_tokens, judge_fn=judge_fn,
            kl_budget=self.settings.get("kl_budget"),
            stop_on_divergence=bool(self.settings.get("stop_on_divergence")), seed=seed,
            store=store, launch=launch,
        )  # fmt: skip


def watch_plan(spec: RunSpec, inputs, read: dict[str, Any], reward: Reward) -> WatchPlan:
    """The watch's prompts (the snapshot's held-out prompts, else some held back from the
    training prompts) and its judge, checked: a judge that is not a reward model, or
    --watch_judge verifiable without gold answers, fails here."""
    from training.models import resolve_model
    from training.spec import MIN_TRAIN_ROWS
    from training.watch import DEFAULT_EVERY, DEFAULT_PROMPTS, pick_prompts

    settings = dict(spec.watch)
    every = settings.get("watch_every", DEFAULT_EVERY)
    n = settings.get("watch_prompts", DEFAULT_PROMPTS) if every else 0
    seed = int(getattr(inputs.config, "seed", 0) or 0)
    heldout = read["heldout"]
    if settings.get("watch_judge") == VERIFIABLE:  # the judge needs gold answers
        heldout = [r for r in heldout if r["answer"] is not None]
    rows, train, source = pick_prompts(heldout, read["rows"], n, seed, MIN_TRAIN_ROWS)
    if not rows and (settings.get("kl_budget") or settings.get("stop_on_divergence")):
        raise InvalidInput(
            "--kl_budget / --stop_on_divergence need the watch: turn it on (--watch_every N) "
            "and give the snapshot held-out prompts (or more training prompts to hold back)"
        )
    judge = None
    name = settings.get("watch_judge")
    if name and rows:
        if name == VERIFIABLE:
            rows = [r for r in rows if r["answer"] is not None]
            if not rows:
                raise InvalidInput(
                    "--watch_judge verifiable: none of the watch's prompts has a gold answer; "
                    "use a reward checkpoint as the judge"
                )
            judge = Reward(
                text=VERIFIABLE, verifier_weight=1.0,
                pattern=spec.answer_pattern or read["answer_pattern"],
            )  # fmt: skip
        else:
            resolved = inputs.launch.share(lambda: resolve_model(name, kind="reward"))
            check_reward(resolved)
            judge = Reward(
                text=name, model=name, model_path=resolved.path,
                checkpoint_id=resolved.checkpoint_id,
            )  # fmt: skip
            judge.score_mean, judge.score_std = _checkpoint_stats(inputs, judge.checkpoint_id)
    return WatchPlan(every if rows else 0, rows, train, source, judge, settings)


def _checkpoint_stats(inputs, checkpoint_id):
    if checkpoint_id is None:
        return None, None

    def stats():
        from labeling.registry import training_records

        with inputs.sessionmaker.begin() as s:
            evaluation = dict(training_records.get_checkpoint(s, checkpoint_id).evaluation or {})
        mean, std = evaluation.get("score_mean"), evaluation.get("score_std")
        if isinstance(mean, int | float) and isinstance(std, int | float):
            return float(mean), float(std)
        return None, None

    return inputs.launch.share(stats)


def run(spec: RunSpec, call: Call) -> dict[str, Any]:
    """Train, record, register. Returns {"run_id", "checkpoint_id", "metrics"}. The spec
    carries the algorithm and the reward (RunSpec.from_flags reads --algo / --reward, also
    back from the flags of a stored config on --resume)."""
    from training.spec import peft_config

    spec.require("rl")
    if spec.algo == "ppo":
        from training import ppo

        return ppo.run(spec, call)
    algo = spec.algo
    inputs, prompts, reward_ = prepare_rl(spec, call.sessionmaker)
    config, model_config, record = inputs.config, inputs.model_config, inputs.record
    resolved = inputs.resolved
    # the weights of the reward model and the verifier: GRPOConfig / RLOOConfig.reward_weights
    weights = reward_.weights()
    extra: dict[str, Any] = {}
    if config.reward_weights is not None and len(config.reward_weights) != len(weights):
        raise InvalidInput(
            f"reward_weights has {len(config.reward_weights)} values for {len(weights)} "
            "rewards: give the weights in --reward instead (checkpoint:4=0.5,verifiable=1)"
        )
    if config.reward_weights is None and weights != [1.0]:
        config.reward_weights = extra["reward_weights"] = weights
    trainer_name = spec.config_class().__name__.replace("Config", "Trainer")
    # the run record: rank 0 writes it, every rank gets its id; a failure inside is recorded
    plan = reward_.watch
    with inputs.recorded_run(
        call, recipe="training/rl.py",
        config={**reward_.record, **extra, **plan.record, "algo": algo, "trainer": trainer_name},
        reward_checkpoint_id=reward_.checkpoint_id,
    ) as run:  # fmt: skip
        # 4. policy, reward model and / or verifier, and trainer
        import datasets
        import trl

        from training.models import load_policy, load_reward_model

        model, tokenizer = load_policy(resolved.path)
        # TRL loads the KL reference (beta > 0, no LoRA) from this name: the base's directory,
        # or, when the base is an adapter checkpoint, its model merged once into the run's
        # directory (transformers would apply the adapter to an absolute path of its own)
        model.config._name_or_path = resolved.path
        reference = None
        if resolved.adapter_base is not None and config.beta and not model_config.use_peft:
            reference = _merged_reference(run, model, tokenizer)
            model.config._name_or_path = str(reference)
        funcs, classes = reward_.trl_functions(load_reward_model)
        # the over-optimisation watch (training/watch.py): the run's own reward (the reward
        # model TRL scores with, standardised) and the judge on the watch's prompts
        watch = make_watch(
            plan, reward_, run, tokenizer, max_new_tokens=config.max_completion_length,
            seed=config.seed, loaded=(funcs[0], classes[0]) if reward_.model else None,
        )  # fmt: skip
        # the gold checks: the policy at --gold_check_steps registered for the arena
        gold = make_gold_checks(
            spec, run, tokenizer, resolved, algo=algo, lora=bool(model_config.use_peft)
        )
        columns = ("prompt", "answer") if reward_.verifier_weight is not None else ("prompt",)
        trainer = getattr(trl, trainer_name)(
            model=model,
            reward_funcs=funcs if len(funcs) > 1 else funcs[0],
            args=config,
            train_dataset=datasets.Dataset.from_list(
                [{c: row[c] for c in columns} for row in prompts]
            ),
            processing_class=tokenizer,
            reward_processing_classes=classes if len(classes) > 1 else classes[0],
            peft_config=peft_config(model_config),
            callbacks=[run.recorder]
            + ([watch.callback()] if watch else [])
            + ([gold.callback()] if gold else []),
        )
        if watch is not None and not model_config.use_peft:  # no adapters to disable
            watch.reference = getattr(trainer, "ref_model", None)  # TRL's frozen base (beta > 0)
            if watch.reference is None:  # beta 0: the base itself (also right on --resume)
                from accelerate import PartialState

                watch.reference = load_policy(resolved.path)[0].to(PartialState().device)
                watch.reference.eval().requires_grad_(False)
        if reference is not None:  # every rank has loaded its reference: the copy can go
            run.launch.barrier()
            if run.launch.is_main:
                shutil.rmtree(reference, ignore_errors=True)
        output = run.train(trainer, call.resume)
        if watch is not None:  # stopped by the watch: the best watch point's weights
            watch.restore(trainer.model)
        # 5. the policy (LoRA: its adapter on the base): written atomically and registered
        # (parent: the base)
        sha = run.snapshot_sha
        directory = run.save_model(
            f"rl-{algo}-run{run.id}" + (f"-{sha[:8]}" if sha else ""), trainer, tokenizer,
            lora_base=resolved if model_config.use_peft else None,
        )  # fmt: skip
        result = run.finish(
            output, lead={"algo": algo},
            counts=lambda: {**reward_.counts, **(watch.metrics() if watch else {})},
            keep=("train_", "reward", "kl", "completions/mean_length"),
            kind="policy", directory=directory, resolved=resolved,
            config={**record, **reward_.record, **extra, **plan.record, "algo": algo},
        )  # fmt: skip
        return with_watch(result, watch, gold)


def make_watch(
    plan, reward_, run, tokenizer, *, max_new_tokens: int, seed: int, loaded=None, reward_fn=None
):  # fmt: skip
    """The run's Watch (None when off): its reward is the run's own, scored as PPO scores
    (reward_fn, or made here: the standardised reward model score times its weight, plus the
    verifier; loaded: the reward model already loaded), its judge the plan's; its points go
    to the run's metrics."""
    if not plan.every:
        return None
    from accelerate import PartialState

    device = PartialState().device
    judge_fn = plan.judge.function(device) if plan.judge is not None else None
    watch = plan.make(
        tokenizer, reward_fn or reward_.function(device, loaded=loaded), judge_fn,
        sessionmaker=run.sessionmaker, run_id=run.id, launch=run.launch,
        max_new_tokens=max_new_tokens, seed=seed,
    )  # fmt: skip
    if plan.settings.get("gold_check_steps"):  # votes on its gold checks count, where any exist

        def results() -> list[dict]:
            from labeling.arena.gold_checks import gold_check_results

            with run.sessionmaker.begin() as s:
                return gold_check_results(s, run.id)

        watch.gold_votes = lambda: run.launch.share(results)
    return watch


def with_watch(result: dict[str, Any], watch, gold=None) -> dict[str, Any]:
    """The run's result with the watch's summary under "watch" (None when it was off) and,
    with --gold_check_steps, the gold checks under "gold_checks" (arena and tasks come with
    the entry; without gold checks the result stays as it was)."""
    out = {**result, "watch": watch.summary() if watch is not None else None}
    if gold is not None:
        out["gold_checks"] = gold.summary()
    return out


def _merged_reference(run, model, tokenizer):
    """The merged base as a plain model directory under the run's directory, for TRL's
    reference (written by rank 0, read by every rank)."""
    reference = run.dir / "reference"

    def write():
        if not (reference / "config.json").is_file():
            model.save_pretrained(reference, safe_serialization=True)
            tokenizer.save_pretrained(reference)
        return reference

    return run.launch.share(write)


def make_parser(subparsers=None, **kwargs):
    """`python -m training.rl` standalone, or `rlhf train rl` (subparsers given)."""
    parser = cli.recipe_parser(
        "rl", "training.rl", __doc__, subparsers,
        help="online RL of a policy against a reward checkpoint and / or a verifier of gold "
        "answers: GRPO or RLOO (TRL's trainers) or PPO (ours, training/ppo.py); --algo",
        base_help="policy to start from (default: SmolLM2-135M-Instruct)",
        **kwargs,
    )  # fmt: skip
    parser.add_argument(
        "--reward",
        help="checkpoint:ID of a reward checkpoint, `verifiable` (gold answers), or both "
        "with weights: checkpoint:4=0.5,verifiable=1.0",
    )
    parser.add_argument(
        "--algo", choices=ALGOS,
        help="grpo (default) or rloo: TRL's trainers; ppo: our PPO (training/ppo.py, a value "
        "model: --critic shared|reward)",
    )  # fmt: skip
    parser.add_argument(
        "--answer_pattern", metavar="REGEX",
        help="--reward verifiable: the final answer is this regex's first group (default: "
        "the snapshot's answer_pattern, else a \\boxed{} or the last number)",
    )  # fmt: skip
    parser.add_argument(
        "--format_weight", type=float,
        help="--reward verifiable: added where an answer could be extracted (default 0)",
    )  # fmt: skip
    # the over-optimisation watch (training/watch.py)
    parser.add_argument(
        "--watch_every", metavar="N",
        help="score the watch's held-out prompts at step 0 and every N steps (default "
        f"{WATCH_DEFAULTS[0]}; 0: no watch)",
    )  # fmt: skip
    parser.add_argument(
        "--watch_prompts", metavar="N",
        help=f"how many held-out prompts the watch answers (default {WATCH_DEFAULTS[1]})",
    )  # fmt: skip
    parser.add_argument(
        "--watch_judge", metavar="SPEC",
        help="a length-neutral judge scored on the watch's answers: checkpoint:ID of another "
        "reward checkpoint, or `verifiable` (gold answers); flags divergence",
    )  # fmt: skip
    parser.add_argument(
        "--kl_budget", metavar="NATS",
        help="stop when the watch's KL to the base passes this; keep the best watch point",
    )  # fmt: skip
    parser.add_argument(
        "--stop_on_divergence", action="store_const", const=True, default=None,
        help="stop when the reward climbs while the judge does not (needs --watch_judge); "
        "keep the judge's best watch point",
    )  # fmt: skip
    # the gold checks (labeling/arena/gold_checks.py)
    parser.add_argument(
        "--gold_check_steps", metavar="S,S",
        help="register the policy at these steps (20,40) and, after the run, enter each in an "
        "arena against the base (a checkpoint) alone, for labelers to judge blind",
    )  # fmt: skip
    parser.add_argument(
        "--gold_check_arena", metavar="NAME",
        help="the arena of the gold checks (default: every arena with auto-enter on)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    return cli.recipe_main(
        "rl", make_parser(), run, argv, "reward", "algo", "answer_pattern", "format_weight",
        "watch",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

"""A run's spec: what a training run is, in one place, before any model loads (no torch).

RunSpec = the run's kind (sft, reward, dpo, rl), its snapshot, its base, its preset and its
TRL-field config (rl also: the algorithm, the reward and the verifier's settings). The UI's "launch training"
form (RunSpec.from_form), the CLI (RunSpec.from_flags: `rlhf train KIND ...` run here or
with --queue), the worker (RunSpec.from_run: a queued run's stored config) and the recipes
(spec.parse()) all go through it: one converter between flags, stored config and TRL's own
config classes.

Config is TRL's own: a recipe names its config class (SFTConfig, RewardConfig, DPOConfig,
GRPOConfig / RLOOConfig; PPO: our training.ppo.PPOConfig, with TRL's old PPOConfig field
names) and TRL's ModelConfig (use_peft, lora_r, ...). A preset is a YAML
file in training/presets/ (or any path) whose keys are those classes' field names, either
flat or under a section named for the recipe (`sft:`, `reward:`; `rl:` for GRPO / RLOO,
`ppo:` for `rl --algo ppo`). Flags after the known ones
pass through the way TRL's own scripts read them (transformers' HfArgumentParser):
`--max_steps 2 --learning_rate 1e-5`. A stored config holds the same fields as values
({"max_steps": 2, ...}); values on the command line read as YAML scalars, the way a preset
file reads them.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any

from labeling.errors import InvalidInput

# The presets ship inside the package (training/presets/*.yaml), found wherever it is installed.
PRESETS_DIR = Path(str(resources.files("training").joinpath("presets")))
DEFAULT_PRESET = "cpu-demo"
MIN_TRAIN_ROWS = 2
# Settings the platform owns: the run's own directory, no hub or tracker uploads, and NaN
# losses logged as they are (transformers would otherwise hide them behind an average).
FORCED = {"report_to": "none", "push_to_hub": False, "logging_nan_inf_filter": False}
KINDS = ("sft", "reward", "dpo", "rl")
CONFIG_CLASSES = {"sft": "SFTConfig", "reward": "RewardConfig", "dpo": "DPOConfig"}
# Online RL, whichever --algo names: GRPO (default) or RLOO with TRL's trainers, or PPO, our
# own recipe (training/ppo.py: TRL 1.x ships no PPOTrainer).
RL_CONFIG_CLASSES = {"grpo": "GRPOConfig", "rloo": "RLOOConfig", "ppo": "PPOConfig"}
ALGOS = tuple(RL_CONFIG_CLASSES)
DEFAULT_ALGO = "grpo"
# --reward: a reward model, the verifier, or both with weights: checkpoint:4=0.5,verifiable=1
VERIFIABLE = "verifiable"
# The over-optimisation watch's settings (training/watch.py): flags of the rl recipe, kept
# in the run's config as they are.
# The gold checks (--gold_check_steps, --gold_check_arena) travel with them: the policy saved
# at those steps enters an arena against the base after the run.
GOLD_OWN = ("gold_check_steps", "gold_check_arena")
WATCH_OWN = (
    "watch_every", "watch_prompts", "watch_judge", "kl_budget", "stop_on_divergence", *GOLD_OWN,
)  # fmt: skip
# The rl recipe's own settings (flags of their own, not config fields).
RL_OWN = ("algo", "reward", "answer_pattern", "format_weight", *WATCH_OWN)
# Keys of a run's stored config that are not TRL config fields.
PLATFORM_KEYS = ("preset", "base", "recipe", "trainer", "watch", *RL_OWN)
# What the form shows where a preset leaves a field out: TrainingArguments' own defaults.
TRL_DEFAULTS = {"learning_rate": 5e-5, "per_device_train_batch_size": 8}


def preset_names() -> list[str]:
    """The presets that ship with the package: cpu-demo, gpu."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(preset: str, section: str) -> dict[str, Any]:
    """A preset's fields for one recipe: `cpu-demo`, `gpu`, or a path to a YAML file."""
    import yaml

    path = Path(preset).expanduser()
    if not path.is_file():
        path = PRESETS_DIR / f"{preset}.yaml"
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
        raise InvalidInput(f"no preset {preset!r}: use one of {names} or a path to a YAML file")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise InvalidInput(f"preset {path} is not a mapping of TRL config fields")
    if section in data and isinstance(data[section], dict):
        return dict(data[section])
    return {k: v for k, v in data.items() if not isinstance(v, dict)}


def parse_config(config_cls, preset: str, section: str, flags: list[str]) -> tuple[Any, Any, dict]:
    """(trl config, trl.ModelConfig, the fields set explicitly) from a preset and flags.

    Flags are TRL field names (`--max_steps 2`, `--bf16`, `--learning_rate=1e-5`), converted
    to the field's type; an unknown field is an error that names the config class."""
    from transformers import HfArgumentParser
    from trl import ModelConfig

    fields = {f.name for f in dataclasses.fields(config_cls)} | {
        f.name for f in dataclasses.fields(ModelConfig)
    }
    values = load_preset(preset, section)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise InvalidInput(
            f"preset {preset}: {', '.join(unknown)} not fields of {config_cls.__name__} "
            "or trl.ModelConfig"
        )
    parser = HfArgumentParser((config_cls, ModelConfig))

    def error(message: str):
        raise InvalidInput(f"config flags: {message}")

    parser.error = error
    # the platform's settings, where the class has them (our PPOConfig has no report_to)
    forced = {k: v for k, v in {"output_dir": "unset", **FORCED}.items() if k in fields}
    parser.set_defaults(**{**values, **forced})
    try:
        config, model_config, rest = parser.parse_args_into_dataclasses(
            args=list(flags), return_remaining_strings=True
        )
    except ValueError as exc:  # the config classes' own checks (__post_init__)
        raise InvalidInput(f"{config_cls.__name__} (preset {preset}): {exc}") from exc
    if rest:
        raise InvalidInput(
            f"unknown config flags {' '.join(rest)}: flags after the known ones are fields of "
            f"{config_cls.__name__} or trl.ModelConfig (e.g. --max_steps 2 --learning_rate 1e-5)"
        )
    explicit = set(values)
    for flag in flags:
        if flag.startswith("--"):
            explicit.add(flag[2:].split("=", 1)[0].replace("-", "_"))
    record = {}
    for name in sorted(explicit):
        obj = config if hasattr(config, name) else model_config
        record[name] = getattr(obj, name)
    return config, model_config, record


def peft_config(model_config):
    """A peft LoraConfig when the preset asks for one (use_peft), else None."""
    if not model_config.use_peft:
        return None
    from trl import get_peft_config

    return get_peft_config(model_config)


def preset_fields(preset: str, kind: str) -> dict[str, Any]:
    """A preset's section for a run kind, or {} where the preset cannot be read (the form)."""
    try:
        return load_preset(preset, kind)
    except (InvalidInput, OSError, ValueError):
        return {}


# --- flags <-> fields: the one converter -------------------------------------------------


def fields_from_flags(flags: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`--max_steps 2 --bf16 --lr_scheduler_type=constant` -> {"max_steps": 2, "bf16": True,
    ...}: values read as YAML scalars, the way a preset file reads them; a field given
    several values is a list (`--lora_target_modules q_proj v_proj`)."""
    import yaml

    fields: dict[str, Any] = {}
    key = None
    for token in flags:
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            key = name.replace("-", "_")
            fields[key] = yaml.safe_load(value) if eq else True
            if eq:
                key = None
        elif key is not None:
            value = yaml.safe_load(token)
            if fields[key] is True:
                fields[key] = value
            else:  # a list field: --lora_target_modules q_proj v_proj
                previous = fields[key] if isinstance(fields[key], list) else [fields[key]]
                fields[key] = [*previous, value]
        else:
            raise InvalidInput(f"unexpected argument {token!r}")
    return fields


def flags_from_fields(fields: dict[str, Any]) -> list[str]:
    """The flags a person would type for these fields (`--max_steps 2`, `--use_peft true`,
    lists as several values); None values are left to the preset."""
    flags: list[str] = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            if value:
                flags += [f"--{key}", *(str(v) for v in value)]
            continue
        if isinstance(value, dict):
            value = json.dumps(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        flags += [f"--{key}", str(value)]
    return flags


def own_flags(flags: list[str] | tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """The rl recipe's own settings out of the flags ({"algo": ..., "reward": ...}, also
    answer_pattern, format_weight and the watch's: RL_OWN), and the TRL flags left. A resumed run's stored
    config comes back as flags, and these may be part of it (`--algo rloo`,
    `--reward=checkpoint:4`); their values stay raw strings (a regex is not YAML). `--trainer
    X` is a recorded fact, not a setting, and is dropped."""
    own: dict[str, str] = {}
    rest: list[str] = []
    flags = list(flags)
    i = 0
    while i < len(flags):
        name, eq, value = flags[i].partition("=")
        key = name[2:].replace("-", "_") if name.startswith("--") else None
        if key in RL_OWN:
            bare = i + 1 >= len(flags) or flags[i + 1].startswith("--")
            if not eq and key == "stop_on_divergence" and bare:
                value = "true"  # a switch: `--stop_on_divergence` alone means true
            elif not eq:
                if i + 1 >= len(flags):
                    raise InvalidInput(f"{name} needs a value")
                i, value = i + 1, flags[i + 1]
            own[key] = value
        elif key != "trainer":
            rest.append(flags[i])
        elif not eq:
            i += 1
        i += 1
    return own, rest


def _flag_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise InvalidInput(f"--{name} {value!r}: write true or false")


def watch_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The watch's settings checked and typed (training/watch.py): watch_every and
    watch_prompts whole numbers >= 0, kl_budget a number > 0, watch_judge a reward spec
    (checkpoint:ID, default, a directory) or `verifiable`, stop_on_divergence a boolean
    that needs a judge. Only the settings given are kept (the rest take the defaults)."""
    import math

    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in WATCH_OWN:
            raise InvalidInput(f"unknown watch setting {key!r}")
        if value is None:
            continue
        if key in ("watch_every", "watch_prompts"):
            try:
                number = int(str(value))
            except ValueError:
                number = -1
            if number < 0:
                raise InvalidInput(f"--{key} {value!r}: a whole number >= 0 (0: off)")
            out[key] = number
        elif key == "kl_budget":
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = float("nan")
            if not (math.isfinite(number) and number > 0):
                raise InvalidInput(f"--kl_budget {value!r}: a KL in nats > 0")
            out[key] = number
        elif key == "stop_on_divergence":
            out[key] = _flag_bool(key, value)
        elif key == "gold_check_steps":
            out[key] = gold_check_steps(value)
        elif key == "gold_check_arena":
            name = str(value).strip()
            if not name:
                raise InvalidInput("--gold_check_arena: name an arena project")
            out[key] = name
        else:
            judge = str(value).strip()
            if not judge or "," in judge or "=" in judge:
                raise InvalidInput(
                    f"--watch_judge {value!r}: one reward checkpoint (checkpoint:ID) or verifiable"
                )
            out[key] = judge
    if out.get("stop_on_divergence") and not out.get("watch_judge"):
        raise InvalidInput(
            "--stop_on_divergence needs --watch_judge (a second reward checkpoint, or "
            "verifiable): divergence is the reward rising while the judge does not"
        )
    return out


def gold_check_steps(value: Any) -> list[int]:
    """--gold_check_steps `20,40` (or a JSON list, or a list: a stored config) as sorted
    whole steps > 0, each once; anything else is one sentence."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = [text]
        else:
            value = [part for part in text.split(",") if part.strip()]
    items = list(value) if isinstance(value, list | tuple) else [value]
    steps: list[int] = []
    for item in items:
        try:
            step = int(str(item).strip())
        except ValueError:
            step = 0
        if step <= 0 or isinstance(item, bool):
            raise InvalidInput(
                f"--gold_check_steps: {str(item).strip()!r} is not a step; list whole steps "
                "> 0, comma-separated: --gold_check_steps 20,40"
            )
        if step in steps:
            raise InvalidInput(f"--gold_check_steps: step {step} is listed twice")
        steps.append(step)
    if not steps:
        raise InvalidInput("--gold_check_steps: list whole steps > 0, comma-separated: 20,40")
    return sorted(steps)


def parse_rewards(text: str | None) -> list[tuple[str, float]]:
    """`--reward` as [(part, weight)]: one reward model (checkpoint:ID, default, a directory),
    `verifiable` (training/verifiers.py), or both, comma-separated, each with an optional
    `=WEIGHT` (default 1): `checkpoint:4=0.5,verifiable=1.0`. [] when none is given."""
    import math

    parts: list[tuple[str, float]] = []
    for item in str(text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, weight_text = item.rpartition("=") if "=" in item else (item, "", "")
        name = name.strip()
        try:
            weight = float(weight_text) if eq else 1.0
        except ValueError:
            raise InvalidInput(
                f"--reward {text}: {weight_text!r} is not a weight; write SPEC=WEIGHT, e.g. "
                "checkpoint:4=0.5,verifiable=1.0"
            ) from None
        if not name or not math.isfinite(weight):
            raise InvalidInput(f"--reward {text}: write SPEC[=WEIGHT][,SPEC[=WEIGHT]]")
        parts.append((name, weight))
    models = [name for name, _ in parts if name != VERIFIABLE]
    if len(models) > 1 or len(parts) - len(models) > 1:
        raise InvalidInput(
            f"--reward {text}: at most one reward model and one verifier "
            "(e.g. checkpoint:4=0.5,verifiable=1.0)"
        )
    return parts


def reward_model_spec(text: str | None) -> str | None:
    """The reward model part of `--reward` (None: the verifier alone, or nothing)."""
    return next((name for name, _ in parse_rewards(text) if name != VERIFIABLE), None)


def _checkpoint_id(spec: str | None) -> int | None:
    """checkpoint:7 (or 7) -> 7; anything else (default, a directory, a hub id) -> None."""
    text = str(spec or "").removeprefix("checkpoint:")
    return int(text) if text.isascii() and text.isdigit() else None


# --- the spec ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Call:
    """Who runs a recipe and how, beside the RunSpec of what it trains: every recipe's
    `run(spec, call)` takes the two (the CLI, `python -m training.X`, the worker)."""

    created_by: int | None  # the engineer (users.id) the run is recorded for
    sessionmaker: Any = None  # None: the default database (RLHF_DATABASE_URL)
    json_output: bool = False  # the trainer's output goes to stderr; stdout is the JSON
    run_id: int | None = None  # a run claimed by a worker, or reopened for --resume
    resume: bool = False  # continue from the run's last trainer checkpoint


@dataclasses.dataclass
class RunSpec:
    """One training run as the platform sees it; see the module docstring."""

    kind: str
    snapshot_id: int | None = None
    base: str | None = None  # default, checkpoint:ID, a directory, a hub id; None: default
    preset: str = DEFAULT_PRESET
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)  # TRL field -> value
    algo: str | None = None  # rl: grpo, rloo or ppo
    reward: str | None = None  # rl: checkpoint:ID, verifiable, or both with weights
    answer_pattern: str | None = None  # rl, verifier: the regex of a final answer
    format_weight: float | None = None  # rl, verifier: added where an answer was found
    watch: dict[str, Any] = dataclasses.field(default_factory=dict)  # rl: WATCH_OWN -> value

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InvalidInput(f"unknown run kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if self.kind == "rl":
            self.algo = self.algo or DEFAULT_ALGO
            if self.algo not in ALGOS:
                raise InvalidInput(f"unknown RL algorithm {self.algo!r}: use {', '.join(ALGOS)}")
            parse_rewards(self.reward)  # a malformed --reward fails here, before anything
            if self.format_weight is not None:
                try:
                    self.format_weight = float(self.format_weight)
                except (TypeError, ValueError):
                    raise InvalidInput(
                        f"--format_weight {self.format_weight!r} is not a number"
                    ) from None
            if self.answer_pattern:
                import re

                try:
                    re.compile(self.answer_pattern)
                except re.error as exc:
                    raise InvalidInput(
                        f"--answer_pattern {self.answer_pattern!r} is not a regex: {exc}"
                    ) from None
            self.watch = watch_settings(self.watch)
        elif self.watch:
            raise InvalidInput(f"--{next(iter(self.watch))} is for rl runs only")

    def rewards(self) -> list[tuple[str, float]]:
        """The reward's parts [(reward model spec or "verifiable", weight)]."""
        return parse_rewards(self.reward)

    @property
    def section(self) -> str:
        """The preset section this run reads: the kind's, `ppo` for rl --algo ppo."""
        return "ppo" if self.kind == "rl" and self.algo == "ppo" else self.kind

    # -- from each place a run is described --

    @classmethod
    def from_flags(
        cls,
        kind: str,
        *,
        snapshot_id: int | None = None,
        base: str | None = None,
        preset: str | None = None,
        flags: list[str] | tuple[str, ...] = (),
        algo: str | None = None,
        reward: str | int | None = None,
        answer_pattern: str | None = None,
        format_weight: float | str | None = None,
        watch: dict[str, Any] | None = None,
    ) -> RunSpec:
        """The command line: `rlhf train KIND`, `python -m training.KIND`, a recipe's run().
        watch: the watch's settings (WATCH_OWN) as parsed flags; the same may come in flags."""
        flags = list(flags)
        watch = {k: v for k, v in (watch or {}).items() if v is not None}
        if kind == "rl":
            own, flags = own_flags(flags)
            watch = {**{k: own[k] for k in WATCH_OWN if k in own}, **watch}
            if algo and own.get("algo") and own["algo"] != algo:
                raise InvalidInput(f"--algo {algo} and --algo {own['algo']} disagree")
            algo = algo or own.get("algo")
            reward = own.get("reward") if reward is None else reward
            answer_pattern = own.get("answer_pattern") if answer_pattern is None else answer_pattern
            format_weight = own.get("format_weight") if format_weight is None else format_weight
        return cls(
            kind=kind,
            snapshot_id=snapshot_id,
            base=base,
            preset=preset or DEFAULT_PRESET,
            fields=fields_from_flags(flags),
            algo=algo,
            reward=None if reward is None else str(reward),
            answer_pattern=answer_pattern or None,
            format_weight=format_weight,
            watch=watch,
        )

    @classmethod
    def from_run(cls, run, extra_flags: list[str] | tuple[str, ...] = ()) -> RunSpec:
        """A stored run (queued, claimed by a worker, or reopened for --resume): its config
        {"preset", "base", TRL field: value, ...} and its base / reward checkpoints; extra
        flags (--resume) apply over the stored fields."""
        config = dict(run.config or {})
        base = config.get("base")
        if run.base_checkpoint_id is not None:
            base = f"checkpoint:{run.base_checkpoint_id}"
        # a stored --reward (the verifier, weights) wins over the bare reward checkpoint
        reward = config.get("reward")
        if run.reward_checkpoint_id is not None and not reward:
            reward = f"checkpoint:{run.reward_checkpoint_id}"
        fields = {k: v for k, v in config.items() if k not in PLATFORM_KEYS and v is not None}
        kind = getattr(run.kind, "value", run.kind)
        return cls.from_flags(
            kind,
            snapshot_id=run.snapshot_id,
            base=str(base) if base else None,
            preset=str(config.get("preset") or DEFAULT_PRESET),
            flags=[*flags_from_fields(fields), *extra_flags],
            watch={k: config[k] for k in WATCH_OWN if k in config} if kind == "rl" else None,
            algo=config.get("algo") if kind == "rl" else None,
            reward=reward if kind == "rl" else None,
            answer_pattern=config.get("answer_pattern") if kind == "rl" else None,
            format_weight=config.get("format_weight") if kind == "rl" else None,
        )

    @classmethod
    def from_form(
        cls,
        kind: str,
        preset: str,
        *,
        learning_rate: float,
        max_steps: int | None,
        batch_size: int,
        extra: str = "",
        model: str = "",
        algo: str | None = None,
        reward: str | None = None,
    ) -> RunSpec:
        """The UI's "launch training" form: the fields shown, then a JSON object of more
        (rl: the algorithm, and `reward` = "verifiable" or None for the reward checkpoint)."""
        if preset not in preset_names():
            raise InvalidInput(f"unknown preset {preset!r}: use {' or '.join(preset_names())}")
        fields: dict[str, Any] = {
            "learning_rate": float(learning_rate),
            "per_device_train_batch_size": int(batch_size),
        }
        if max_steps is not None:
            fields["max_steps"] = int(max_steps)
        if model.strip():
            fields["model_name_or_path"] = model.strip()
        if extra.strip():
            try:
                more = json.loads(extra)
            except json.JSONDecodeError as exc:
                raise InvalidInput(
                    f"more config fields: not JSON ({exc.msg}, line {exc.lineno})"
                ) from None
            if not isinstance(more, dict):
                raise InvalidInput('more config fields: write a JSON object, e.g. {"beta": 0.1}')
            fields.update(more)
        if kind != "rl":
            return cls(kind=kind, preset=preset, fields=fields)
        watch = {k: fields.pop(k) for k in WATCH_OWN if k in fields}  # the watch's, not TRL's
        return cls(kind=kind, preset=preset, fields=fields, algo=algo, reward=reward, watch=watch)

    # -- what each place needs from it --

    def to_flags(self) -> list[str]:
        """The TRL fields as TRL's scripts take them (what HfArgumentParser reads)."""
        return flags_from_fields(self.fields)

    def to_config(self) -> dict[str, Any]:
        """The config stored on a queued run: the preset, the TRL fields, and (rl) the
        algorithm; base / reward only when they are not checkpoints (those are the run's
        base_checkpoint_id / reward_checkpoint_id, see checkpoint_ids)."""
        config: dict[str, Any] = {"preset": self.preset, **self.fields}
        base_id, reward_id = self.checkpoint_ids()
        if self.base and base_id is None:
            config["base"] = self.base
        if self.kind == "rl":
            config["algo"] = self.algo
            # a single reward checkpoint is the run's reward_checkpoint_id; anything more
            # (the verifier, weights, a directory) is kept as written
            if self.reward and (reward_id is None or self.reward != self.reward_model()):
                config["reward"] = self.reward
            if self.answer_pattern:
                config["answer_pattern"] = self.answer_pattern
            if self.format_weight:
                config["format_weight"] = self.format_weight
            config.update(self.watch)
            if "gold_check_steps" in self.watch:  # a queued config holds scalars: "20,40"
                config["gold_check_steps"] = ",".join(map(str, self.watch["gold_check_steps"]))
        return config

    def reward_model(self) -> str | None:
        """The reward model part of --reward, or None (the verifier alone)."""
        return reward_model_spec(self.reward)

    def checkpoint_ids(self) -> tuple[int | None, int | None]:
        """(base checkpoint id, reward checkpoint id) where base / reward name checkpoints."""
        return _checkpoint_id(self.base), _checkpoint_id(self.reward_model())

    def require(self, kind: str) -> None:
        """A recipe's check that it was handed a spec of its own kind."""
        if self.kind != kind:
            raise InvalidInput(f"a {self.kind} run cannot run through the {kind} recipe")

    def config_class(self):
        """TRL's config class for this run (imports trl: call it only to validate or train);
        PPO's is our own (training.ppo.PPOConfig)."""
        if self.kind == "rl" and self.algo == "ppo":
            from training.ppo import PPOConfig

            return PPOConfig
        import trl

        name = RL_CONFIG_CLASSES[self.algo] if self.kind == "rl" else CONFIG_CLASSES[self.kind]
        return getattr(trl, name)

    def parse(self) -> tuple[Any, Any, dict]:
        """(TRL config, trl.ModelConfig, the fields set explicitly): the preset's section for
        this kind, then the fields. A bad field is an InvalidInput that names the class."""
        return parse_config(self.config_class(), self.preset, self.section, self.to_flags())

    def validate(self) -> RunSpec:
        """Check every field against TRL's config classes now (before queueing), not later
        in the worker; returns the spec."""
        if self.kind == "rl" and not self.rewards():
            raise InvalidInput("an rl run needs --reward (checkpoint:ID, verifiable, or both)")
        config, _, _ = self.parse()
        steps = self.watch.get("gold_check_steps") if self.kind == "rl" else None
        if steps:  # the gold checks' own checks that need no database (training/rl.py)
            from training.rl import check_gold_base

            check_gold_base(self)
            max_steps = int(getattr(config, "max_steps", 0) or 0)
            if max_steps > 0 and steps[-1] > max_steps:
                raise InvalidInput(
                    f"--gold_check_steps: step {steps[-1]} is past max_steps {max_steps}; list "
                    f"steps from 1 to {max_steps}"
                )
        return self

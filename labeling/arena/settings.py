"""Per-project arena settings (Project.settings["arena"]): DEFAULTS, settings, configure."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labeling import bounds
from labeling.errors import InvalidInput
from labeling.generations import MAX_NEW_TOKENS, MAX_SEED
from labeling.models import Project, ProjectKind

# Per-project arena settings (Project.settings["arena"]), with their defaults.
DEFAULTS: dict[str, Any] = {
    "auto_enter": True,  # new policy checkpoints answer the prompts and enter automatically
    "opponents": "best",  # "best": the current leader (all others until there is one); "all"
    "include_human": False,  # labelers' demonstrations of the same prompts enter as "human"
    "max_prompts": None,  # at most this many prompts per pair of contestants
    # An entry answers at most this many prompts (the first by id, the same for every
    # contestant, so they can be compared) when it generates on CPU / on CUDA; 0 = all.
    # 8 answers took 2.3 min on a (busy) 2-core CPU with SmolLM2-135M at the default length.
    "cpu_max_prompts": 8,
    "cuda_max_prompts": 0,
    "min_pair_votes": 5,  # matchmaking phase 1: every pair gets this many votes first
    # Answers should usually finish. Measured: SmolLM2-135M (the default policy), temperature
    # 0.7, the demo's 25 prompt rows (the 5 demo-arena ones are copies of held-out ones) x 2
    # seeds = 50 answers: 52% end by 128 tokens, 66% by 192, 70% by 256, 80% by 320, 86% by 384. 256 is where most end
    # at an affordable cost: a capped CPU entry (8 prompts, 2 batches) took 2.3 min on the
    # shared 2-core machine; the rest are marked truncated.
    "max_new_tokens": 256,
    "temperature": 0.7,
    "top_p": 0.95,
    "seed": 0,
}
_OPPONENTS = ("best", "all")


def _check_arena(project: Project) -> None:
    if project.kind != ProjectKind.arena:
        raise InvalidInput(
            f"project {project.name!r} is a {project.kind.value} project, not an arena"
        )


def settings(project: Project) -> dict[str, Any]:
    return {**DEFAULTS, **dict((project.settings or {}).get("arena") or {})}


def configure(session: Session, project: Project, **values: Any) -> dict[str, Any]:
    """Change arena settings; unknown keys and bad values are refused with a clear message."""
    _check_arena(project)
    unknown = set(values) - set(DEFAULTS)
    if unknown:
        raise InvalidInput(
            f"unknown arena settings: {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})"
        )
    values = {k: v for k, v in values.items() if v is not None}
    if "opponents" in values and values["opponents"] not in _OPPONENTS:
        raise InvalidInput("opponents must be 'best' or 'all'")
    # Upper bounds too: a huge max_new_tokens or seed would only fail later, mid-generation.
    limits = {"max_prompts": (1, 10**6), "min_pair_votes": (0, 10**4),
              "cpu_max_prompts": (0, 10**6), "cuda_max_prompts": (0, 10**6),
              "max_new_tokens": (1, MAX_NEW_TOKENS), "seed": (0, MAX_SEED)}  # fmt: skip
    for key, (low, high) in limits.items():
        if key in values:
            values[key] = bounds.whole_number(values[key], key, low, high)
    if "temperature" in values:
        values["temperature"] = bounds.fraction(values["temperature"], "temperature", 0.0, 5.0)
    if "top_p" in values:
        values["top_p"] = bounds.fraction(values["top_p"], "top_p", 0.0, 1.0)
        if values["top_p"] == 0:
            raise InvalidInput("top_p must be in (0, 1]")
    merged = {**settings(project), **values}
    # A new dict, so that SQLAlchemy sees the JSON column change.
    project.settings = {**dict(project.settings or {}), "arena": merged}
    session.flush()
    return merged


def auto_enter_projects(session: Session) -> list[Project]:
    """Arena projects that want every new policy checkpoint."""
    projects = session.scalars(
        select(Project).where(Project.kind == ProjectKind.arena).order_by(Project.id)
    ).all()
    return [p for p in projects if settings(p)["auto_enter"]]

"""Gold checks: an RL run's policy at chosen steps, judged blind against the base.

    rlhf train rl ... --gold_check_steps 20,40 [--gold_check_arena NAME]

At each listed step the run registers its policy as a checkpoint (config
{"gold_check_step": S}, parent = the base; training/watch.py GoldChecks); after the run each
answers the arena's prompts and is paired with the base alone (training/arena_entry.py,
`schedule(..., against=base)`), so labelers judge "step S vs the base" on the ordinary
compare page without knowing which is which. Here, for the Runs page and the stop rule:

    with Session.begin() as s:
        run_gold_checks(s, run_id)      # [{"step", "checkpoint_id", "name", "base_checkpoint_id"}]
        gold_check_results(s, run_id)   # + arena, wins, losses, ties, n, win_rate, low, high

The win rate is the step's share of the labelers' votes against the base, a tie (or "both
bad") counted half, with a 95% Wilson interval (labeling/probes.py's `wilson`). Imported
votes (origin import) are not people judging blind and are left out.

Service functions take the session first and never commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from labeling.models import (
    AuthorKind,
    Checkpoint,
    Choice,
    Origin,
    Preference,
    Project,
    ProjectKind,
    Prompt,
    Response,
    Task,
    TaskKind,
    TrainingRun,
)
from labeling.probes import wilson

STEP_KEY = "gold_check_step"  # on the checkpoint's config


def run_gold_checks(session: Session, run_id: int) -> list[dict[str, Any]]:
    """The run's gold-check checkpoints by step: step, checkpoint_id, name and the base they
    are judged against (base_checkpoint_id: the checkpoint's parent)."""
    rows = session.execute(
        select(Checkpoint.id, Checkpoint.name, Checkpoint.config, Checkpoint.parent_id)
        .where(Checkpoint.run_id == int(run_id))
        .order_by(Checkpoint.id)
    ).all()
    out = []
    for cid, name, config, parent_id in rows:
        step = (config or {}).get(STEP_KEY)
        if isinstance(step, int) and not isinstance(step, bool):
            out.append({"step": step, "checkpoint_id": cid, "name": name,
                        "base_checkpoint_id": parent_id})  # fmt: skip
    return sorted(out, key=lambda c: c["step"])


def gold_check_bases(session: Session, checkpoint_ids: set[int]) -> dict[int, int | None]:
    """Which of these checkpoints are gold checks: {checkpoint id: its base (parent) id}."""
    if not checkpoint_ids:
        return {}
    rows = session.execute(
        select(Checkpoint.id, Checkpoint.config, Checkpoint.parent_id).where(
            Checkpoint.id.in_(sorted(checkpoint_ids))
        )
    ).all()
    return {cid: parent for cid, config, parent in rows if STEP_KEY in (config or {})}


def gold_check_arena(session: Session, run_id: int) -> str | None:
    """The arena the run named (--gold_check_arena), or None (the auto-enter arenas)."""
    config = session.scalar(select(TrainingRun.config).where(TrainingRun.id == int(run_id)))
    name = (config or {}).get("gold_check_arena")
    return str(name) if name else None


def head_to_head(
    session: Session, checkpoint_id: int, opponent_id: int, *, project_id: int | None = None
) -> dict[int, dict[str, int]]:
    """Labelers' votes on arena tasks between two checkpoints' answers, per arena project:
    {project_id: {"wins", "losses", "ties"}} from checkpoint_id's side."""
    ra, rb = aliased(Response), aliased(Response)
    query = (
        select(Task.project_id, Preference.choice, ra.checkpoint_id, rb.checkpoint_id)
        .join(Task, Task.id == Preference.task_id)
        .join(ra, ra.id == Task.response_a_id)
        .join(rb, rb.id == Task.response_b_id)
        .where(
            Task.kind == TaskKind.arena,
            Preference.origin == Origin.labeler,
            ra.author_kind == AuthorKind.checkpoint,
            rb.author_kind == AuthorKind.checkpoint,
            ((ra.checkpoint_id == checkpoint_id) & (rb.checkpoint_id == opponent_id))
            | ((ra.checkpoint_id == opponent_id) & (rb.checkpoint_id == checkpoint_id)),
        )
    )
    if project_id is not None:
        query = query.where(Task.project_id == int(project_id))
    out: dict[int, dict[str, int]] = {}
    for pid, choice, a_id, _b_id in session.execute(query):
        counts = out.setdefault(pid, {"wins": 0, "losses": 0, "ties": 0})
        choice = Choice(choice)
        if choice in (Choice.tie, Choice.both_bad):
            counts["ties"] += 1
        elif (choice == Choice.a) == (a_id == checkpoint_id):
            counts["wins"] += 1
        else:
            counts["losses"] += 1
    return out


def win_rate(wins: int, losses: int, ties: int) -> dict[str, Any]:
    """n, the win rate with ties counted half, and its 95% Wilson interval (None when n is 0)."""
    n = wins + losses + ties
    score = wins + ties / 2
    low, high = wilson(score, n)  # type: ignore[arg-type]  # a half tie is half a success
    return {"n": n, "win_rate": round(score / n, 6) if n else None, "low": low, "high": high}


def _arenas_entered(session: Session, checkpoint_id: int) -> list[tuple[int, str]]:
    """The arena projects where the checkpoint has answers: [(id, name)] by id."""
    return list(
        session.execute(
            select(Project.id, Project.name)
            .where(
                Project.kind == ProjectKind.arena,
                Project.id.in_(
                    select(Prompt.project_id)
                    .join(Response, Response.prompt_id == Prompt.id)
                    .where(Response.checkpoint_id == int(checkpoint_id))
                ),
            )
            .order_by(Project.id)
        ).all()
    )


def gold_check_results(session: Session, run_id: int) -> list[dict[str, Any]]:
    """Per gold check and arena it entered (one row with arena None before it entered any):
    step, checkpoint_id, name, base_checkpoint_id, arena, wins, losses, ties, n, win_rate
    (ties half), low, high (95% Wilson), by step."""
    out = []
    for check in run_gold_checks(session, run_id):
        base = check["base_checkpoint_id"]
        counts = head_to_head(session, check["checkpoint_id"], base) if base is not None else {}
        arenas = _arenas_entered(session, check["checkpoint_id"]) or [(None, None)]
        for pid, name in arenas:
            c = counts.get(pid, {"wins": 0, "losses": 0, "ties": 0})
            out.append({**check, "arena": name, **c, **win_rate(c["wins"], c["losses"], c["ties"])})
    return out

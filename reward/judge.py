"""A reward model as the arena's judge: how often does it agree with the labelers?

    rlhf arena judge --project my-arena --reward 4 --json
    -> {"agreement": 0.71, "n": 48, "ties_skipped": 6, "judged_tasks": 60, "leaderboard": [...]}

Every arena task's two answers are scored by the reward checkpoint (prompt + answer through
its chat template, as in reward/evaluate.py); the judge prefers the higher score.
agreement = the share of the labelers' decided votes (A or B better, each vote counted) that
the judge calls the same way; ties and both-bad votes are left out (`ties_skipped`).
`leaderboard` ranks the contestants by the judge's verdicts on every task, voted or not
(Bradley–Terry, sandwich intervals): a cheap preview before labelers have voted.
"""

from __future__ import annotations

from typing import Any

from labeling import arena
from labeling.projects import get_project
from labeling.ratings import leaderboard as lb


def judge_arena(sessionmaker, *, project: str, reward_checkpoint_id: int) -> dict[str, Any]:
    from reward.evaluate import score
    from training.models import load_reward_model

    with sessionmaker.begin() as s:
        rows = arena.judge_rows(s, get_project(s, project))
        model, tokenizer = load_reward_model(f"checkpoint:{int(reward_checkpoint_id)}", session=s)
    scores_a = score(
        model,
        tokenizer,
        [r["messages"] + [{"role": "assistant", "content": r["text_a"]}] for r in rows],
    )
    scores_b = score(
        model,
        tokenizer,
        [r["messages"] + [{"role": "assistant", "content": r["text_b"]}] for r in rows],
    )
    agree = decided = ties = 0
    for row, sa, sb in zip(rows, scores_a, scores_b, strict=True):
        judge = "a" if sa > sb else "b" if sb > sa else "tie"
        for vote in row["votes"]:
            if vote not in ("a", "b"):
                ties += 1
                continue
            decided += 1
            agree += vote == judge
    winners = ["model_a" if sa > sb else "model_b" if sb > sa else "tie"
               for sa, sb in zip(scores_a, scores_b, strict=True)]  # fmt: skip
    board = lb.fit(
        lb.make_battles([r["model_a"] for r in rows], [r["model_b"] for r in rows], winners),
        bootstrap=0, ci="sandwich",
    ) if rows else None  # fmt: skip
    return {
        "project": project,
        "reward_checkpoint_id": int(reward_checkpoint_id),
        "agreement": agree / decided if decided else None,
        "n": decided,
        "ties_skipped": ties,
        "judged_tasks": len(rows),
        "leaderboard": board.to_json() if board is not None else [],
        "messages": board.messages if board is not None else ["the arena has no tasks yet"],
    }

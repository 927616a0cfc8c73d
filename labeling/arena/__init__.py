"""The arena: answers from different checkpoints to the same prompt, judged blind.

An arena project holds prompts (copied from another project's held-out split, or imported).
Checkpoints answer them (`rlhf generate`, or automatically after a training run: see
training/arena_entry.py); a labeler's demonstration can enter too, as the contestant "human".
`schedule` pairs the contestants' answers on each prompt into arena tasks; labelers judge
them on the ordinary compare page, which shows "A" and "B" only: the task stores which
answer is A, the lease stores which side it is shown on, and no page reads the author.

Matchmaking runs through the claim order (Task.priority, higher first), set by `rebalance`:
1. spread votes evenly: a pair of contestants with fewer than `min_pair_votes` votes comes
   first, the fewest votes first;
2. then favour the pairs whose outcome is most uncertain: priority follows
   leaderboard.expected_information (p(1-p) Var(r_i - r_j)): the vote that shrinks the
   confidence intervals most is served next.
It runs after every `REBALANCE_EVERY`-th vote of a project, after `schedule`, and on demand.

Votes become battles (`battles`) for labeling.ratings.leaderboard: choice a/b/tie/both_bad map to
model_a / model_b / tie / "tie (bothbad)"; the prompt's category and the answers' markdown
style come along for the per-category and style-controlled views.

Modules: settings.py (DEFAULTS, settings, configure), contestants.py (prompts and answers
entering, names, overview), scheduling.py (`schedule`), matchmaking.py (`rebalance`,
`after_vote`), votes.py (`battles`, leaderboards, judge rows), entries.py (how a checkpoint's
entry is going, recorded on its run), gold_checks.py (an RL run's checkpoints at chosen steps
against its base: votes, win rates with Wilson intervals); this package re-exports them.
"""

from labeling.arena.contestants import (
    HUMAN,
    Entry,
    add_human_answers,
    contestant_names,
    copy_prompts,
    overview,
)
from labeling.arena.entries import entry_progress, record_entry
from labeling.arena.gold_checks import gold_check_arena, gold_check_results, run_gold_checks
from labeling.arena.matchmaking import (
    PHASE_ONE,
    PHASE_TWO_SCALE,
    REBALANCE_EVERY,
    after_vote,
    rebalance,
)
from labeling.arena.scheduling import schedule
from labeling.arena.settings import DEFAULTS, _check_arena, auto_enter_projects, configure, settings
from labeling.arena.votes import (
    WINNER,
    ArenaBattles,
    LeaderboardView,
    battles,
    current_leader,
    judge_rows,
    leaderboard_view,
    only_category,
    project_leaderboard,
)

__all__ = [
    "DEFAULTS",
    "HUMAN",
    "PHASE_ONE",
    "PHASE_TWO_SCALE",
    "REBALANCE_EVERY",
    "WINNER",
    "ArenaBattles",
    "Entry",
    "LeaderboardView",
    "_check_arena",
    "add_human_answers",
    "after_vote",
    "auto_enter_projects",
    "battles",
    "configure",
    "contestant_names",
    "copy_prompts",
    "current_leader",
    "entry_progress",
    "gold_check_arena",
    "gold_check_results",
    "judge_rows",
    "leaderboard_view",
    "only_category",
    "overview",
    "project_leaderboard",
    "rebalance",
    "run_gold_checks",
    "record_entry",
    "schedule",
    "settings",
]

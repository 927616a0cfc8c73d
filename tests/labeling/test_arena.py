"""The arena on both databases: prompts, contestants, blind tasks, matchmaking, votes ->
battles -> leaderboard, the reward-model judge's bookkeeping, and the CLI."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from labeling import arena, projects
from labeling import labeler_views as lv
from labeling.accounts import users
from labeling.errors import InvalidInput
from labeling.models import (
    Assignment,
    AuthorKind,
    Checkpoint,
    CheckpointKind,
    Origin,
    Preference,
    Prompt,
    Split,
    Task,
    TaskKind,
    TaskStatus,
)
from labeling.tasks import add_prompt, add_response, add_write_task


def _checkpoint(s, name: str) -> int:
    # A registry row is enough here: these tests never load weights.
    ck = Checkpoint(kind=CheckpointKind.policy, name=name, path=f"checkpoints/{name}")
    s.add(ck)
    s.flush()
    return ck.id


def _arena(s, *, prompts: int = 4, models: tuple[str, ...] = ("base", "sft", "dpo"), **conf):
    """An arena whose checkpoints answered every prompt: {name: checkpoint id}."""
    project = projects.create_project(s, name="arena", kind="arena")
    if conf:
        arena.configure(s, project, **conf)
    ids = {name: _checkpoint(s, name) for name in models}
    for i in range(prompts):
        prompt = add_prompt(s, project, f"question {i}", category="math" if i % 2 else "chat")
        for name, cid in ids.items():
            add_response(
                s, prompt, f"{name} answers question {i}", author_kind=AuthorKind.checkpoint,
                checkpoint_id=cid, sampling_params={"temperature": 0.7},
            )  # fmt: skip
    return project, ids


def _labelers(s, n: int) -> list[int]:
    return [users.add_user(s, name=f"lab{i}", role="labeler", password=None).id for i in range(n)]


def _vote_for(s, user_id: int, project_id: int, prefer: str, names: dict[int, str]) -> bool:
    """The labeler takes their next task and votes for the answer by `prefer` (else a tie)."""
    view = lv.next_task(s, user_id=user_id, project_id=project_id)
    if view is None:
        return False
    left = "a" if view.left.text.startswith(prefer) else None
    right = "b" if view.right.text.startswith(prefer) else None
    lv.submit_compare(
        s, assignment_id=view.assignment_id, user_id=user_id,
        screen_choice=left or right or "tie",
    )  # fmt: skip
    return True


def test_schedule_pairs_every_contestant_once_per_prompt(Session):
    with Session.begin() as s:
        project, ids = _arena(s, prompts=4)
        out = arena.schedule(s, project)
        assert out["created"] == 4 * 3 and out["pairs"] == 3
        again = arena.schedule(s, project)  # idempotent: the same pairs are not asked twice
        assert again["created"] == 0
        tasks = s.scalars(select(Task).where(Task.project_id == project.id)).all()
        assert {t.kind for t in tasks} == {TaskKind.arena}
        # Which answer is "A" is random, not always the older checkpoint.
        firsts = {s.get(Checkpoint, t.response_a.checkpoint_id).name for t in tasks}
        assert len(firsts) >= 2


def test_identical_answers_are_not_a_task(Session):
    with Session.begin() as s:
        project = projects.create_project(s, name="arena", kind="arena")
        a, b = _checkpoint(s, "a"), _checkpoint(s, "b")
        prompt = add_prompt(s, project, "say hi")
        for cid in (a, b):
            add_response(s, prompt, "hi", author_kind=AuthorKind.checkpoint, checkpoint_id=cid)
        assert arena.schedule(s, project)["created"] == 0


def test_arena_view_hides_authors_and_votes_become_battles(Session):
    with Session.begin() as s:
        project, ids = _arena(s, prompts=6)
        arena.schedule(s, project)
        labelers = _labelers(s, 3)
    names = {v: k for k, v in ids.items()}
    with Session.begin() as s:
        view = lv.next_task(s, user_id=labelers[0], project_id=project.id)
        # The labeler sees the prompt and two texts; nothing names a checkpoint.
        shown = repr(view)
        assert "checkpoint" not in shown and view.left.source == "" == view.right.source
        lv.skip_task(s, assignment_id=view.assignment_id, user_id=labelers[0])
    # Everyone prefers "dpo", then "sft", over "base".
    with Session.begin() as s:
        for user_id in labelers:
            while True:
                view = lv.next_task(s, user_id=user_id, project_id=project.id)
                if view is None:
                    break
                rank = {"dpo": 0, "sft": 1, "base": 2}
                left, right = view.left.text.split()[0], view.right.text.split()[0]
                choice = "a" if rank[left] < rank[right] else "b"
                lv.submit_compare(
                    s, assignment_id=view.assignment_id, user_id=user_id, screen_choice=choice
                )
    with Session.begin() as s:
        data = arena.battles(s, project)
        assert len(data.battles) == 6 * 3  # overlap 1: one vote per task
        winners = [
            data.battles.model_a[i] if w == "model_a" else data.battles.model_b[i]
            for i, w in enumerate(data.battles.winner)
        ]
        # No vote for base ever wins; every dpo battle is a dpo win: swaps were undone.
        assert "base" not in winners
        dpo_battles = sum(
            "dpo" in (a, b) for a, b in zip(data.battles.model_a, data.battles.model_b, strict=True)
        )
        assert winners.count("dpo") == dpo_battles
        assert set(data.battles.category) == {"math", "chat"}
        board = arena.project_leaderboard(s, project, bootstrap=50)
        assert [r.model for r in board.rows] == ["dpo", "sft", "base"]
        ranks = [r["rank"] for r in board.to_json()]
        assert ranks[0] == 1 and ranks == sorted(ranks)
        json.dumps(board.to_json(), allow_nan=False)
        assert set(names.values()) == {r.model for r in board.rows}


def test_matchmaking_serves_the_pair_with_fewest_votes_first(Session):
    with Session.begin() as s:
        project, ids = _arena(s, prompts=8, min_pair_votes=3)
        arena.schedule(s, project)
        labeler = _labelers(s, 1)[0]
        base, sft, dpo = ids["base"], ids["sft"], ids["dpo"]
        # Three votes on base-vs-sft tasks, cast straight on those tasks.
        pair_tasks = [
            t for t in s.scalars(select(Task).where(Task.project_id == project.id))
            if {t.response_a.checkpoint_id, t.response_b.checkpoint_id} == {base, sft}
        ]  # fmt: skip
        others = _labelers_named(s, ["x1", "x2", "x3"])
        for user_id, task in zip(others, pair_tasks[:3], strict=True):
            _record_vote(s, task, user_id, "a")
        arena.rebalance(s, project)
    with Session.begin() as s:
        view = lv.next_task(s, user_id=labeler, project_id=project.id)
        task = s.get(Task, view.task_id)
        pair = {task.response_a.checkpoint_id, task.response_b.checkpoint_id}
        assert pair != {base, sft}  # that pair already has its first votes
        assert dpo in pair


def _record_vote(s, task: Task, user_id: int, choice: str) -> None:
    """A vote on a chosen task, written the way imported judgments are (no lease)."""
    s.add(Preference(task_id=task.id, user_id=user_id, origin=Origin.imported, choice=choice))
    task.labels_count += 1
    if task.labels_count >= task.overlap:
        task.status = TaskStatus.done
    s.flush()


def _labelers_named(s, names):
    return [users.add_user(s, name=n, role="labeler", password=None).id for n in names]


def test_matchmaking_then_favours_the_most_uncertain_pair(Session):
    with Session.begin() as s:
        project, ids = _arena(s, prompts=30, min_pair_votes=0)
        arena.schedule(s, project)
        voters = _labelers_named(s, [f"v{i}" for i in range(40)])
        # base loses to both by far; sft vs dpo is close: that pair is the uncertain one.
        tasks = s.scalars(select(Task).where(Task.project_id == project.id)).all()
        by_pair: dict[frozenset, list[Task]] = {}
        for t in tasks:
            key = frozenset((t.response_a.checkpoint_id, t.response_b.checkpoint_id))
            by_pair.setdefault(key, []).append(t)
        base, sft, dpo = ids["base"], ids["sft"], ids["dpo"]
        votes = 0
        for pair, winner_of in (
            ({base, sft}, lambda i: sft), ({base, dpo}, lambda i: dpo),
            ({sft, dpo}, lambda i: sft if i % 2 else dpo),
        ):  # fmt: skip
            for i, t in enumerate(by_pair[frozenset(pair)][:8]):
                choice = "a" if t.response_a.checkpoint_id == winner_of(i) else "b"
                _record_vote(s, t, voters[votes], choice)
                votes += 1
        arena.rebalance(s, project)
        priority = {}
        for pair, ts in by_pair.items():
            open_ = [t.priority for t in ts[8:]]
            priority[pair] = max(open_)
        assert priority[frozenset((sft, dpo))] > priority[frozenset((base, sft))]
        assert priority[frozenset((sft, dpo))] > priority[frozenset((base, dpo))]


def test_new_checkpoint_meets_the_leader_only(Session):
    with Session.begin() as s:
        project, ids = _arena(s, prompts=4, models=("base", "sft"))
        arena.schedule(s, project)
        voters = _labelers_named(s, [f"v{i}" for i in range(6)])
    with Session.begin() as s:
        for user_id in voters:
            _vote_for(s, user_id, project.id, "sft", {})
    with Session.begin() as s:
        assert arena.current_leader(s, project) == ids["sft"]
        new = _checkpoint(s, "dpo")
        for prompt in s.scalars(select(Prompt).where(Prompt.project_id == project.id)):
            add_response(s, prompt, f"dpo on {prompt.id}", author_kind=AuthorKind.checkpoint,
                         checkpoint_id=new)  # fmt: skip
        out = arena.schedule(s, project, checkpoint_id=new)
        assert out["pairs"] == 1 and out["created"] == 4
        everyone = arena.schedule(s, project, checkpoint_id=new, opponents="all")
        assert everyone["created"] == 4  # the base pairs, now
        with pytest.raises(InvalidInput, match="no answers"):
            arena.schedule(s, project, checkpoint_id=_checkpoint(s, "ghost"))


def test_human_demonstrations_enter_and_their_author_never_judges_them(Session):
    with Session.begin() as s:
        project, ids = _arena(s, prompts=2, models=("base",), include_human=True)
        writers = projects.create_project(s, name="writers", kind="sft")
        author = _labelers_named(s, ["author"])[0]
        judge = _labelers_named(s, ["judge"])[0]
        prompt = add_prompt(s, writers, "question 0")
        add_write_task(s, writers, prompt)
    with Session.begin() as s:
        view = lv.next_task(s, user_id=author, project_id=writers.id)
        lv.submit_write(s, assignment_id=view.assignment_id, user_id=author, text="my answer")
    with Session.begin() as s:
        out = arena.schedule(s, project)
        assert out["created"] == 1
        assert lv.next_task(s, user_id=author, project_id=project.id) is None
        view = lv.next_task(s, user_id=judge, project_id=project.id)
        assert {view.left.text, view.right.text} == {"my answer", "base answers question 0"}
        assert s.scalar(select(func.count()).select_from(Assignment)
                        .where(Assignment.user_id == author)) >= 1  # fmt: skip
        assert "human" in {c["name"] for c in arena.overview(s, project)["contestants"]}


def test_copy_prompts_and_settings_are_checked(Session):
    with Session.begin() as s:
        source = projects.create_project(s, name="src", kind="sft", heldout_fraction=0.5)
        for i in range(40):
            add_prompt(s, source, f"prompt {i}", category="c").answer = str(i)
        held = s.scalar(select(func.count()).where(
            Prompt.project_id == source.id, Prompt.split == Split.heldout))  # fmt: skip
        project = projects.create_project(s, name="arena", kind="arena")
        out = arena.copy_prompts(s, project, source)
        assert out == {"copied": held, "already_there": 0} and 0 < held < 40
        assert arena.copy_prompts(s, project, source)["copied"] == 0
        assert arena.copy_prompts(s, project, source, split="all")["copied"] == 40 - held
        copied = s.scalars(select(Prompt).where(Prompt.project_id == project.id)).all()
        assert {p.split for p in copied} == {Split.heldout} and {p.category for p in copied} == {
            "c"
        }
        # the gold answers come along, so a verifier can judge the arena's answers
        assert all(p.answer == p.messages[-1]["content"].split()[-1] for p in copied)
        with pytest.raises(InvalidInput, match="not an arena"):
            arena.copy_prompts(s, source, project)
        with pytest.raises(InvalidInput, match="unknown arena settings"):
            arena.configure(s, project, colour="red")
        with pytest.raises(InvalidInput, match="opponents"):
            arena.configure(s, project, opponents="weakest")
        assert arena.configure(s, project, auto_enter=False)["auto_enter"] is False
    with Session.begin() as s:
        project = projects.get_project(s, "arena")
        assert arena.settings(project)["auto_enter"] is False
        assert arena.auto_enter_projects(s) == []


def test_empty_arena_leaderboard_says_so(Session):
    with Session.begin() as s:
        project, _ = _arena(s, prompts=1)
        board = arena.project_leaderboard(s, project)
        assert board.rows == [] and board.messages
        assert arena.current_leader(s, project) is None


def test_leaderboard_and_arena_cli(cli, admin, tmp_path, Session):
    with Session.begin() as s:
        project, ids = _arena(s, prompts=6)
        labelers = _labelers(s, 2)
    assert (
        cli("arena", "schedule", "--project", "arena", "--json", user=admin).json()["created"] == 18
    )
    with Session.begin() as s:
        for user_id in labelers:
            while _vote_for(s, user_id, project.id, "dpo", {}):
                pass
    r = cli("leaderboard", "--project", "arena", "--bootstrap", "30", "--json", user="lab0")
    assert r.code == 0, r.err  # every role may read the leaderboard
    rows = r.json()
    assert [set(row) for row in rows] == [
        {"model", "rating", "ci_low", "ci_high", "rank", "votes"}
    ] * 3
    assert rows[0]["model"] == "dpo" and rows[0]["rank"] == 1
    # dpo never lost: its likelihood interval is open-ended, so none is shown (not NaN).
    assert rows[0]["ci_low"] is None and rows[0]["ci_high"] is None
    assert "never lost" in r.err
    text = cli("leaderboard", "--project", "arena", "--by-category", user="lab0")
    assert text.code == 0 and "== math" in text.out and "== chat" in text.out
    assert cli("leaderboard", "--project", "arena", "--category", "poetry", user="lab0").code == 1
    # A battles file a user brings.
    path = tmp_path / "battles.csv"
    path.write_text("model_a,model_b,winner\nx,y,model_a\nx,y,tie\ny,x,model_b\nz,w,model_a\n")
    r = cli("leaderboard", "--battles", str(path), "--json", user="lab0")
    assert r.code == 0, r.err
    assert "disconnected" in r.err.lower()  # x-y and z-w never met
    assert {row["model"] for row in r.json()} == {"x", "y", "z", "w"}
    bad = tmp_path / "bad.csv"
    bad.write_text("model_a,model_b,winner\nx,y,left\n")
    r = cli("leaderboard", "--battles", str(bad), user="lab0")
    assert r.code == 1 and "left" in r.err
    assert cli("leaderboard", "--project", "arena").code == 1  # nobody named
    # Arena admin commands are for engineers and admins.
    assert cli("arena", "status", "--project", "arena", user="lab0").code == 1
    status = cli("arena", "status", "--project", "arena", "--json", user=admin).json()
    assert status["votes"] > 0 and len(status["contestants"]) == 3
    r = cli("arena", "config", "--project", "arena", "--opponents", "all", "--max-prompts", "2",
            "--json", user=admin)  # fmt: skip
    assert r.json()["opponents"] == "all" and r.json()["max_prompts"] == 2
    assert cli("arena", "config", "--project", "arena", "--temperature", "-1", user=admin).code == 1


def test_prompts_imported_into_an_arena_are_all_held_out(cli, admin, tmp_path, Session):
    assert cli("projects", "create", "arena", "--kind", "arena", user=admin).code == 0
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"question {i}?"}) + "\n" for i in range(30)))
    r = cli("import", str(path), "--project", "arena", "--json", user=admin)
    assert r.code == 0, r.err
    with Session.begin() as s:
        project = projects.get_project(s, "arena")
        splits = s.scalars(select(Prompt.split).where(Prompt.project_id == project.id))
        assert list(splits) == [Split.heldout] * 30

"""The whole loop on tiny models: train -> the new checkpoint answers the arena's prompts on
its own -> blind arena tasks -> labelers' votes -> the leaderboard ranks it; and the reward
model judges the same pairs.

Uses the tiny Llama policy / BERT reward model and the seeded project of
test_train_sft_reward.py / test_train_dpo_rl.py (SQLite; HF offline).
"""

from __future__ import annotations

from pathlib import Path

import test_train_dpo_rl as dpo_rl
from sqlalchemy import func, select

from labeling import labeler_views as lv
from labeling.accounts import users
from labeling.models import Project, Response, Task

db_url, Session, snaps, tiny_models, checkpoints = (
    dpo_rl.db_url,
    dpo_rl.Session,
    dpo_rl.snaps,
    dpo_rl.tiny_models,
    dpo_rl.checkpoints,
)


def test_train_generate_vote_rank(cli, admin, snaps, checkpoints, Session):  # noqa: N803
    eng = "eng"
    base = checkpoints["base"]
    assert cli("projects", "create", "loop-arena", "--kind", "arena", user=admin).code == 0
    with Session.begin() as s:
        source = s.scalar(select(Project.name).where(Project.kind == "pairwise"))
    r = cli("arena", "add-prompts", "--project", "loop-arena", "--from", source, "--split",
            "all", "--json", user=eng)  # fmt: skip
    assert r.code == 0, r.err
    assert r.json()["copied"] == 7
    cfg = cli("arena", "config", "--project", "loop-arena", "--max-new-tokens", "6",
              "--temperature", "0", user=eng)  # fmt: skip
    assert cfg.code == 0, cfg.err

    # The base model enters by hand: it answers; there is nobody to pair it with yet.
    entered = cli("arena", "enter", "--project", "loop-arena", "--checkpoint", str(base),
                  "--json", user=eng)  # fmt: skip
    assert entered.code == 0, entered.err
    assert entered.json()["answers"] == 7 and entered.json()["tasks_created"] == 0

    # A DPO run (a large step, so its greedy answers differ from the base's) succeeds and its
    # checkpoint enters the arena without any further command.
    trained = cli(
        "train", "dpo", "--snapshot", str(snaps["preference"]), "--base", f"checkpoint:{base}",
        "--json", "--max_steps", "2", "--per_device_train_batch_size", "2",
        "--use_peft", "false", "--precompute_ref_log_probs", "false",
        "--learning_rate", "0.5", user=eng,
    )  # fmt: skip
    assert trained.code == 0, trained.err
    result = trained.json()
    assert set(result) == {"run_id", "checkpoint_id", "metrics"}  # the arena reports on stderr
    new = result["checkpoint_id"]
    assert f"arena 'loop-arena': checkpoint {new} entered with 7 new answers" in trained.err
    with Session.begin() as s:
        arena_id = s.scalar(select(Project.id).where(Project.name == "loop-arena"))
        entry = {"tasks_created": s.scalar(
            select(func.count()).select_from(Task).where(Task.project_id == arena_id))}  # fmt: skip
    assert entry["tasks_created"] >= 1
    with Session.begin() as s:
        answers = s.scalars(select(Response).where(Response.checkpoint_id == new)).all()
        assert len(answers) == 7
        assert all(a.sampling_params["max_new_tokens"] == 6 for a in answers)
        labelers = [users.add_user(s, name=f"voter{i}", role="labeler", password=None).id
                    for i in range(3)]  # fmt: skip

    # Labelers prefer the new checkpoint's answer, whichever side it is shown on.
    votes = 0
    with Session.begin() as s:
        for user_id in labelers:
            while (view := lv.next_task(s, user_id=user_id, project_id=arena_id)) is not None:
                task = s.get(Task, view.task_id)
                new_id = task.response_a_id if task.response_a.checkpoint_id == new else (
                    task.response_b_id)  # fmt: skip
                choice = "a" if view.left.response_id == new_id else "b"
                lv.submit_compare(s, assignment_id=view.assignment_id, user_id=user_id,
                                  screen_choice=choice)  # fmt: skip
                votes += 1
    assert votes == entry["tasks_created"]  # overlap 1: one vote per task

    board = cli("leaderboard", "--project", "loop-arena", "--bootstrap", "20", "--json",
                user="voter0")  # fmt: skip
    assert board.code == 0, board.err
    rows = board.json()
    with Session.begin() as s:
        from labeling.models import Checkpoint

        new_name = s.get(Checkpoint, new).name
    assert rows[0]["model"] == new_name and rows[0]["rank"] == 1
    assert rows[0]["votes"] == votes

    # The reward model as judge: agreement is a share of the decided votes.
    judged = cli("arena", "judge", "--project", "loop-arena", "--reward",
                 str(checkpoints["reward"]), "--json", user=eng)  # fmt: skip
    assert judged.code == 0, judged.err
    out = judged.json()
    assert out["n"] == votes and 0.0 <= out["agreement"] <= 1.0
    assert out["judged_tasks"] == entry["tasks_created"]
    # without --json: a sentence and the judge's leaderboard as a table
    table = cli("arena", "judge", "--project", "loop-arena", "--reward",
                str(checkpoints["reward"]), user=eng)  # fmt: skip
    assert table.code == 0, table.err
    assert f"of {votes} decided votes" in table.out
    header = next(line for line in table.out.splitlines() if line.startswith("RANK"))
    assert header.split() == ["RANK", "MODEL", "RATING", "CI", "VOTES"]
    assert new_name in table.out


def test_checkpoints_add_registers_a_baseline(cli, snaps, tiny_models, Session):  # noqa: N803
    from labeling.models import Checkpoint
    from training.models import load_policy

    r = cli("checkpoints", "add", "--model", str(tiny_models["policy"]), "--name", "baseline",
            "--json", user="eng")  # fmt: skip
    assert r.code == 0, r.err
    out = r.json()
    with Session.begin() as s:
        ck = s.get(Checkpoint, out["checkpoint_id"])
        assert ck.name == "baseline" and ck.run_id is None and ck.kind == "policy"
        assert ck.config["source"] == str(tiny_models["policy"])
        model, _ = load_policy(f"checkpoint:{ck.id}", session=s)  # complete, safetensors
        assert model.num_parameters() > 0
    # a plain safetensors folder is linked, not written again: the same bytes, no second copy
    source = Path(tiny_models["policy"]) / "model.safetensors"
    linked = Path(out["path"]) / "model.safetensors"
    assert linked.stat().st_ino == source.stat().st_ino
    again = cli("checkpoints", "add", "--model", str(tiny_models["policy"]), "--name", "baseline",
                user="eng")  # fmt: skip
    assert again.code == 1 and "already exists" in again.err
    twice = cli("checkpoints", "add", "--model", f"checkpoint:{out['checkpoint_id']}", user="eng")
    assert twice.code == 1 and "already checkpoint" in twice.err
    assert cli("checkpoints", "add", "--model", "default", user="lab").code == 1  # a labeler


def _trained_checkpoint(Session, tiny_models, snapshot_id: int) -> tuple[int, int]:  # noqa: N803
    """(run id, checkpoint id): a succeeded run whose checkpoint is the tiny policy."""
    import os
    import shutil

    from labeling.registry import training_records as tr

    def copy_policy(directory):
        for name in os.listdir(tiny_models["policy"]):
            shutil.copy(os.path.join(tiny_models["policy"], name), directory / name)

    with Session.begin() as s:
        run = tr.start_run(s, kind="sft", snapshot_id=snapshot_id, config={}, created_by=None)
        directory = tr.write_checkpoint_dir(f"sft-run{run.id}", copy_policy)
        ck = tr.register_checkpoint(s, kind="policy", directory=directory, run_id=run.id,
                                    base_model="tiny-policy")  # fmt: skip
        tr.finish_run(s, run.id, metrics={"train_loss": 1.0})
        return run.id, ck.id


def test_a_capped_entry_reports_per_batch_and_every_contestant_gets_the_same_prompts(
    cli, admin, snaps, checkpoints, tiny_models, Session, monkeypatch,  # noqa: N803
):  # fmt: skip
    from app.ui.pages.engineer_runs import entry_text
    from labeling import arena
    from labeling.models import Prompt
    from training import arena_entry
    from training.generate import CPU_ANSWER_BATCH, device_and_dtype

    eng, cap = "eng", 6
    assert cli("projects", "create", "capped", "--kind", "arena", user=admin).code == 0
    with Session.begin() as s:
        source = s.scalar(select(Project.name).where(Project.kind == "pairwise"))
    assert cli("arena", "add-prompts", "--project", "capped", "--from", source, "--split",
               "all", user=eng).code == 0  # fmt: skip
    cfg = cli("arena", "config", "--project", "capped", "--max-new-tokens", "5",
              "--cpu-max-prompts", str(cap), "--cuda-max-prompts", "0", user=eng)  # fmt: skip
    assert cfg.code == 0, cfg.err
    on_cpu = device_and_dtype()[0].type == "cpu"
    expected = cap if on_cpu else 7  # no cap on CUDA unless one is set
    with Session.begin() as s:
        arena_id = s.scalar(select(Project.id).where(Project.name == "capped"))
        first_ids = s.scalars(
            select(Prompt.id).where(Prompt.project_id == arena_id).order_by(Prompt.id)
        ).all()[:expected]

    base = checkpoints["base"]
    entered = cli("arena", "enter", "--project", "capped", "--checkpoint", str(base), "--json",
                  user=eng)  # fmt: skip
    assert entered.code == 0, entered.err
    # --json stdout is the same dict as ever; the words are on stderr.
    assert set(entered.json()) == {"project", "checkpoint_id", "answers", "answers_skipped",
                                   "tasks_created", "pairs"}  # fmt: skip
    assert entered.json()["answers"] == expected
    lines = [x for x in entered.err.splitlines() if x.startswith("arena capped: answered")]
    batches = -(-expected // CPU_ANSWER_BATCH) if on_cpu else len(lines)
    assert len(lines) == batches and (batches >= 2 or not on_cpu)  # one line per batch
    assert lines[-1].startswith(f"arena capped: answered {expected}/{expected} prompts (100%)")
    if on_cpu:
        assert f"answers the first {cap} of 7 prompts" in entered.err
        assert "--cpu-max-prompts 0" in entered.err

    # A trained checkpoint enters the way the hook after a run does; its run records how the
    # entry went after every batch (the spy keeps the real function).
    run_id, trained = _trained_checkpoint(Session, tiny_models, snaps["preference"])
    recorded = []
    real = arena.record_entry

    def spy(session, **values):
        recorded.append(values.get("answered"))
        return real(session, **values)

    monkeypatch.setattr(arena, "record_entry", spy)
    results = arena_entry.enter_auto_arenas(Session, trained, progress=False)
    monkeypatch.setattr(arena, "record_entry", real)
    mine = next(r for r in results if r["project"] == "capped")
    assert mine["answers"] == expected and "error" not in mine
    # 0 at the start, the running count after each batch, then the entered total.
    if on_cpu:
        assert recorded == [0, *range(CPU_ANSWER_BATCH, expected, CPU_ANSWER_BATCH),
                            expected, expected]  # fmt: skip
    assert recorded[0] == 0 and recorded[-1] == expected

    with Session.begin() as s:
        answered = {
            ck: sorted(s.scalars(select(Response.prompt_id).where(Response.checkpoint_id == ck)))
            for ck in (base, trained)
        }
        assert answered[base] == answered[trained] == first_ids
        flags = s.scalars(select(Response.sampling_params).where(
            Response.checkpoint_id == trained)).all()  # fmt: skip
        assert all(isinstance(f["truncated"], bool) for f in flags)
        (entry,) = [e for e in arena.entry_progress(s, run_id) if e["project"] == "capped"]
    assert (entry["answered"], entry["total"], entry["status"]) == (expected, expected, "entered")
    assert entry["cap"] == (cap if on_cpu else None)
    assert entry_text(entry).startswith(f"arena entry capped: {expected}/{expected} prompts")

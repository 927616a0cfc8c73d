"""`rlhf train rl --gold_check_steps` end to end on the tiny models of test_train_dpo_rl.py
(SQLite; the arena side on both databases is tests/labeling/test_arena_gold_checks.py): the
policy at each listed step registered with its step and lineage, entered after the run in
the arena against the base alone; GRPO through its TrainerCallback, PPO through its loop;
bad flags refused in one sentence before any run is recorded; the settings kept on --queue."""

from __future__ import annotations

import json

import test_train_dpo_rl as rl_tests
from sqlalchemy import func, select

from labeling import arena
from labeling.models import Checkpoint, Project, Task, TrainingRun
from labeling.registry import training_records

db_url, Session, snaps = rl_tests.db_url, rl_tests.Session, rl_tests.snaps
tiny_models, checkpoints = rl_tests.tiny_models, rl_tests.checkpoints
GRPO = ["--per_device_train_batch_size", "2", "--num_generations", "2",
        "--max_completion_length", "4", "--watch_every", "0"]  # fmt: skip


def _arena(cli, admin, Session, name: str, *, auto_enter: bool) -> None:  # noqa: N803
    assert cli("projects", "create", name, "--kind", "arena", user=admin).code == 0
    with Session.begin() as s:
        source = s.scalar(select(Project.name).where(Project.kind == "pairwise"))
    added = cli("arena", "add-prompts", "--project", name, "--from", source, "--split", "all",
                user="eng")  # fmt: skip
    assert added.code == 0, added.err
    conf = cli("arena", "config", "--project", name, "--max-new-tokens", "4",
               "--cpu-max-prompts", "3", "--auto-enter" if auto_enter else "--no-auto-enter",
               user="eng")  # fmt: skip
    assert conf.code == 0, conf.err


def _opponents(Session, project: str) -> dict[int, set[int]]:  # noqa: N803
    """Each checkpoint in the arena's tasks -> the checkpoints it is paired with."""
    out: dict[int, set[int]] = {}
    with Session() as s:
        pid = s.scalar(select(Project.id).where(Project.name == project))
        for task in s.scalars(select(Task).where(Task.project_id == pid)):
            a, b = task.response_a.checkpoint_id, task.response_b.checkpoint_id
            out.setdefault(a, set()).add(b)
            out.setdefault(b, set()).add(a)
    return out


def test_grpo_gold_checks_enter_the_arena_against_the_base(
    cli, admin, snaps, checkpoints, Session,  # noqa: N803
):  # fmt: skip
    _arena(cli, admin, Session, "gold", auto_enter=False)
    base = checkpoints["base"]
    res = cli(
        "train", "rl", "--snapshot", str(snaps["preference"]), "--base", f"checkpoint:{base}",
        "--reward", f"checkpoint:{checkpoints['reward']}", "--json", "--max_steps", "2",
        "--gold_check_steps", "1,2", "--gold_check_arena", "gold", "--learning_rate", "0.5",
        *GRPO, user="eng",
    )  # fmt: skip
    assert res.code == 0, res.err
    out = res.json()
    assert {"run_id", "checkpoint_id", "metrics", "watch", "gold_checks"} <= set(out)
    gold = out["gold_checks"]
    assert [(g["step"], g["arena"]) for g in gold] == [(1, "gold"), (2, "gold")]
    assert all(g["tasks"] > 0 for g in gold), (gold, res.err[-2500:])
    ids = [g["checkpoint_id"] for g in gold]
    with Session() as s:
        rows = [s.get(Checkpoint, i) for i in ids]
        assert [r.name for r in rows] == [f"rl-grpo-run{out['run_id']}-step{n}" for n in (1, 2)]
        assert all(r.run_id == out["run_id"] and r.parent_id == base for r in rows)
        assert [r.config["gold_check_step"] for r in rows] == [1, 2]
        for r in rows:  # written atomically: complete, the adapter with a pointer to the base
            directory = training_records.checkpoint_dir(r)
            assert training_records.is_complete(directory)
            assert training_records.read_base_pointer(directory)["base"] == f"checkpoint:{base}"
        run = s.get(TrainingRun, out["run_id"])
        assert run.config["gold_check_steps"] == [1, 2]
        assert run.config["gold_check_arena"] == "gold"
        results = arena.gold_check_results(s, out["run_id"])
    # each gold check is paired with the base alone; the final checkpoint did not enter
    # (the arena is not auto-enter), and the base was entered first for the checks
    opponents = _opponents(Session, "gold")
    assert opponents[ids[0]] == {base} and opponents[ids[1]] == {base}
    assert opponents[base] == set(ids) and out["checkpoint_id"] not in opponents
    assert [(g["step"], g["n"], g["win_rate"]) for g in results] == [(1, 0, None), (2, 0, None)]


def test_ppo_gold_check_and_the_final_checkpoint_in_an_auto_enter_arena(
    cli, admin, snaps, checkpoints, Session,  # noqa: N803
):  # fmt: skip
    _arena(cli, admin, Session, "auto", auto_enter=True)
    base = checkpoints["base"]
    res = cli(
        "train", "rl", "--algo", "ppo", "--snapshot", str(snaps["sft"]),
        "--base", f"checkpoint:{base}", "--reward", f"checkpoint:{checkpoints['reward']}",
        "--json", "--max_steps", "2", "--gold_check_steps", "1", "--watch_every", "0",
        "--per_device_train_batch_size", "2", "--response_length", "4", "--num_ppo_epochs", "1",
        "--save_steps", "0", "--learning_rate", "0.5", user="eng",
    )  # fmt: skip
    assert res.code == 0, res.err
    out = res.json()
    ((gold),) = out["gold_checks"]
    assert gold["step"] == 1 and gold["arena"] == "auto" and gold["tasks"] > 0
    with Session() as s:
        row = s.get(Checkpoint, gold["checkpoint_id"])
        assert row.name == f"rl-ppo-run{out['run_id']}-step1" and row.parent_id == base
        assert row.config["gold_check_step"] == 1 and row.run_id == out["run_id"]
    opponents = _opponents(Session, "auto")
    # the gold check (step 1) meets the base alone; the final checkpoint (step 2) meets the
    # base, not the gold check (a step-2 check would be the final policy: the same answers,
    # so the same tasks)
    assert opponents[gold["checkpoint_id"]] == {base}
    assert opponents[out["checkpoint_id"]] == {base}


def test_bad_gold_check_flags_are_one_sentence_and_record_nothing(
    cli, admin, snaps, checkpoints, Session,  # noqa: N803
):  # fmt: skip
    _arena(cli, admin, Session, "quiet", auto_enter=False)
    base = f"checkpoint:{checkpoints['base']}"
    common = ["train", "rl", "--snapshot", str(snaps["preference"]), "--reward",
              f"checkpoint:{checkpoints['reward']}", "--max_steps", "2", *GRPO]  # fmt: skip
    cases = [
        (["--base", base, "--gold_check_steps", "0"], "'0' is not a step"),
        (["--base", base, "--gold_check_steps", "1,1"], "step 1 is listed twice"),
        (["--base", base, "--gold_check_steps", "3", "--gold_check_arena", "quiet"],
         "step 3 is past max_steps 2"),
        (["--gold_check_steps", "1", "--gold_check_arena", "quiet"],
         "the base must be a checkpoint: register it (`rlhf checkpoints add --model default"),
        (["--base", base, "--gold_check_steps", "1"], "no arena to enter"),
        (["--base", base, "--gold_check_steps", "1", "--gold_check_arena", "nowhere"],
         "no project named 'nowhere'"),
    ]  # fmt: skip
    for flags, message in cases:
        bad = cli(*common, *flags, user="eng")
        assert bad.code != 0 and message in bad.err, (flags, bad.err)
        assert len([line for line in bad.err.splitlines() if line.strip()]) == 1, bad.err
    with Session() as s:
        assert s.scalar(select(func.count()).select_from(TrainingRun)) == 0
        assert s.scalar(select(func.count()).select_from(Checkpoint)) == 2  # base, reward
    # --queue keeps the settings for the worker (and --resume reads them back from there)
    queued = cli(*common, "--base", base, "--gold_check_steps", "2,1", "--gold_check_arena",
                 "quiet", "--queue", "--json", user="eng")  # fmt: skip
    assert queued.code == 0, queued.err
    from training.spec import RunSpec

    with Session() as s:
        run = s.get(TrainingRun, json.loads(queued.out)["run_id"])
        assert run.config["gold_check_steps"] == "1,2"  # a queued config holds scalars
        spec = RunSpec.from_run(run)
    assert spec.watch["gold_check_steps"] == [1, 2] and spec.watch["gold_check_arena"] == "quiet"
    # the Launch training form: the same settings in its "more config fields" JSON
    form = RunSpec.from_form(
        "rl", "cpu-demo", learning_rate=1e-5, max_steps=2, batch_size=2, reward=None,
        extra='{"gold_check_steps": [2, 1], "gold_check_arena": "quiet"}',
    )  # fmt: skip
    assert form.watch == {"gold_check_steps": [1, 2], "gold_check_arena": "quiet"}
    assert form.to_config()["gold_check_steps"] == "1,2" and "gold_check_steps" not in form.fields
    # the checks that need no database refuse a queued run at once
    late = cli(*common, "--base", base, "--gold_check_steps", "5", "--queue", user="eng")
    assert late.code != 0 and "step 5 is past max_steps 2" in late.err
    with Session() as s:
        assert s.scalar(select(func.count()).select_from(TrainingRun)) == 1

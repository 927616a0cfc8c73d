"""`rlhf worker` and the atomic claim of queued runs (labeling/registry/run_queue.py).

The claim tests run on SQLite and PostgreSQL: two claimers, each with its own engine (as two
hosts would have), start at once and every queued run is claimed by exactly one of them.
The worker test trains tiny in-process models (SQLite only, like the recipe tests).
"""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import func, select, update
from test_train_sft_reward import TINY, snaps, tiny_models  # noqa: F401  (fixtures)

from labeling.db import make_engine, make_sessionmaker
from labeling.errors import Conflict
from labeling.models import Checkpoint, RunStatus, TrainingRun, User
from labeling.registry import run_queue, runs
from training import worker

N_RUNS = 24


def _queue_bare_runs(Session, n=N_RUNS, kind="sft"):  # noqa: N803
    with Session.begin() as s:
        rows = [TrainingRun(kind=kind, status=RunStatus.queued, config={}) for _ in range(n)]
        s.add_all(rows)
        s.flush()
        return [r.id for r in rows]


@pytest.mark.parametrize("claimers", [2])
def test_concurrent_claimers_take_each_run_exactly_once(db_url, Session, claimers):  # noqa: N803
    ids = _queue_bare_runs(Session)
    barrier = threading.Barrier(claimers)
    taken: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def claimer(host: str) -> None:
        engine = make_engine(db_url)  # its own connections, as another host would have
        maker = make_sessionmaker(engine)
        mine: list[int] = []
        try:
            barrier.wait(timeout=30)
            while True:
                with maker.begin() as s:
                    run = run_queue.claim_next_run(s, host=host)
                    if run is None:
                        break
                    mine.append(run.id)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            taken[host] = mine
            engine.dispose()

    threads = [threading.Thread(target=claimer, args=(f"host-{i}",)) for i in range(claimers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    claimed = [i for mine in taken.values() for i in mine]
    assert sorted(claimed) == ids  # every run once, none twice
    for mine in taken.values():
        assert mine == sorted(mine)  # oldest first
    with Session.begin() as s:
        rows = s.scalars(select(TrainingRun).order_by(TrainingRun.id)).all()
        for run in rows:
            assert run.status == RunStatus.running and run.started_at and run.heartbeat_at
            assert run.id in taken[run.host]
        assert run_queue.claim_next_run(s, host="late") is None


def test_claim_by_kind_reap_and_reopen(db_url, Session):  # noqa: N803
    sft = _queue_bare_runs(Session, 1, "sft")[0]
    reward = _queue_bare_runs(Session, 1, "reward")[0]
    with Session.begin() as s:
        assert run_queue.claim_next_run(s, host="h", kinds=["reward", "dpo"]).id == reward
        assert run_queue.claim_next_run(s, host="h", kinds=["dpo"]) is None
    with Session.begin() as s:
        # A live run (fresh heartbeat) is neither reaped nor reopened.
        assert run_queue.reap_stale_runs(s, stale_after=600) == []
        with pytest.raises(Conflict, match="is running on h"):
            run_queue.reopen_run(s, reward)
        with pytest.raises(Conflict, match="queued"):
            run_queue.reopen_run(s, sft)
    with Session.begin() as s:
        assert run_queue.reap_stale_runs(s, stale_after=0) == [reward]
        run = s.get(TrainingRun, reward)
        assert run.status == RunStatus.failed and "--resume" in run.error
    with Session.begin() as s:
        run = run_queue.reopen_run(s, reward, host="h2")
        assert run.status == RunStatus.running and run.host == "h2" and run.error is None
    with Session.begin() as s:  # two resumes of one run: the second loses
        with pytest.raises(Conflict):
            run_queue.reopen_run(s, reward)


# --- the worker on tiny models ---------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # training costs: SQLite only
def test_worker_runs_queued_runs_cancels_and_fails_clearly(
    cli,
    snaps,  # noqa: F811
    tiny_models,  # noqa: F811
    Session,  # noqa: N803
    monkeypatch,
):
    def queue(kind, *flags):
        res = cli("train", kind, "--snapshot", str(snaps[_snap(kind)]), "--queue", "--json",
                  *flags, user="eng")  # fmt: skip
        assert res.code == 0, res.err
        assert res.json()["status"] == "queued"
        return res.json()["run_id"]

    sft = queue("sft", "--base", tiny_models["policy"], *TINY, "--learning_rate", "1e-3")
    reward = queue("reward", "--base", tiny_models["reward"], *TINY)
    cancelled = queue("sft", "--base", tiny_models["policy"], *TINY)
    stopped = queue("sft", "--base", tiny_models["policy"], *TINY)
    # A bad field is refused when queued from the CLI ...
    bad_cli = cli("train", "sft", "--snapshot", str(snaps["sft"]), "--queue", "--no_such", "1",
                  user="eng")  # fmt: skip
    assert bad_cli.code == 1 and "no_such" in bad_cli.err
    with Session.begin() as s:
        eng = s.scalar(select(User).where(User.name == "eng"))
        # ... the UI's form stores what it is given: the worker fails that run clearly.
        bad = runs.queue_training_run(
            s,
            kind="reward",
            snapshot_id=snaps["preference"],
            config={"preset": "cpu-demo", "base": tiny_models["reward"], "no_such_field": 1},
            created_by=eng.id,
        ).id
        runs.cancel_run(s, cancelled)  # queued: cancelled at once, never claimed
        # A cancel that arrives just after a worker claimed the run: it stops at its first step.
        s.execute(
            update(TrainingRun).where(TrainingRun.id == stopped).values(cancel_requested=True)
        )

    res = cli("worker", "--once", "--json", "--host", "worker-a", user="eng")
    assert res.code == 1, res.err  # some runs did not succeed
    lines = [json.loads(line) for line in res.out.splitlines()]
    final = {d["run_id"]: d for d in lines if d["status"] != "running"}
    assert set(final) == {sft, reward, stopped, bad}

    with Session.begin() as s:
        get = s.get
        for run_id in (sft, reward):
            run = get(TrainingRun, run_id)
            assert run.status == RunStatus.succeeded and run.host == "worker-a", run.error
            assert run.config["max_steps"] == 2 and run.config["preset"] == "cpu-demo"
            ck = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)).one()
            assert final[run_id]["checkpoint_id"] == ck.id
            assert run.created_by == s.scalar(select(User.id).where(User.name == "eng"))
        assert get(TrainingRun, sft).config["learning_rate"] == 1e-3
        assert get(TrainingRun, cancelled).status == RunStatus.cancelled
        assert get(TrainingRun, cancelled).host is None  # never claimed
        assert get(TrainingRun, stopped).status == RunStatus.cancelled
        assert get(TrainingRun, bad).status == RunStatus.failed
        assert "no_such_field" in get(TrainingRun, bad).error
        assert s.scalar(select(func.count()).select_from(Checkpoint)) == 2
        sft_checkpoint = final[sft]["checkpoint_id"]

    # A kind whose recipe is not installed on this worker fails that run with a clear error.
    monkeypatch.setitem(worker.RECIPES, "dpo", "training.no_dpo")
    with Session.begin() as s:
        eng = s.scalar(select(User).where(User.name == "eng"))
        dpo = runs.queue_training_run(
            s,
            kind="dpo",
            snapshot_id=snaps["preference"],
            config={"preset": "cpu-demo"},
            base_checkpoint_id=sft_checkpoint,
            created_by=eng.id,
        ).id
    res = cli("worker", "--once", "--kinds", "sft,reward", user="eng")
    assert res.code == 0 and "no queued runs" in res.out  # --kinds leaves the dpo run queued
    res = cli("worker", "--once", user="eng")
    assert res.code == 1 and "no dpo recipe" in res.out
    with Session.begin() as s:
        run = s.get(TrainingRun, dpo)
        assert run.status == RunStatus.failed and "training.no_dpo is not installed" in run.error


def _snap(kind: str) -> str:
    return "sft" if kind == "sft" else "preference"

"""`rlhf train sft|reward`, `rlhf checkpoints`, `rlhf eval reward` end to end on tiny models.

Labels are seeded in a migrated SQLite database, frozen with create_snapshot, and trained on
for two steps with tiny models built in-process (a Llama policy, a BERT reward encoder) and
offline tokenizers; nothing is downloaded (HF_HUB_OFFLINE=1). The slow test runs one step of
each recipe on the real default models (SmolLM2 from its GGUF, MiniLM).
"""

from __future__ import annotations

import os

import pytest
import transformers
from sqlalchemy import func, select
from test_training_models import save_tiny_bert, save_tiny_policy, word_tokenizer

from labeling import snapshots
from labeling.db import make_engine, make_sessionmaker
from labeling.hashing import prompt_hash, sha256_text, task_hash
from labeling.models import (
    AuthorKind,
    Checkpoint,
    Demonstration,
    Origin,
    Preference,
    Project,
    ProjectKind,
    Prompt,
    Response,
    Role,
    RunMetric,
    RunStatus,
    Task,
    TrainingRun,
    User,
)
from labeling.settings import load_settings

# (question, split, good answer, bad answer, strength)
PAIRS = [
    ("what colour is the sky", "train", "the sky is blue", "the sky is green", 3),
    ("name a fruit", "train", "an apple", "a carrot", 1),
    ("say hello politely", "train", "hello there friend", "go away", 2),
    ("count to three", "train", "one two three", "one three", None),
    ("what is ice", "heldout", "frozen water", "hot steam", 2),
    ("name a planet", "heldout", "mars", "the moon", 3),
    ("is fire hot", "heldout", "yes fire is hot", "no fire is cold", 1),
]
TINY = ["--max_steps", "2", "--per_device_train_batch_size", "2"]


@pytest.fixture
def db_url(sqlite_url):
    """Training runs on SQLite only: the recipes' database work is plain services, tested on
    PostgreSQL in test_training_records.py; here the cost is the training."""
    return sqlite_url


@pytest.fixture
def Session(sqlite_url):  # noqa: N802
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _seed(s, pairs=PAIRS, name="p") -> Project:
    project = Project(name=name, kind=ProjectKind.pairwise)
    labeler = s.scalar(select(User).where(User.name == "lab")) or User(
        name="lab", role=Role.labeler
    )
    s.add_all([project, labeler])
    s.flush()
    for question, split, good, bad, strength in pairs:
        messages = [{"role": "user", "content": question}]
        p = Prompt(
            project_id=project.id,
            messages=messages,
            content_hash=prompt_hash(messages),
            split=split,
        )
        s.add(p)
        s.flush()
        a, b = (
            Response(
                prompt_id=p.id, text=t, content_hash=sha256_text(t), author_kind=AuthorKind.imported
            )
            for t in (good, bad)
        )
        s.add_all([a, b])
        s.flush()
        shas = [a.content_hash, b.content_hash]
        t = Task(
            project_id=project.id,
            prompt_id=p.id,
            kind="compare",
            content_hash=task_hash("compare", p.content_hash, shas),
            response_a_id=a.id,
            response_b_id=b.id,
        )
        w = Task(
            project_id=project.id,
            prompt_id=p.id,
            kind="write",
            content_hash=task_hash("write", p.content_hash, []),
        )
        s.add_all([t, w])
        s.flush()
        s.add(Preference(task_id=t.id, user_id=labeler.id, choice="a", strength=strength))
        s.add(Demonstration(task_id=w.id, user_id=None, origin=Origin.imported, response_id=a.id))
    s.flush()
    return project


@pytest.fixture
def snaps(Session, cli, admin):  # noqa: N803
    """{"sft": id, "preference": id} for the seeded project."""
    res = cli(
        "users",
        "add",
        "eng",
        "--role",
        "engineer",
        "--password-stdin",
        user=admin,
        stdin="password-123\n",
    )
    assert res.code == 0, res.err
    with Session.begin() as s:
        project = _seed(s)
        out = {}
        for kind in ("sft", "preference"):
            snap, _ = snapshots.create_snapshot(s, project=project, kind=kind)
            out[kind] = snap.id
    return out


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    words = {w for q, _, g, b, _ in PAIRS for w in f"{q} {g} {b}".split()}
    policy = save_tiny_policy(root / "policy", word_tokenizer(sorted(words)))
    reward = save_tiny_bert(root / "bert", sorted(words | {"user", "assistant", ":"}))
    return {"policy": str(policy), "reward": str(reward)}


def test_sft_and_reward_register_runs_and_checkpoints(cli, snaps, tiny_models, Session):  # noqa: N803
    sft = cli(
        "train",
        "sft",
        "--snapshot",
        str(snaps["sft"]),
        "--base",
        tiny_models["policy"],
        "--json",
        *TINY,
        "--learning_rate",
        "1e-3",
        user="eng",
    )
    assert sft.code == 0, sft.err
    result = sft.json()
    assert set(result) == {"run_id", "checkpoint_id", "metrics"}
    assert result["metrics"]["steps"] == 2 and result["metrics"]["train_rows"] == 4

    reward = cli(
        "train",
        "reward",
        "--snapshot",
        str(snaps["preference"]),
        "--base",
        tiny_models["reward"],
        "--json",
        *TINY,
        user="eng",
    )
    assert reward.code == 0, reward.err
    rresult = reward.json()
    assert rresult["metrics"]["heldout_n"] == 3
    assert 0 <= rresult["metrics"]["heldout_accuracy"] <= 1

    assert rresult["metrics"]["train_rows"] == 4 and rresult["metrics"]["dropped_rows"] == 0
    # the tiny encoder's new head was fitted as a probe on all 4 pairs before training
    assert rresult["metrics"]["probe_rows"] == 4 and rresult["metrics"]["probe_strength"] > 0
    # training on from a reward checkpoint keeps its trained head: no probe
    onward = cli(
        "train", "reward", "--snapshot", str(snaps["preference"]),
        "--base", f"checkpoint:{rresult['checkpoint_id']}", "--json", *TINY, user="eng",
    )  # fmt: skip
    assert onward.code == 0, onward.err
    assert "probe_rows" not in onward.json()["metrics"]

    with Session.begin() as s:
        for res, kind in ((result, "sft"), (rresult, "reward")):
            run = s.get(TrainingRun, res["run_id"])
            assert run.status == RunStatus.succeeded and run.kind == kind
            assert run.host and run.started_at and run.finished_at and run.created_by
            assert run.config["max_steps"] == 2 and run.config["preset"] == "cpu-demo"
            assert run.snapshot_sha256 == snapshots.get_snapshot(s, run.snapshot_id).sha256
            steps = s.scalars(select(RunMetric.step).where(RunMetric.run_id == run.id)).all()
            assert sorted(steps) == [1, 2]
            ck = s.get(Checkpoint, res["checkpoint_id"])
            assert (ck.run_id, ck.snapshot_sha256) == (run.id, run.snapshot_sha256)
            assert ck.parent_id is None and ck.base_model
        assert s.get(TrainingRun, result["run_id"]).config["use_peft"] is True  # LoRA
        ck = s.get(Checkpoint, rresult["checkpoint_id"])
        assert ck.evaluation["accuracy"] == rresult["metrics"]["heldout_accuracy"]
        evaluation = ck.evaluation
        assert evaluation["ci_low"] <= evaluation["accuracy"] <= evaluation["ci_high"]
        for key in ("ece", "longer_wins_accuracy", "score_mean", "score_std", "ties"):
            assert evaluation[key] is not None, key
        assert evaluation["score_std"] > 0  # RL normalises rewards with mean / std
        assert sum(v["n"] for v in evaluation["accuracy_by_strength"].values()) == 3

    shown = cli("checkpoints", "show", str(result["checkpoint_id"]), "--json", user="eng").json()
    path = shown["path"]
    assert shown["complete"] and shown["kind"] == "policy" and shown["run"]["status"] == "succeeded"
    assert {"adapter_model.safetensors", "COMPLETE", "tokenizer.json"} <= set(os.listdir(path))
    assert not any(n.endswith((".bin", ".pt")) for n in os.listdir(path))
    assert shown["storage"] == "adapter"  # LoRA: the adapter, merged when it is loaded

    # SFT again from the registered checkpoint: lineage names the parent.
    again = cli(
        "train",
        "sft",
        "--snapshot",
        str(snaps["sft"]),
        "--base",
        f"checkpoint:{result['checkpoint_id']}",
        "--json",
        *TINY,
        "--use_peft",
        "false",
        user="eng",
    )
    assert again.code == 0, again.err
    child = cli("checkpoints", "show", str(again.json()["checkpoint_id"]), "--json", user="eng")
    assert child.json()["parent_id"] == result["checkpoint_id"]
    listed = cli("checkpoints", "list", "--json", user="eng").json()
    assert [c["id"] for c in listed][:1] == [again.json()["checkpoint_id"]] and len(listed) == 4
    assert cli("checkpoints", "list", user="eng").code == 0

    ev = cli(
        "eval",
        "reward",
        "--checkpoint",
        str(rresult["checkpoint_id"]),
        "--snapshot",
        str(snaps["preference"]),
        "--split",
        "heldout",
        "--json",
        user="eng",
    )
    assert ev.code == 0, ev.err
    out = ev.json()
    assert out["n"] == 3 and 0 <= out["accuracy"] <= 1
    assert out["accuracy"] == pytest.approx(rresult["metrics"]["heldout_accuracy"])
    # the same scores, by the in-memory model and by the saved one in other batches: float32
    # sums differ in the last digits (a fitted head's weights are larger than a random one's)
    for key in ("ci_low", "ci_high", "ece", "longer_wins_accuracy", "score_mean"):
        assert out[key] == pytest.approx(evaluation[key], rel=1e-4), key
    assert out["accuracy_by_strength"].keys() == evaluation["accuracy_by_strength"].keys()

    # Only engineers and admins train, list and evaluate.
    lab = cli(
        "users",
        "add",
        "lab2",
        "--role",
        "labeler",
        "--password-stdin",
        user="admin",
        stdin="password-123\n",
    )
    assert lab.code == 0, lab.err
    for args in (
        ("train", "sft", "--snapshot", str(snaps["sft"]), "--base", tiny_models["policy"]),
        ("checkpoints", "list"),
        ("eval", "reward", "--checkpoint", str(rresult["checkpoint_id"]), "--snapshot", "1"),
    ):
        denied = cli(*args, user="lab2")
        assert denied.code == 1 and "error:" in denied.err, args
    assert cli("checkpoints", "list").code == 1  # nobody named


def test_reward_trains_on_every_pair_over_a_small_budget(cli, snaps, tiny_models, Session):  # noqa: N803
    """max_length 12: RewardTrainer alone would drop the pairs over it; here each is cut (the
    prompt's oldest words, never the answer) and trained on. Batch 1, one epoch: the steps
    are the rows the trainer saw."""
    from training.models import load_reward_model
    from training.scoring import conversation_ids

    _, tok = load_reward_model(tiny_models["reward"])
    train = [(q, g, b) for q, split, g, b, _ in PAIRS if split == "train"]

    def tokens(question: str, answer: str) -> int:
        return len(conversation_ids(tok, [{"role": "user", "content": question},
                                          {"role": "assistant", "content": answer}]))  # fmt: skip

    over = sum(max(tokens(q, g), tokens(q, b)) > 12 for q, g, b in train)
    assert over >= 2  # what TRL would have dropped
    res = cli(
        "train", "reward", "--snapshot", str(snaps["preference"]), "--base",
        tiny_models["reward"], "--json", "--max_length", "12", "--num_train_epochs", "1",
        "--per_device_train_batch_size", "1", user="eng",
    )  # fmt: skip
    assert res.code == 0, res.err
    metrics = res.json()["metrics"]
    assert (metrics["train_rows"], metrics["dropped_rows"]) == (4, 0)
    assert metrics["truncated_rows"] == over
    assert metrics["steps"] == metrics["train_rows"] - metrics["dropped_rows"]
    with Session.begin() as s:
        ck = s.get(Checkpoint, res.json()["checkpoint_id"])
        assert ck.evaluation["max_length"] == 12 and ck.evaluation["truncated"] >= 1


def test_a_probe_only_reward_model_trains_no_step_and_keeps_the_fitted_head(
    cli, snaps, tiny_models, Session
):  # noqa: N803
    """--num_train_epochs 0: the new head fitted on the frozen encoder's features (LP
    without FT) is the reward model; it is saved, evaluated and registered like any other."""
    import torch

    from reward.head_init import fit_head
    from reward.truncation import fit_pairs, read_rows
    from training.models import load_reward_model

    res = cli(
        "train", "reward", "--snapshot", str(snaps["preference"]), "--base",
        tiny_models["reward"], "--json", "--num_train_epochs", "0", user="eng",
    )  # fmt: skip
    assert res.code == 0, res.err
    metrics = res.json()["metrics"]
    assert metrics["steps"] == 0 and metrics["probe_rows"] == 4
    saved, tok = load_reward_model(f"checkpoint:{res.json()['checkpoint_id']}")
    # the same fit on the same pairs, by hand: the saved head is that probe
    with Session.begin() as s:
        snapshot = snapshots.get_snapshot(s, snaps["preference"])
        rows = read_rows(snapshots.snapshot_files(snapshot)["train"])
    fresh, _ = load_reward_model(tiny_models["reward"])
    fit_head(fresh, tok, fit_pairs(tok, rows, 512).rows)  # the preset's budget
    head = getattr(saved, "score", None) or saved.classifier
    expected = getattr(fresh, "score", None) or fresh.classifier
    assert torch.allclose(head.weight, expected.weight, atol=1e-5)


def test_reward_on_a_policy_trunk_with_lora(cli, snaps, tiny_models, Session):  # noqa: N803
    """--base policy:DIR: the tiny Llama as a sequence classifier, LoRA + the score head,
    stored as an adapter that loads as a plain classifier."""

    from training.models import load_reward_model

    res = cli(
        "train", "reward", "--snapshot", str(snaps["preference"]), "--base",
        f"policy:{tiny_models['policy']}", "--json", *TINY, "--use_peft", "true",
        "--lora_target_modules", "q_proj", "v_proj", user="eng",
    )  # fmt: skip
    assert res.code == 0, res.err
    with Session.begin() as s:
        ck = s.get(Checkpoint, res.json()["checkpoint_id"])
        assert ck.evaluation["n"] == 3 and ck.evaluation["score_std"] is not None
        checkpoint_id = ck.id
    model, _ = load_reward_model(f"checkpoint:{checkpoint_id}")
    assert isinstance(model, transformers.LlamaForSequenceClassification)
    shown = cli("checkpoints", "show", str(checkpoint_id), "--json", user="eng").json()
    assert shown["storage"] == "adapter" and "model.safetensors" not in os.listdir(shown["path"])


def test_nan_loss_fails_the_run_and_registers_nothing(cli, snaps, tiny_models, Session):  # noqa: N803
    bad = cli(
        "train",
        "sft",
        "--snapshot",
        str(snaps["sft"]),
        "--base",
        tiny_models["policy"],
        "--use_peft",
        "false",
        "--max_grad_norm",
        "0",
        "--learning_rate",
        "1e30",
        "--max_steps",
        "3",
        "--per_device_train_batch_size",
        "2",
        user="eng",
    )
    assert bad.code == 1
    assert "non-finite" in bad.err and "no checkpoint" in bad.err
    with Session.begin() as s:
        run = s.scalars(select(TrainingRun)).one()
        assert run.status == RunStatus.failed and "non-finite" in run.error
        assert s.scalar(select(func.count()).select_from(Checkpoint)) == 0
    assert not list((load_settings().checkpoints_dir).glob("*"))


def test_too_small_or_wrong_snapshot_fails_before_any_model_loads(cli, snaps, Session):  # noqa: N803
    with Session.begin() as s:
        project = _seed(s, pairs=[PAIRS[0], PAIRS[4]], name="small")
        small = snapshots.create_snapshot(s, project=project, kind="sft")[0].id
    # The base does not exist: had a model been loaded first, the error would name it.
    res = cli("train", "sft", "--snapshot", str(small), "--base", "/no/such/model", user="eng")
    assert res.code == 1 and "1 training rows: too few" in res.err
    res = cli("train", "reward", "--snapshot", str(snaps["sft"]), "--base", "/no/such", user="eng")
    assert res.code == 1 and "is a sft snapshot" in res.err
    res = cli("train", "sft", "--snapshot", str(snaps["sft"]), "--no_such_field", "1", user="eng")
    assert res.code == 1 and "unknown config flags --no_such_field" in res.err
    with Session.begin() as s:
        assert s.scalar(select(func.count()).select_from(TrainingRun)) == 0


@pytest.mark.slow
def test_real_default_models_one_step_each(cli, snaps, Session):  # noqa: N803
    """SmolLM2-135M-Instruct (GGUF -> safetensors cache) and MiniLM, one step each."""
    one = ["--max_steps", "1", "--per_device_train_batch_size", "2", "--max_length", "64"]
    sft = cli("train", "sft", "--snapshot", str(snaps["sft"]), "--json", *one, user="eng")
    assert sft.code == 0, sft.err
    cache = load_settings().home / "models" / "smollm2-135m-instruct"
    assert (cache / "model.safetensors").is_file() and (cache / "COMPLETE").is_file()
    reward = cli(
        "train", "reward", "--snapshot", str(snaps["preference"]), "--json", *one, user="eng"
    )
    assert reward.code == 0, reward.err
    with Session.begin() as s:
        for res in (sft.json(), reward.json()):
            ck = s.get(Checkpoint, res["checkpoint_id"])
            assert s.get(TrainingRun, res["run_id"]).status == RunStatus.succeeded
            assert ck.base_model in (
                "HuggingFaceTB/SmolLM2-135M-Instruct",
                "sentence-transformers/all-MiniLM-L6-v2",
            )

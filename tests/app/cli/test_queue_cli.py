"""`rlhf queue prioritise` end to end on both databases, with a tiny BERT reward checkpoint
built here (and once the real default reward base): the JSON, the order each strategy
asks for, claims that follow it, gold and done tasks left alone, a reproducible random
order, the role check, and one sentence for each bad input that writes nothing."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select

from labeling import projects, queue
from labeling.accounts import users
from labeling.models import Task
from labeling.tasks import add_compare_task, add_prompt, add_response

WORDS = ["good", "bad", "fine", "poor", "kind", "rude", "help", "harm"]
ITEMS, LABELED = 20, 8


def seed(Session):  # noqa: N803
    """'pairs': 20 items (overlap 1) and one gold item; ann labels 8 (the first answer
    wins when it has the earlier word of its pair); 'notes' (sft); 'empty' (pairwise, no
    tasks); an engineer 'eng'."""
    rng = random.Random(2)
    with Session.begin() as s:
        p = projects.create_project(s, name="pairs", kind="pairwise", overlap=1)
        for i in range(ITEMS):
            prompt = add_prompt(s, p, f"q{i} help")
            a = add_response(s, prompt, " ".join(rng.choices(WORDS, k=3)) + f" a{i}")
            b = add_response(s, prompt, " ".join(rng.choices(WORDS, k=3)) + f" b{i}")
            add_compare_task(s, p, prompt, a, b)
        prompt = add_prompt(s, p, "gold help")
        add_compare_task(s, p, prompt, add_response(s, prompt, "good"),
                         add_response(s, prompt, "bad"), gold_choice="a")  # fmt: skip
        projects.create_project(s, name="notes", kind="sft")
        projects.create_project(s, name="empty", kind="pairwise")
        fresh = projects.create_project(s, name="fresh", kind="pairwise")
        for i in range(3):
            prompt = add_prompt(s, fresh, f"q{i} kind")
            add_compare_task(s, fresh, prompt, add_response(s, prompt, f"good a{i}"),
                             add_response(s, prompt, f"rude b{i}"))  # fmt: skip
        ann = users.add_user(s, name="ann", role="labeler", password=None).id
        users.add_user(s, name="eng", role="engineer", password=None)
        pid = p.id
    with Session.begin() as s:
        for _ in range(LABELED):
            a = queue.claim_next(s, project_id=pid, user_id=ann, rng=rng)
            queue.submit_preference(s, task_id=a.task_id, user_id=ann, choice=rng.choice("ab"))
    return pid


def tiny_reward(cli, tmp_path) -> int:
    """A registered reward checkpoint: a 1-layer BERT sequence classifier, its head saved."""
    torch = pytest.importorskip("torch")
    import transformers

    folder = tmp_path / "tiny-rm"
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "user", "assistant", ":", *WORDS]
    vocab += [f"{c}{i}" for i in range(ITEMS) for c in "qab"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, num_labels=1)  # fmt: skip
    model = transformers.BertForSequenceClassification(config)
    model.save_pretrained(folder, safe_serialization=True)
    added = cli("checkpoints", "add", "--model", str(folder), "--kind", "reward",
                "--name", "tiny-rm", "--json", user="eng")  # fmt: skip
    assert added.code == 0, added.err
    return added.json()["checkpoint_id"]


def state(Session):  # noqa: N803
    with Session.begin() as s:
        return dict(s.execute(select(Task.id, Task.priority).order_by(Task.id)).all())


def closed_or_gold(Session):  # noqa: N803
    with Session.begin() as s:
        return set(s.scalars(select(Task.id).where((Task.status != "open") | Task.is_gold)))


def test_prioritise_orders_the_queue_by_each_strategy(cli, admin, Session, tmp_path):  # noqa: N803
    pid = seed(Session)
    ck = tiny_reward(cli, tmp_path)
    fixed = closed_or_gold(Session)
    assert len(fixed) == LABELED + 1

    r = cli("queue", "prioritise", "--project", "pairs", "--reward", str(ck), "--top", "12",
            "--strategy", "disagreement", "--json", user="eng")  # fmt: skip
    assert r.code == 0, r.err
    out = r.json()
    assert out["strategy"] == "disagreement" and out["k"] == 5 and out["prior"] is True
    assert out["members"] == 6 and out["labeled_pairs"] == LABELED and out["note"] is None
    assert out["open_tasks"] == out["reordered"] == ITEMS - LABELED
    top = out["top"]
    assert len(top) == ITEMS - LABELED
    spreads = [t["disagreement"] for t in top]
    assert spreads == sorted(spreads, reverse=True) and spreads[0] > 0
    assert [t["priority"] for t in top] == list(range(ITEMS - LABELED, 0, -1))
    assert {"prompt", "text_a", "text_b", "predicted_margin", "p_a"} <= set(top[0])
    after = state(Session)
    assert {t: after[t] for t in fixed} == {t: 0 for t in fixed}  # gold and done untouched
    with Session.begin() as s:  # a labeler's next claim is the top of the new order
        bea = users.add_user(s, name="bea", role="labeler", password=None).id
        claim = queue.claim_next(s, project_id=pid, user_id=bea, rng=random.Random(0))
        assert claim.task_id == top[0]["task_id"]
        queue.release(s, assignment_id=claim.id, user_id=bea)

    m = cli("queue", "prioritise", "--project", "pairs", "--reward", f"checkpoint:{ck}",
            "--k", "3", "--json", user=admin)  # fmt: skip
    assert m.code == 0, m.err
    close = [abs(t["predicted_margin"]) for t in m.json()["top"]]
    assert close == sorted(close) and m.json()["members"] == 4
    assert m.json()["strategy"] == "margin"  # the default

    orders = []
    for seed_value in ("7", "7", "8"):
        rr = cli("queue", "prioritise", "--project", "pairs", "--reward", str(ck), "--strategy",
                 "random", "--seed", seed_value, "--top", "20", "--json", user="eng")  # fmt: skip
        assert rr.code == 0, rr.err
        orders.append([t["task_id"] for t in rr.json()["top"]])
    assert orders[0] == orders[1] != orders[2]
    assert sorted(orders[0]) == sorted(orders[2])

    table = cli("queue", "prioritise", "--project", "pairs", "--reward", str(ck), user="eng")
    assert table.code == 0, table.err
    assert "re-ordered 12 open tasks of 'pairs' by margin" in table.out
    assert "DISAGREEMENT" in table.out


def test_default_reward_base_and_bad_input(cli, admin, Session, tmp_path):  # noqa: N803
    seed(Session)
    before = state(Session)
    r = cli("queue", "prioritise", "--project", "pairs", "--reward", "default", "--json",
            user="eng")  # fmt: skip
    assert r.code == 0, r.err
    out = r.json()  # the real all-MiniLM-L6-v2 backbone, its untrained head no prior
    assert out["reward"] == "default" and out["prior"] is False and out["members"] == 5
    assert out["reordered"] == ITEMS - LABELED
    changed = state(Session)
    assert {t for t in changed if changed[t] != before[t]} <= set(before) - closed_or_gold(Session)
    before = changed

    ck = tiny_reward(cli, tmp_path)
    policy = cli("checkpoints", "add", "--model", str(tmp_path / "tiny-rm"), "--kind", "policy",
                 "--name", "not-a-reward-model", "--json", user="eng")  # fmt: skip
    assert policy.code == 0, policy.err
    policy_id = policy.json()["checkpoint_id"]
    for argv, who, message in [
        (("--project", "nope", "--reward", str(ck)), "eng", "error: no project named 'nope'"),
        (("--project", "notes", "--reward", str(ck)), "eng", "'notes' is an sft project"),
        (("--project", "empty", "--reward", str(ck)), "eng",
         "project 'empty' has no open compare tasks to order"),
        (("--project", "pairs", "--reward", "99"), "eng", "error: no checkpoint with id 99"),
        (("--project", "pairs", "--reward", str(policy_id)), "eng",
         f"checkpoint {policy_id} is a policy checkpoint, not a reward model"),
        (("--project", "pairs", "--reward", "best"), "eng",
         "--reward is a reward checkpoint id (4 or checkpoint:4) or default, not 'best'"),
        (("--project", "pairs", "--reward", str(ck)), "ann",
         "ann is a labeler; this needs admin or engineer"),
    ]:  # fmt: skip
        bad = cli("queue", "prioritise", *argv, "--json", user=who)
        assert bad.code == 1 and message in bad.err, (argv, bad.err)
        assert "Traceback" not in bad.err and bad.out == ""
    assert state(Session) == before  # nothing written by any of them
    # no labels yet: the members are all C, so disagreement falls back to margin, said so
    fresh = cli("queue", "prioritise", "--project", "fresh", "--reward", str(ck), "--strategy",
                "disagreement", "--json", user="eng")  # fmt: skip
    assert fresh.code == 0, fresh.err
    out = fresh.json()
    assert out["labeled_pairs"] == 0 and out["reordered"] == 3
    assert "ordered by margin instead" in out["note"]
    assert all(t["disagreement"] == 0 for t in out["top"])
    close = [abs(t["predicted_margin"]) for t in out["top"]]
    assert close == sorted(close)
    before = state(Session)
    bad = cli("queue", "prioritise", "--project", "pairs", "--reward", str(ck), "--k", "0",
              user="eng")  # fmt: skip
    assert bad.code == 2 and "--k: must be from 1 to 100" in bad.err
    assert state(Session) == before

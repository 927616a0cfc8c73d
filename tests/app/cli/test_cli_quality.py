"""`rlhf quality` end to end on both databases: the JSON schema the issue gives, the table,
the role check, and one sentence for each bad input."""

from __future__ import annotations

import random

import pytest

from labeling import projects, queue
from labeling.accounts import users
from labeling.tasks import add_compare_task, add_prompt, add_response

FIELDS = {"name", "labels", "gold_accuracy", "gold_n", "left_win_rate", "left_p_value",
          "position_bias", "median_seconds", "too_fast_share", "competence",
          "agreement_with_reward"}  # fmt: skip


def seed(Session):  # noqa: N803
    """Pairwise project 'pairs': 30 items, overlap 3, 3 gold; a careful labeler, a second
    careful one and one who always presses the left answer."""
    rng = random.Random(3)
    with Session.begin() as s:
        p = projects.create_project(s, name="pairs", kind="pairwise", overlap=3, gold_rate=0.1)
        truth = {}
        for i in range(33):
            prompt = add_prompt(s, p, f"q{i}?")
            a, b = add_response(s, prompt, f"A{i}"), add_response(s, prompt, f"B{i}")
            answer = rng.choice("ab")
            truth[
                add_compare_task(s, p, prompt, a, b, gold_choice=answer if i >= 30 else None).id
            ] = answer
        projects.create_project(s, name="notes", kind="sft")
        pid = p.id
        ids = {n: users.add_user(s, name=n, role="labeler", password=None).id
               for n in ("ann", "bea", "lefty")}  # fmt: skip
        users.add_user(s, name="eng", role="engineer", password=None)
    for name, user_id in ids.items():
        with Session.begin() as s:
            while (a := queue.claim_next(s, project_id=pid, user_id=user_id, rng=rng)) is not None:
                left = "b" if a.swap_sides else "a"
                choice = left if name == "lefty" else truth[a.task_id]
                queue.submit_preference(s, task_id=a.task_id, user_id=user_id, choice=choice,
                                        strength=2, time_spent_ms=7_000)  # fmt: skip


def test_quality_json_table_roles_and_messages(cli, admin, Session):  # noqa: N803
    seed(Session)
    r = cli("quality", "--project", "pairs", "--json", "--bootstrap", "50", user="eng")
    assert r.code == 0, r.err
    out = r.json()
    assert {"project", "agreement", "labelers", "items"} <= set(out)
    assert out["project"] == "pairs" and out["bootstrap"] == 50
    assert [row["name"] for row in out["labelers"]] == ["ann", "bea", "lefty"]
    for row in out["labelers"]:
        assert FIELDS <= set(row) and row["labels"] == 33 and row["gold_n"] == 3
        assert row["agreement_with_reward"] is None  # no --reward
    rows = {row["name"]: row for row in out["labelers"]}
    assert rows["lefty"]["left_win_rate"] == 1.0 and rows["lefty"]["left_p_value"] < 1e-6
    assert rows["lefty"]["position_bias"] and not rows["ann"]["position_bias"]
    assert rows["ann"]["gold_accuracy"] == 1.0 and rows["ann"]["median_seconds"] == 7.0
    assert rows["ann"]["competence"] > rows["lefty"]["competence"]
    agreement = out["agreement"]
    assert agreement["items"] == 33 and agreement["raw"]["ci_low"] is not None
    assert 0 < agreement["fleiss_kappa"]["value"] < 1

    one = cli("quality", "--project", "pairs", "--labeler", "lefty", "--json", user=admin)
    assert one.code == 0 and [row["name"] for row in one.json()["labelers"]] == ["lefty"]

    table = cli("quality", "--project", "pairs", "--bootstrap", "0", user=admin)
    assert table.code == 0, table.err
    assert "Fleiss' kappa" in table.out and "LABELER" in table.out
    lefty = next(line for line in table.out.splitlines() if line.startswith("lefty"))
    assert "100.0%" in lefty and "position_bias" in lefty

    refused = cli("quality", "--project", "pairs", user="ann")
    assert refused.code == 1 and "ann is a labeler; this needs admin or engineer" in refused.err
    for argv, message in [
        (("--project", "nope"), "error: no project named 'nope'"),
        (("--project", "pairs", "--labeler", "zed"), "error: no user named 'zed'"),
        (("--project", "pairs", "--labeler", "eng"), "eng has given no labels in project 'pairs'"),
        (("--project", "notes"), "'notes' is an sft project (written answers)"),
        (("--project", "pairs", "--reward", "99"), "error: no checkpoint with id 99"),
    ]:
        bad = cli("quality", *argv, user=admin)
        assert bad.code == 1 and message in bad.err, (argv, bad.err)
        assert "Traceback" not in bad.err and bad.out == ""
    bad = cli("quality", "--project", "pairs", "--bootstrap", "-3", user=admin)
    assert bad.code == 2 and "--bootstrap: must be from 0 to 100000" in bad.err


def test_quality_against_a_reward_checkpoint(cli, admin, Session, tmp_path):  # noqa: N803
    """--reward scores every labeled pair with a registered reward checkpoint (a tiny BERT
    built here: its verdicts are arbitrary, so only their bookkeeping is checked)."""
    torch = pytest.importorskip("torch")
    import transformers

    seed(Session)
    folder = tmp_path / "tiny-bert"
    folder.mkdir()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "user", "assistant", ":"]
    words += [f"{w}{i}" for i in range(33) for w in ("q", "a", "b")]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    transformers.BertTokenizerFast(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32)  # fmt: skip
    transformers.BertModel(config).save_pretrained(folder, safe_serialization=True)
    added = cli("checkpoints", "add", "--model", str(folder), "--kind", "reward",
                "--name", "tiny-rm", "--json", user="eng")  # fmt: skip
    assert added.code == 0, added.err
    checkpoint = added.json()["checkpoint_id"]

    r = cli("quality", "--project", "pairs", "--reward", str(checkpoint), "--bootstrap", "0",
            "--json", user="eng")  # fmt: skip
    assert r.code == 0, r.err
    out = r.json()
    assert out["reward_checkpoint"] == checkpoint
    assert out["reward"]["scored_pairs"] == 33  # every task has decisive labels
    rows = out["labelers"]
    assert sum(row["reward_n"] for row in rows) == out["reward"]["confident_labels"]
    for row in rows:
        rate = row["agreement_with_reward"]
        assert (rate is None) == (row["reward_n"] == 0) and (rate is None or 0 <= rate <= 1)

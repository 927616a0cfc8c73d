"""Hallucination probes, the service (labeling/probes.py) on both databases: a probe with
hand-given verdicts, its figures, the report with Wilson intervals, the export snapshot, the
abstention detector and bad input (one sentence, nothing written). The model run and the
automatic judge are tests/training/test_probe.py."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from labeling import generations, probes, snapshots
from labeling.errors import InvalidInput, NotFound
from labeling.hashing import prompt_hash
from labeling.models import (
    Checkpoint,
    CheckpointKind,
    Probe,
    ProbeAnswer,
    Prompt,
    Response,
    Snapshot,
)
from labeling.projects import create_project

QUESTIONS = [  # (question, gold answer, split)
    ("What is six times seven?", "42", "train"),
    ("What is the capital of France?", "Paris", "train"),
    ("Who wrote Hamlet?", "Shakespeare", "heldout"),
    ("How many legs has a spider?", "8", "heldout"),
]


def seed(s, *, name: str = "facts", kind: str = "sft", answers: bool = True) -> dict:
    project = create_project(s, name=name, kind=kind)
    ids = []
    for question, answer, split in QUESTIONS:
        messages = [{"role": "user", "content": question}]
        prompt = Prompt(project_id=project.id, messages=messages, split=split,
                        content_hash=prompt_hash(messages), answer=answer if answers else None)  # fmt: skip
        s.add(prompt)
        s.flush()
        ids.append(prompt.id)
    # a prompt without a gold answer is no question
    messages = [{"role": "user", "content": "Write a poem."}]
    s.add(Prompt(project_id=project.id, messages=messages, content_hash=prompt_hash(messages)))
    checkpoints = {}
    for ck_name, ck_kind in (("sft-1", "policy"), ("sft-2", "policy"), ("rm", "reward")):
        ck = Checkpoint(kind=CheckpointKind(ck_kind), name=f"{name}-{ck_name}",
                        path=f"checkpoints/{name}-{ck_name}")  # fmt: skip
        s.add(ck)
        s.flush()
        checkpoints[ck_name] = ck.id
    return {"project": project, "prompts": ids, **checkpoints}


def answer(s, probe_id: int, checkpoint_id: int, verdicts: dict[int, list[tuple[str, str]]]):
    """Store (text, verdict) samples per prompt id, as training/probe.py does per batch."""
    key = generations.sampling_key(temperature=0.7, top_p=1.0, max_new_tokens=16, seed=0)
    rows = [(pid, k, text) for pid, samples in verdicts.items()
            for k, (text, _) in enumerate(samples)]  # fmt: skip
    ids = generations.store_generated(
        s, checkpoint_id=checkpoint_id, answers=rows, sampling_params={**key, "probe_id": probe_id},
        source=probes.SOURCE,
    )  # fmt: skip
    flat = [v for samples in verdicts.values() for _, v in samples]
    probes.record_answers(
        s, probe_id=probe_id,
        answers=[(p, k, rid, v) for (p, k, _), rid, v in zip(rows, ids, flat, strict=True)],
    )  # fmt: skip


def run(s, data, checkpoint: str, verdicts, *, samples: int = 5, split: str = "all") -> int:
    probe, questions = probes.create_probe(
        s, project="facts", checkpoint_id=data[checkpoint], samples=samples, split=split
    )
    assert [q.prompt_id for q in questions] == [
        p for p, (_, _, sp) in zip(data["prompts"], QUESTIONS, strict=True)
        if split == "all" or sp == split
    ]  # fmt: skip
    answer(s, probe.id, data[checkpoint], verdicts)
    probes.finish_probe(s, probe.id)
    return probe.id


def first_probe(data) -> dict[int, list[tuple[str, str]]]:
    """q1: always wrong (confidently); q2: right 3 of 5; q3: wrong 4 of 5 with one "I don't
    know" (not confidently wrong); q4: wrong 4, one unjudged (4 of 4 judged wrong)."""
    q1, q2, q3, q4 = data["prompts"]
    return {
        q1: [("41", "incorrect")] * 5,
        q2: [("Paris", "correct")] * 3 + [("Lyon", "incorrect")] * 2,
        q3: [("Marlowe", "incorrect")] * 4 + [("I don't know.", "abstained")],
        q4: [("6", "incorrect")] * 4 + [("long " * 100, "unjudged")],
    }


def test_a_probe_stores_its_answers_and_its_figures(Session):  # noqa: N803
    with Session.begin() as s:
        data = seed(s)
        probe_id = run(s, data, "sft-1", first_probe(data))
    with Session.begin() as s:
        out = probes.probe_results(s, probe_id, project="facts")
        stored = s.scalar(select(func.count()).select_from(ProbeAnswer))
        responses = s.scalars(select(Response)).all()
        probe = s.get(Probe, probe_id)
        assert probe.status.value == "finished" and probe.finished_at is not None
        assert probe.summary["accuracy"] == out["accuracy"]  # the totals are kept on the row
    assert stored == 20 and len(responses) == 20
    assert {r.source for r in responses} == {"probe"}
    assert all(r.sampling_params["probe_id"] == probe_id for r in responses)
    assert (out["questions"], out["answers"], out["judged"], out["unjudged"]) == (4, 20, 19, 1)
    assert (out["correct"], out["incorrect"], out["abstained"]) == (3, 15, 1)
    assert out["accuracy"] == round(3 / 19, 6) and out["abstention_rate"] == round(1 / 19, 6)
    per = {q["prompt_id"]: q for q in out["per_question"]}
    q1, q2, q3, q4 = data["prompts"]
    assert [per[q]["confidently_wrong"] for q in (q1, q2, q3, q4)] == [True, False, False, True]
    assert out["confidently_wrong"] == 2 and out["confidently_wrong_rate"] == 0.5
    assert per[q2]["accuracy"] == 0.6 and per[q4]["wrong_rate"] == 1.0
    assert per[q1]["question"] == QUESTIONS[0][0] and per[q1]["answer"] == "42"
    with Session.begin() as s:
        texts = probes.probe_results(s, probe_id, texts=True)["per_question"][1]["answers"]
    assert [a["sample"] for a in texts] == [0, 1, 2, 3, 4] and texts[0]["text"] == "Paris"


def test_the_report_per_checkpoint_with_intervals(Session):  # noqa: N803
    with Session.begin() as s:
        data = seed(s)
        run(s, data, "sft-1", first_probe(data))
        q1, q2, q3, q4 = data["prompts"]
        # sft-2 after "I don't know" training: abstains on the held-out questions it missed
        run(s, data, "sft-2", {
            q1: [("42", "correct")] * 5, q2: [("Paris", "correct")] * 5,
            q3: [("I'm not sure.", "abstained")] * 5, q4: [("8", "correct")] * 5,
        })  # fmt: skip
        # a running (unfinished) probe of sft-2 is not the latest finished one
        probes.create_probe(s, project="facts", checkpoint_id=data["sft-2"], samples=2)
    with Session.begin() as s:
        heldout = probes.report(s, "facts")
        every = probes.report(s, "facts", split="all")
    assert heldout["split"] == "heldout"
    one, two = heldout["checkpoints"]
    assert (one["checkpoint_id"], two["checkpoint_id"]) == (data["sft-1"], data["sft-2"])
    # sft-1 on q3, q4: 0 correct of 9 judged, 1 abstained; both questions wrong...
    assert (one["questions"], one["judged"], one["correct"], one["abstained"]) == (2, 9, 0, 1)
    assert one["accuracy"] == 0.0 and one["accuracy_ci"][0] == 0.0
    assert 0.25 < one["accuracy_ci"][1] < 0.35  # Wilson upper end of 0/9: 0.299
    assert one["confidently_wrong_rate"] == 0.5  # q4 only: q3 has an abstention
    assert two["accuracy"] == 0.5 and two["abstention_rate"] == 0.5
    assert two["confidently_wrong_rate"] == 0.0
    low, high = two["abstention_rate_ci"]
    assert 0.2 < low < 0.5 < high < 0.8
    assert probes.wilson(0, 0) == (None, None)
    assert [r["questions"] for r in every["checkpoints"]] == [4, 4]
    with Session.begin() as s:
        with pytest.raises(InvalidInput, match="unknown split"):
            probes.report(s, "facts", split="test")


def _rows(snapshot) -> list[dict]:
    return [r for split in snapshots.SPLITS for r in snapshots.read_split(snapshot, split)]


def test_export_writes_refusals_for_the_wrong_and_answers_for_the_right(Session):  # noqa: N803
    with Session.begin() as s:
        data = seed(s)
        probe_id = run(s, data, "sft-1", first_probe(data))
        snapshot, created, counts = probes.export_probe(s, project="facts", probe_id=probe_id)
        snapshot_id = snapshot.id
    # q1, q3 (4 of 5 wrong: the abstention does not lift it under 80%), q4 (4 of 4 judged)
    assert created and counts == {"refusals": 3, "correct_answers": 1, "left_out": 0,
                                  "unjudged_only": 0}  # fmt: skip
    q1, q2, q3, q4 = data["prompts"]
    with Session.begin() as s:
        snapshot = snapshots.get_snapshot(s, snapshot_id)
        assert snapshot.kind.value == "sft" and snapshot.rows == 4
        assert snapshot.filters["probe_id"] == probe_id  # lineage
        assert snapshot.filters["min_wrong"] == 0.8
        assert snapshots.verify_snapshot(snapshot) == snapshot.sha256
        rows = _rows(snapshot)
        train = snapshots.read_split(snapshot, "train")
        by_question = {r["messages"][0]["content"]: r for r in rows}
    assert set(by_question) == {q for q, _, _ in QUESTIONS}
    assert len(train) == 2  # q1 and q2 are train prompts; q3 and q4 went to heldout
    refusal = by_question[QUESTIONS[0][0]]
    assert refusal["label_kind"] == "refusal" and refusal["messages"][-1]["role"] == "assistant"
    assert refusal["messages"][-1]["content"] in probes.REFUSALS
    assert refusal["messages"][-1]["content"] == probes.pick_refusal(
        prompt_hash([{"role": "user", "content": QUESTIONS[0][0]}]), probes.REFUSALS
    )
    right = by_question[QUESTIONS[1][0]]
    assert right["label_kind"] == "probe_answer" and right["messages"][-1]["content"] == "Paris"
    # the same export again is the same snapshot; min_wrong 1.0 leaves q3 (4 of 5) out
    with Session.begin() as s:
        again, created, _ = probes.export_probe(s, project="facts", probe_id=probe_id)
        assert (again.id, created) == (snapshot_id, False)
        looser, created, counts = probes.export_probe(
            s, project="facts", probe_id=probe_id, min_wrong=1.0,
            refusal_texts=["No idea, sorry.", "I can't say."],
        )  # fmt: skip
        assert created and counts["refusals"] == 2 and counts["left_out"] == 1
        texts = {
            r["messages"][-1]["content"] for r in _rows(looser) if r["label_kind"] == "refusal"
        }
        assert texts <= {"No idea, sorry.", "I can't say."}
        assert looser.filters["refusals"] == ["No idea, sorry.", "I can't say."]
    # the project's own words (rlhf probe config --refusal ...)
    with Session.begin() as s:
        conf = probes.configure(s, "facts", refusal_texts=["Je ne sais pas."])
        assert conf["refusals"] == ["Je ne sais pas."]
        own, _, _ = probes.export_probe(s, project="facts", probe_id=probe_id)
        texts = {r["messages"][-1]["content"] for r in _rows(own) if r["label_kind"] == "refusal"}
        assert texts == {"Je ne sais pas."}


def test_abstention_phrases_default_and_per_project(Session):  # noqa: N803
    assert probes.is_abstention("I don\u2019t know.")
    assert probes.is_abstention("Honestly, I'm NOT sure about that")
    assert probes.is_abstention("I cannot answer that question.")
    assert not probes.is_abstention("Paris is the capital.")
    assert not probes.is_abstention("I don't knowingly lie")  # whole words only
    with Session.begin() as s:
        seed(s)
        conf = probes.configure(s, "facts", abstain_phrases=["keine Ahnung"],
                                max_answer_chars=120)  # fmt: skip
        settings = probes.judge_settings(probes.get_project(s, "facts"))
    assert conf["abstain_phrases"] == ["keine Ahnung"] and settings.max_answer_chars == 120
    assert probes.is_abstention("Keine  Ahnung!", settings.abstain_phrases)
    assert not probes.is_abstention("I don't know", settings.abstain_phrases)
    with Session.begin() as s:
        for bad in ([], [""], "not a list"):
            with pytest.raises(InvalidInput):
                probes.configure(s, "facts", abstain_phrases=bad)


def test_bad_requests_are_one_sentence_and_write_nothing(Session):  # noqa: N803
    with Session.begin() as s:
        data = seed(s)
        seed(s, name="blank", answers=False)
        seed(s, name="pairs", kind="pairwise")
    cases = [
        ({"checkpoint_id": 999}, NotFound, "no checkpoint with id 999"),
        ({"checkpoint_id": data["rm"]}, InvalidInput, "is a reward checkpoint, not a policy"),
        ({"project": "nope"}, NotFound, "no project named 'nope'"),
        ({"project": "blank"}, InvalidInput, "has no questions with a gold answer"),
        ({"project": "pairs"}, InvalidInput, "is a pairwise project"),
        ({"samples": 0}, InvalidInput, "samples must be from 1 to 64"),
        ({"samples": 65}, InvalidInput, "samples must be from 1 to 64"),
        ({"temperature": -0.1}, InvalidInput, "temperature must be 0 (greedy) or more"),
        ({"temperature": float("nan")}, InvalidInput, "temperature must be from 0"),
        ({"max_new_tokens": 0}, InvalidInput, "max_new_tokens must be at least 1"),
        ({"split": "test"}, InvalidInput, "unknown split"),
    ]
    for change, error, message in cases:
        request = {"project": "facts", "checkpoint_id": data["sft-1"], **change}
        with Session.begin() as s:
            with pytest.raises(error) as caught:
                probes.create_probe(s, **request)
        assert message in str(caught.value), (change, caught.value)
        assert "\n" not in str(caught.value)
    with Session.begin() as s:
        assert s.scalar(select(func.count()).select_from(Probe)) == 0
        running, _ = probes.create_probe(s, project="facts", checkpoint_id=data["sft-1"])
    with Session.begin() as s:
        with pytest.raises(InvalidInput, match="only a finished probe can be exported"):
            probes.export_probe(s, project="facts", probe_id=running.id)
        with pytest.raises(NotFound, match="no probe with id"):
            probes.export_probe(s, project="blank", probe_id=running.id)  # another project's
        with pytest.raises(NotFound, match="no probe with id 12345"):
            probes.probe_results(s, 12345)
        probes.finish_probe(s, running.id)  # no answers at all
    with Session.begin() as s:
        for min_wrong in (0, 1.5, "x"):
            with pytest.raises(InvalidInput, match="min_wrong"):
                probes.export_probe(s, project="facts", probe_id=running.id, min_wrong=min_wrong)
        with pytest.raises(InvalidInput, match="gives no rows"):
            probes.export_probe(s, project="facts", probe_id=running.id)
        assert s.scalar(select(func.count()).select_from(Snapshot)) == 0


def test_people_judge_the_answers_the_automatic_judge_left(Session):  # noqa: N803
    from labeling.accounts import users

    with Session.begin() as s:
        data = seed(s)
        seed(s, name="other")
        ann = users.add_user(s, name="ann", role="labeler", password="ann-password-long").id
        bob = users.add_user(s, name="bob", role="labeler", password="bob-password-long").id
        q1, q2, q3, q4 = data["prompts"]
        verdicts = {
            **first_probe(data),
            q1: [("41", "incorrect")] * 3 + [("x " * 200, "unjudged")] * 2,
        }
        probe_id = run(s, data, "sft-1", verdicts)
        running, _ = probes.create_probe(s, project="facts", checkpoint_id=data["sft-2"])
        answer(s, running.id, data["sft-2"], {q4: [("y " * 200, "unjudged")]})
    with Session.begin() as s:
        assert probes.projects_to_judge(s) == [("facts", 3)]  # a running probe's wait
        waiting = probes.unjudged_answers(s, "facts")
        assert waiting["remaining"] == 3 and len(waiting["answers"]) == 3
        first, second, third = waiting["answers"]
        assert (first["question"], first["reference"]) == (QUESTIONS[0][0], "42")
        assert "checkpoint" not in first and "checkpoint_id" not in first  # judged blind
        assert probes.unjudged_answers(s, "facts", skip=[first["answer_id"]], limit=1)[
            "answers"
        ] == [second]
        assert probes.unjudged_answers(s, "other")["remaining"] == 0
        before = probes.probe_results(s, probe_id)
    assert (before["unjudged"], before["correct"]) == (3, 3)

    with Session.begin() as s:
        probes.judge_answer(s, first["answer_id"], "correct", judged_by=ann, project="facts")
        probes.judge_answer(s, third["answer_id"], "abstained", judged_by=bob)
    with Session.begin() as s:
        after = probes.probe_results(s, probe_id)
        row = s.get(ProbeAnswer, first["answer_id"])
        assert row.judged_by == ann and row.verdict.value == "correct"
        assert s.get(Probe, probe_id).summary["unjudged"] == 1  # the stored figures follow
        assert probes.unjudged_answers(s, "facts")["answers"] == [second]
    assert (after["unjudged"], after["correct"], after["abstained"]) == (1, 4, 2)
    assert after["judged"] == before["judged"] + 2

    # of two people on the same answer, the second is told; bad input writes nothing
    cases = [
        ((first["answer_id"], "incorrect"), {}, InvalidInput, "is already judged (correct)"),
        ((second["answer_id"], "unjudged"), {}, InvalidInput, "a verdict is one of correct"),
        ((second["answer_id"], "maybe"), {}, InvalidInput, "a verdict is one of correct"),
        ((99999, "correct"), {}, NotFound, "no probe answer with id 99999"),
        ((second["answer_id"], "correct"), {"project": "other"}, NotFound, "no probe answer"),
    ]
    for args, extra, error, message in cases:
        with Session.begin() as s:
            with pytest.raises(error) as caught:
                probes.judge_answer(s, *args, judged_by=bob, **extra)
            assert message in str(caught.value), (args, caught.value)
    with Session.begin() as s:
        assert probes.probe_results(s, probe_id)["unjudged"] == 1
        assert s.get(ProbeAnswer, first["answer_id"]).judged_by == ann
        with pytest.raises(InvalidInput, match="limit must be from 1 to 1000"):
            probes.unjudged_answers(s, "facts", limit=0)
        with pytest.raises(NotFound, match="no probe with id"):
            probes.unjudged_answers(s, "other", probe_id=probe_id)

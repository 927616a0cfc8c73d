"""The Probes page through Streamlit's AppTest on a migrated SQLite database: who may open
it, the report per checkpoint, one probe's questions, and model answers shown inertly."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import app.ui.db
from app.ui import state
from labeling import generations, probes, projects
from labeling.accounts import users, web_sessions
from labeling.db import make_engine, make_sessionmaker
from labeling.hashing import prompt_hash
from labeling.models import Checkpoint, CheckpointKind, Prompt

HOSTILE = "**bold** [click](https://evil.example) lefty@example.com"


@pytest.fixture
def Session(sqlite_url):  # noqa: N802
    app.ui.db._sessionmaker.clear()  # the UI's engine is cached per process
    engine = make_engine(sqlite_url)
    yield make_sessionmaker(engine)
    app.ui.db._sessionmaker.clear()
    engine.dispose()


def page(user_id: int) -> AppTest:
    at = AppTest.from_string(
        "from app.ui.pages import engineer_probes\nengineer_probes.render()\n", default_timeout=30
    )
    with app.ui.db.transaction() as s:
        at.session_state[state.TOKEN] = web_sessions.start(s, user_id=user_id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def seed(Session) -> dict[str, int]:  # noqa: N803
    with Session.begin() as s:
        people = {r: users.add_user(s, name=r, role=r, password="long-password").id
                  for r in ("engineer", "labeler")}  # fmt: skip
        project = projects.create_project(s, name="facts", kind="sft")
        prompt_ids = []
        for question, gold in (("Capital of France?", "Paris"), ("Six times seven?", "42")):
            messages = [{"role": "user", "content": question}]
            prompt = Prompt(project_id=project.id, messages=messages, split="heldout",
                            answer=gold, content_hash=prompt_hash(messages))  # fmt: skip
            s.add(prompt)
            s.flush()
            prompt_ids.append(prompt.id)
        ck = Checkpoint(kind=CheckpointKind.policy, name="sft-1", path="checkpoints/sft-1")
        s.add(ck)
        s.flush()
        probe, _ = probes.create_probe(s, project="facts", checkpoint_id=ck.id, samples=2)
        answers = [(prompt_ids[0], 0, "Paris"), (prompt_ids[0], 1, HOSTILE),
                   (prompt_ids[1], 0, "41"), (prompt_ids[1], 1, "41")]  # fmt: skip
        key = generations.sampling_key(temperature=0.7, top_p=1.0, max_new_tokens=8, seed=0)
        ids = generations.store_generated(s, checkpoint_id=ck.id, answers=answers,
                                          sampling_params=key, source="probe")  # fmt: skip
        verdicts = ["correct", "incorrect", "incorrect", "incorrect"]
        probes.record_answers(s, probe_id=probe.id, answers=[
            (p, k, rid, v) for (p, k, _), rid, v in zip(answers, ids, verdicts, strict=True)
        ])  # fmt: skip
        probes.finish_probe(s, probe.id)
    return people


def test_probes_page_shows_the_report_and_one_probe(Session):  # noqa: N803
    people = seed(Session)
    assert [e.value for e in page(people["labeler"]).error] == [
        "You do not have access to this page."
    ]
    at = page(people["engineer"])
    assert [t.value for t in at.title] == ["Probes"]
    report, questions = (d.value for d in at.dataframe)
    (row,) = report.to_dict("records")
    assert row["checkpoint"] == "sft-1" and row["accuracy"] == 0.25
    assert row["confidently_wrong_rate"] == 0.5 and row["accuracy_ci"].endswith("%")
    assert list(questions["question"]) == ["Capital of France?", "Six times seven?"]
    assert list(questions["correct"]) == [1, 0]
    # the model's answer goes through the one renderer: its link and address are inert code
    (shown,) = [m.value for m in at.markdown if "click" in m.value]
    assert "`[click](https://evil.example)`" in shown and "`lefty@example.com`" in shown
    at.selectbox(key="probes-split").select("train").run()
    assert not at.exception
    assert any("No finished probe has train questions" in c.value for c in at.caption)


def judge_page(user_id: int) -> AppTest:
    at = AppTest.from_string("from app.ui.pages import judge\njudge.render()\n", default_timeout=30)
    with app.ui.db.transaction() as s:
        at.session_state[state.TOKEN] = web_sessions.start(s, user_id=user_id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _leave_unjudged(Session, texts: list[str]) -> list[int]:  # noqa: N803
    """Turn the first answers of the seeded probe back into long unjudged ones."""
    from labeling.models import ProbeAnswer, Response

    with Session.begin() as s:
        rows = s.query(ProbeAnswer).order_by(ProbeAnswer.id).limit(len(texts)).all()
        for row, text in zip(rows, texts, strict=True):
            row.verdict = "unjudged"
            s.get(Response, row.response_id).text = text
        return [r.id for r in rows]


def test_the_judge_page_gives_a_labeler_one_blind_answer_at_a_time(Session):  # noqa: N803
    people = seed(Session)
    empty = judge_page(people["labeler"])
    assert [i.value for i in empty.info] == ["No model answers are waiting for a verdict."]
    first, second = _leave_unjudged(Session, [HOSTILE + " long", "A long answer of forty one"])
    at = judge_page(people["labeler"])
    assert [t.value for t in at.title] == ["Judge"]
    assert any("2 answers to judge" in c.value for c in at.caption)
    shown = "\n".join(m.value for m in at.markdown)
    assert "Capital of France?" in shown and "Paris" in shown
    assert "`[click](https://evil.example)`" in shown  # the model's answer, inert
    assert "sft-1" not in shown  # which checkpoint wrote it stays hidden
    at.button(key="judge-skip").click().run()  # put aside: the next one shows
    assert "A long answer of forty one" in "\n".join(m.value for m in at.markdown)
    at.button(key="judge-incorrect").click().run()
    assert [m.value for m in at.success] == [f"Answer {second} judged incorrect."]
    assert any("You skipped the rest" in i.value for i in at.info)
    with Session() as s:
        out = probes.unjudged_answers(s, "facts")
        from labeling.models import ProbeAnswer

        judged = s.get(ProbeAnswer, second)
        assert judged.judged_by == people["labeler"] and judged.verdict.value == "incorrect"
    assert [a["answer_id"] for a in out["answers"]] == [first]
    at.button[0].click().run()  # "Show the skipped ones again"
    at.button(key="judge-correct").click().run()
    assert [m.value for m in at.success] == [f"Answer {first} judged correct."]
    assert [i.value for i in at.info] == ["No model answers are waiting for a verdict."]


def test_the_questions_page_reviews_drafts_one_at_a_time(Session):  # noqa: N803
    from labeling import question_drafts
    from labeling.models import QuestionDraft

    people = seed(Session)
    at = AppTest.from_string(
        "from app.ui.pages import review_questions\nreview_questions.render()\n",
        default_timeout=30,
    )
    with app.ui.db.transaction() as s:
        at.session_state[state.TOKEN] = web_sessions.start(s, user_id=people["labeler"])
    at.run()
    assert [i.value for i in at.info] == ["No drafted questions are waiting for review."]
    with Session.begin() as s:
        question_drafts.add_drafts(
            s, "facts", document="notes.md", passage_index=0, passage=HOSTILE,
            pairs=[("Who wrote Hamlet?", "Shakespeare"), ("Legs of a spider?", "six")],
        )  # fmt: skip
    at.run()
    assert [t.value for t in at.title] == ["Questions"]
    assert any("2 drafts to review" in c.value for c in at.caption)
    assert any("`[click](https://evil.example)`" in m.value for m in at.markdown)  # inert
    assert [t.value for t in at.text_input] == ["Who wrote Hamlet?", "Shakespeare"]
    at.button(key="draft-accept").click().run()
    assert any("accepted&#58; question" in m.value for m in at.success)  # flashed inertly
    assert [t.value for t in at.text_input] == ["Legs of a spider?", "six"]
    at.text_input[1].input("8").run()  # the reviewer corrects the answer, then accepts
    at.button(key="draft-accept").click().run()
    with Session() as s:
        answers = {p.messages[-1]["content"]: p.answer for p in s.query(Prompt)}
        reviewers = {d.reviewed_by for d in s.query(QuestionDraft)}
    assert answers["Legs of a spider?"] == "8" and answers["Who wrote Hamlet?"] == "Shakespeare"
    assert reviewers == {people["labeler"]}
    assert [i.value for i in at.info] == ["No drafted questions are waiting for review."]

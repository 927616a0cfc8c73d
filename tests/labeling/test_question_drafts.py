"""Questions a model drafted from a document (labeling/question_drafts.py): passages, the
Q/A parser, and the review on both databases: accepted drafts become questions (prompts with
a gold answer and a write task), rejected ones never do, a draft is reviewed once, and bad
input is one sentence that writes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from labeling import question_drafts as drafts
from labeling.accounts import users
from labeling.errors import Conflict, InvalidInput, NotFound
from labeling.models import Prompt, QuestionDraft, Task
from labeling.projects import create_project

PASSAGE = "Hamlet was written by William Shakespeare around 1600. A spider has eight legs."


def test_passages_keep_paragraphs_whole_while_they_fit():
    text = "First para.\n\nSecond   para\nwraps.\r\n\r\n" + "Long sentence here. " * 30
    out = drafts.passages(text, max_chars=200)
    assert out[0].startswith("First para.\n\nSecond para wraps.\n\nLong sentence here.")
    assert all(len(p) <= 200 for p in out) and len(out) >= 3
    words = " ".join(" ".join(out).split())
    assert words == " ".join(
        ("First para. Second para wraps. " + "Long sentence here. " * 30).split()
    )
    one_word = drafts.passages("x" * 450, max_chars=200)  # no space at all: cut hard
    assert [len(p) for p in one_word] == [200, 200, 50]
    for bad in (199, 8001):
        with pytest.raises(InvalidInput, match="passage length must be from 200 to 8000"):
            drafts.passages(text, max_chars=bad)


def test_the_parser_reads_the_forms_models_write():
    assert drafts.parse_drafts("Q: Who wrote Hamlet?\nA: Shakespeare\nQ: Legs?\nA: 8.") == [
        ("Who wrote Hamlet?", "Shakespeare"), ("Legs?", "8"),
    ]  # fmt: skip
    assert drafts.parse_drafts("Q: who? A: ann Q: when? A: 1969") == [
        ("who?", "ann"), ("when?", "1969"),
    ]  # fmt: skip
    assert drafts.parse_drafts(
        "Sure! Here they are:\n1. **Question:** What is X?\n   **Answer:** 42\n"
        "Question 2: Who? \nAnswer 2: U.S.\nQ: a question left without its answer"
    ) == [("What is X?", "42"), ("Who?", "U.S.")]
    assert drafts.parse_drafts("Q: same?\nA: yes\nQ: same?\nA: yes") == [("same?", "yes")]
    assert drafts.parse_drafts(f"Q: long?\nA: {'x' * 201}") == []  # an answer is short
    assert drafts.parse_drafts("No questions here. The data: fine.") == []


@pytest.fixture
def facts(Session):  # noqa: N803
    with Session.begin() as s:
        create_project(s, name="facts", kind="sft")
        create_project(s, name="pairs", kind="pairwise")
        ids = {n: users.add_user(s, name=n, role="labeler", password=f"{n}-password-long").id
               for n in ("ann", "bob")}  # fmt: skip
        n = drafts.add_drafts(
            s, "facts", document="handbook.md", passage_index=0, passage=PASSAGE,
            pairs=[("Who wrote Hamlet?", "Shakespeare"), ("How many legs has a spider?", "8"),
                   ("When was it written?", "1600")],
        )  # fmt: skip
        assert n == 3
    return ids


def test_drafts_are_stored_once_and_listed_for_review(Session, facts):  # noqa: N803
    with Session.begin() as s:
        again = drafts.add_drafts(s, "facts", document="handbook.md", passage_index=3,
                                  passage=PASSAGE, pairs=[("who  wrote HAMLET?", "Shakespeare"),
                                                          ("New one?", "yes")])  # fmt: skip
        assert again == 1  # the same question (case and spaces aside) is not drafted twice
        listed = drafts.list_drafts(s, "facts")
        assert drafts.projects_with_drafts(s) == [("facts", 4)]
    assert listed["counts"] == {"pending": 4, "accepted": 0, "rejected": 0}
    first = listed["drafts"][0]
    assert (first["question"], first["answer"], first["passage"], first["document"]) == (
        "Who wrote Hamlet?", "Shakespeare", PASSAGE, "handbook.md",
    )  # fmt: skip
    with Session() as s:
        skipped = drafts.list_drafts(s, "facts", skip=[first["draft_id"]], limit=1)["drafts"]
        assert [d["question"] for d in skipped] == ["How many legs has a spider?"]
        assert s.scalar(select(func.count()).select_from(Prompt)) == 0  # nothing is a question yet


def test_accepted_drafts_become_questions_and_rejected_ones_never(Session, facts):  # noqa: N803
    with Session() as s:
        hamlet, spider, year = (d["draft_id"] for d in drafts.list_drafts(s, "facts")["drafts"])
    with Session.begin() as s:
        out = drafts.accept_draft(s, "facts", hamlet, reviewed_by=facts["ann"])
        drafts.accept_draft(s, "facts", spider, reviewed_by=facts["bob"],
                                     question="How many legs does a spider have?", answer=" 8 ")  # fmt: skip
        drafts.reject_draft(s, "facts", year, reviewed_by=facts["bob"])
    assert out["status"] == "accepted" and out["prompt_id"] is not None
    with Session() as s:
        prompts = {p.messages[0]["content"]: p for p in s.scalars(select(Prompt))}
        assert set(prompts) == {"Who wrote Hamlet?", "How many legs does a spider have?"}
        assert prompts["Who wrote Hamlet?"].answer == "Shakespeare"
        assert prompts["How many legs does a spider have?"].answer == "8"
        assert prompts["Who wrote Hamlet?"].source == "document:handbook.md"
        assert s.scalar(select(func.count()).select_from(Task)) == 2  # a write task each
        row = s.get(QuestionDraft, spider)
        assert (row.question, row.answer, row.reviewed_by) == (
            "How many legs does a spider have?", "8", facts["bob"],
        )  # fmt: skip
        listed = drafts.list_drafts(s, "facts", status="accepted")
        assert listed["counts"] == {"pending": 0, "accepted": 2, "rejected": 1}
        assert drafts.projects_with_drafts(s) == []
    # a rejected question drafted again stays rejected: nothing new to review
    with Session.begin() as s:
        assert drafts.add_drafts(s, "facts", document="other.md", passage_index=0,
                                 passage=PASSAGE, pairs=[("When was it written?", "1600")]) == 0  # fmt: skip


def test_a_draft_is_reviewed_once_and_bad_input_writes_nothing(Session, facts):  # noqa: N803
    with Session() as s:
        hamlet, spider, _ = (d["draft_id"] for d in drafts.list_drafts(s, "facts")["drafts"])
    with Session.begin() as s:
        drafts.reject_draft(s, "facts", hamlet, reviewed_by=facts["ann"])
    cases = [
        (lambda s: drafts.accept_draft(s, "facts", hamlet, reviewed_by=facts["bob"]),
         InvalidInput, "was already reviewed (rejected)"),
        (lambda s: drafts.reject_draft(s, "facts", hamlet, reviewed_by=facts["bob"]),
         InvalidInput, "was already reviewed (rejected)"),
        (lambda s: drafts.accept_draft(s, "facts", 999, reviewed_by=facts["bob"]),
         NotFound, "no question draft with id 999 in project 'facts'"),
        (lambda s: drafts.accept_draft(s, "facts", spider, reviewed_by=facts["bob"], answer=" "),
         InvalidInput, "a question needs its answer"),
        (lambda s: drafts.accept_draft(s, "facts", spider, reviewed_by=facts["bob"],
                                       question=""), InvalidInput, "write the problem first"),
        (lambda s: drafts.accept_draft(s, "facts", spider, reviewed_by=facts["bob"],
                                       answer="x" * 201), InvalidInput, "the answer is too long"),
        (lambda s: drafts.list_drafts(s, "pairs"), InvalidInput, "is a pairwise project"),
        (lambda s: drafts.list_drafts(s, "facts", status="done"), InvalidInput, "unknown status"),
        (lambda s: drafts.list_drafts(s, "facts", limit=0), InvalidInput, "limit must be from 1"),
    ]  # fmt: skip
    for call, error, message in cases:
        with Session.begin() as s:
            with pytest.raises(error) as caught:
                call(s)
        assert message in str(caught.value), (message, caught.value)
    # the question already has another gold answer: refused, and the draft stays pending
    with Session.begin() as s:
        from labeling import tasks

        tasks.add_problem(s, s.scalars(select(Prompt.project_id)).first() or
                          drafts.draft_project(s, "facts"), "How many legs has a spider?",
                          answer="six")  # fmt: skip
    with Session.begin() as s:
        with pytest.raises(Conflict, match="a gold answer is never replaced"):
            drafts.accept_draft(s, "facts", spider, reviewed_by=facts["bob"])
    with Session() as s:
        assert s.get(QuestionDraft, spider).status.value == "pending"
        assert s.get(QuestionDraft, hamlet).reviewed_by == facts["ann"]
        assert s.scalar(select(func.count()).select_from(Prompt)) == 1
    for text in ("", "   ", "a\x00b", "x" * (drafts.MAX_DOCUMENT_CHARS + 1)):
        with pytest.raises(InvalidInput, match="notes.md: the document"):
            drafts.check_document("notes.md", text)

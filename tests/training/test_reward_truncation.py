"""Every pair counts: conversations cut to the reward model's budget (training/scoring.py) and
preference pairs fitted before RewardTrainer (reward/truncation.py).

The word-level tokenizer of test_training_models counts plainly: each message is its role
marker, its words and <|end|> (2 + words tokens), so every expected cut is worked out by hand.
"""

from __future__ import annotations

from test_training_models import word_tokenizer

from reward.truncation import fit_pairs
from training.scoring import conversation_ids, fit_conversation, fit_ids

TOK = word_tokenizer()


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


# system 4 + first user 6 + first answer 5 + last user 5 + answer 5 = 25 tokens
CONVERSATION = [
    msg("system", "be kind"),
    msg("user", "first question x x"),
    msg("assistant", "first answer y"),
    msg("user", "last question z"),
    msg("assistant", "the final answer"),
]


def test_fits_unchanged_within_the_budget():
    assert len(conversation_ids(TOK, CONVERSATION)) == 25
    out, ids, cut = fit_conversation(TOK, CONVERSATION, 25)
    assert (out, len(ids), cut) == (CONVERSATION, 25, False)
    assert fit_conversation(TOK, CONVERSATION, None)[2] is False


def test_oldest_turns_go_first_then_the_prompt_text_then_the_answer_end():
    # 24: the system message alone goes (21 tokens)
    out, ids, cut = fit_conversation(TOK, CONVERSATION, 24)
    assert cut and out == CONVERSATION[1:] and len(ids) == 21
    # 15: the whole first exchange goes too, the last user turn and the answer stay (10)
    out, ids, cut = fit_conversation(TOK, CONVERSATION, 15)
    assert out == CONVERSATION[3:] and len(ids) == 10
    # 8: the last user turn keeps its newest word (2 + 1), the answer is whole (5)
    out, ids, cut = fit_conversation(TOK, CONVERSATION, 8)
    assert out == [msg("user", "z"), CONVERSATION[-1]] and len(ids) == 8
    # 6: an empty user turn (2) does not leave room for the answer (5): its end is cut
    out, ids, cut = fit_conversation(TOK, CONVERSATION, 6)
    assert out == [msg("user", ""), msg("assistant", "the final")] and len(ids) == 6
    # 3: not even empty messages fit: the ids say so, the caller drops it
    out, ids, cut = fit_conversation(TOK, CONVERSATION, 3)
    assert cut and len(ids) > 3


def test_text_is_cut_at_word_boundaries():
    long = [msg("user", "alpha beta gamma delta"), msg("assistant", "ok")]
    out, ids, _ = fit_conversation(TOK, long, (2 + 2) + (2 + 1))  # two prompt words, the answer
    assert out[0]["content"] == "gamma delta" and len(ids) == 7


def test_fit_ids_counts_truncated_and_never_exceeds_the_budget():
    short = [msg("user", "hi"), msg("assistant", "hello")]
    ids, truncated = fit_ids(TOK, [short, CONVERSATION, CONVERSATION], 15)
    assert truncated == 2 and [len(x) for x in ids] == [6, 10, 10]
    ids, truncated = fit_ids(TOK, [CONVERSATION], 3)
    assert truncated == 1 and len(ids[0]) == 3


def test_pairs_are_truncated_not_dropped_and_counted():
    prompt = CONVERSATION[:-1]
    rows = [
        # fits as it is: 2 + 1 and 2 + 2 tokens
        {"prompt": [msg("user", "hi")], "chosen": [msg("assistant", "hello")],
         "rejected": [msg("assistant", "go away")], "margin": 1.0},
        # the long conversation: its oldest turns go on both sides
        {"prompt": prompt, "chosen": [msg("assistant", "the final answer")],
         "rejected": [msg("assistant", "no")], "margin": 0.0},
        # the answers differ only after the budget: the same tokens once cut, dropped
        {"prompt": [msg("user", "q")], "chosen": [msg("assistant", "a b c d e f g h i good")],
         "rejected": [msg("assistant", "a b c d e f g h i bad")], "margin": 0.0},
    ]  # fmt: skip
    pairs = fit_pairs(TOK, rows, 12)
    assert pairs.counts() == {"train_rows": 3, "truncated_rows": 1, "dropped_rows": 1}
    assert len(pairs.rows) == 2
    first, second = pairs.rows
    assert first == {"chosen": rows[0]["prompt"] + rows[0]["chosen"],
                     "rejected": rows[0]["prompt"] + rows[0]["rejected"], "margin": 1.0}  # fmt: skip
    # each side keeps the answer whole and as much of the newest context as fits beside it
    assert second["chosen"] == [msg("user", "last question z"), rows[1]["chosen"][0]]
    assert second["rejected"] == [CONVERSATION[3], rows[1]["rejected"][0]]
    assert all(len(conversation_ids(TOK, r[s])) <= 12 for r in pairs.rows
               for s in ("chosen", "rejected"))  # fmt: skip
    # a budget not even empty messages fit in: every pair dropped, none lost silently
    assert fit_pairs(TOK, rows, 3).counts() == {
        "train_rows": 3, "truncated_rows": 0, "dropped_rows": 3,
    }  # fmt: skip

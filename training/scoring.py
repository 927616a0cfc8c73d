"""Scoring conversations with a reward model: one float per conversation, the model's single
logit. Training uses it (training/evaluate_policy.py, RL rewards) and so does reward/, which
imports it from here: reward imports training, never the reverse.

A conversation longer than the budget is cut the same way wherever it is scored or trained
on (fit_conversation; reward/truncation.py uses it for training pairs), so a reward model
sees at evaluation and in RL what it saw in training:
 1. the oldest context turns go first, a whole turn at a time (a system message, then each
    user turn with the answers after it), keeping the last user turn and the answer;
 2. then the remaining prompt text is cut from the left (its oldest words);
 3. only when the answer alone is over the budget is the answer cut, at its end (its start
    is kept: what an answer opens with - a refusal, a claim - is what a labeler judged first).
Text is cut at word boundaries and the chat template is applied again after every cut, so
the special tokens (BERT's [CLS]/[SEP], ChatML's markers) are always intact.
"""

from __future__ import annotations

from collections.abc import Callable

Conversation = list[dict]


def conversation_ids(tokenizer, conversation: Conversation) -> list[int]:
    """The conversation's token ids through the tokenizer's chat template, as RewardTrainer
    tokenizes it."""
    out = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)
    return list(out["input_ids"])


def _largest(fits: Callable[[int], bool], n: int) -> int:
    """The largest k in [0, n] with fits(k), fits being monotone (true up to some k); -1 if
    not even fits(0)."""
    if fits(n):
        return n
    if not fits(0):
        return -1
    low, high = 0, n  # fits(low), not fits(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def _tail(text: str, k: int) -> str:
    """The last k characters of text, starting at a word boundary where one is near."""
    if k >= len(text):
        return text
    cut = text[len(text) - k :]
    if k and not text[len(text) - k - 1].isspace():
        space = next((i for i, c in enumerate(cut) if c.isspace()), None)
        cut = cut[space:] if space is not None else cut
    return cut.lstrip()


def _head(text: str, k: int) -> str:
    """The first k characters of text, ending at a word boundary where one is near."""
    if k >= len(text):
        return text
    cut = text[:k]
    if k and not text[k].isspace():
        space = next((i for i in range(len(cut) - 1, -1, -1) if cut[i].isspace()), None)
        cut = cut[:space] if space is not None else cut
    return cut.rstrip()


def _with_content(message: dict, content: str) -> dict:
    return {**message, "content": content}


def fit_conversation(
    tokenizer, conversation: Conversation, max_length: int | None
) -> tuple[Conversation, list[int], bool]:
    """(conversation, its ids, truncated): cut to at most max_length tokens as the module
    docstring says; the last message is the answer. When not even an empty answer fits, the
    ids returned are still over max_length: the caller decides (training drops the pair)."""
    ids = conversation_ids(tokenizer, conversation)
    if not max_length or len(ids) <= max_length or not conversation:
        return conversation, ids, False
    memo: dict[int, list[int]] = {}

    def measure(candidate: Conversation) -> list[int]:
        return conversation_ids(tokenizer, candidate)

    prompt, answer = list(conversation[:-1]), conversation[-1]
    users = [i for i, m in enumerate(prompt) if m.get("role") == "user"]
    last_user = users[-1] if users else 0
    context, rest = prompt[:last_user], prompt[last_user:]
    # 1. the oldest turns: a cut starts at a user turn (or after a leading system message)
    lead = [1] if context and context[0].get("role") != "user" and last_user > 1 else []
    starts = sorted({*(i for i in users if 0 < i < last_user), *lead}) + [last_user]

    def context_fits(j: int) -> bool:  # j counts starts from the end: j=0 drops all context
        start = starts[len(starts) - 1 - j]
        if start not in memo:
            memo[start] = measure(context[start:] + rest + [answer])
        return len(memo[start]) <= max_length

    j = _largest(context_fits, len(starts) - 1)
    if j >= 0:
        start = starts[len(starts) - 1 - j]
        return context[start:] + rest + [answer], memo[start], True
    # 2. the prompt's remaining text, from the left: earlier messages of the last turn go
    # whole, the last one is cut; an empty prompt message stays as a marker of the turn
    while len(rest) > 1:
        rest = rest[1:]
        ids = measure(rest + [answer])
        if len(ids) <= max_length:
            return rest + [answer], ids, True
    if rest:
        last, text = rest[0], rest[0].get("content") or ""
        memo.clear()

        def prompt_fits(k: int) -> bool:
            if k not in memo:
                memo[k] = measure([_with_content(last, _tail(text, k)), answer])
            return len(memo[k]) <= max_length

        k = _largest(prompt_fits, len(text))
        if k >= 0:
            return [_with_content(last, _tail(text, k)), answer], memo[k], True
        rest = [_with_content(last, "")]
    # 3. the answer alone is over the budget: its end is cut
    memo.clear()
    text = answer.get("content") or ""

    def answer_fits(k: int) -> bool:
        if k not in memo:
            memo[k] = measure(rest + [_with_content(answer, _head(text, k))])
        return len(memo[k]) <= max_length

    k = max(_largest(answer_fits, len(text)), 0)
    answer_fits(k)
    return rest + [_with_content(answer, _head(text, k))], memo[k], True


def fit_ids(
    tokenizer, conversations: list[Conversation], max_length: int | None
) -> tuple[list[list[int]], int]:
    """(ids per conversation, how many were truncated). A conversation that cannot fit even
    with an empty answer keeps its last max_length ids (scoring must give every one a value)."""
    out, truncated = [], 0
    for conversation in conversations:
        _, ids, cut = fit_conversation(tokenizer, conversation, max_length)
        truncated += cut
        out.append(ids[-max_length:] if max_length and len(ids) > max_length else ids)
    return out, truncated


def score_ids(model, pad_token_id: int, ids: list[list[int]], *, batch_size: int = 16):
    """One reward per token sequence (the model's single logit), in order."""
    import torch

    device = next(model.parameters()).device
    model.eval()
    out: list[float] = []
    with torch.inference_mode():
        for i in range(0, len(ids), batch_size):
            chunk = ids[i : i + batch_size]
            width = max(len(x) for x in chunk)
            # right padding: sequence classifiers find the last non-pad token
            input_ids = torch.tensor(
                [x + [pad_token_id] * (width - len(x)) for x in chunk], device=device
            )
            mask = torch.tensor(
                [[1] * len(x) + [0] * (width - len(x)) for x in chunk], device=device
            )
            logits = model(input_ids=input_ids, attention_mask=mask).logits
            out.extend(float(v) for v in logits[:, 0].float().cpu())
    return out


def score(
    model,
    tokenizer,
    conversations: list[Conversation],
    *,
    batch_size: int = 16,
    max_length: int | None = 512,
) -> list[float]:
    """One reward per conversation (the model's single logit), in order; conversations over
    max_length tokens are cut as the module docstring says."""
    ids, _ = fit_ids(tokenizer, conversations, max_length)
    return score_ids(model, tokenizer.pad_token_id, ids, batch_size=batch_size)

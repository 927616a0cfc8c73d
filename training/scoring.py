"""Scoring conversations with a reward model: one float per conversation, the model's single
logit. Training uses it (training/evaluate_policy.py) and so does reward/evaluate.py, which
imports it from here: reward imports training, never the reverse.
"""

from __future__ import annotations


def score(
    model,
    tokenizer,
    conversations: list[list[dict]],
    *,
    batch_size: int = 16,
    max_length: int | None = 512,
) -> list[float]:
    """One reward per conversation (the model's single logit), in order."""
    import torch

    ids = [
        tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]
        for c in conversations
    ]
    if max_length:  # keep the end (the answer), as a reward model should read it
        ids = [x[-max_length:] if len(x) > max_length else x for x in ids]
    pad = tokenizer.pad_token_id
    device = next(model.parameters()).device
    model.eval()
    out: list[float] = []
    with torch.inference_mode():
        for i in range(0, len(ids), batch_size):
            chunk = ids[i : i + batch_size]
            width = max(len(x) for x in chunk)
            # right padding: sequence classifiers find the last non-pad token
            input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in chunk], device=device)
            mask = torch.tensor(
                [[1] * len(x) + [0] * (width - len(x)) for x in chunk], device=device
            )
            logits = model(input_ids=input_ids, attention_mask=mask).logits
            out.extend(float(v) for v in logits[:, 0].float().cpu())
    return out

"""A BERT-family reward model that scores its last token, as causal sequence classifiers do.

BertForSequenceClassification scores the [CLS] token through a pooler, and all-MiniLM-L6-v2
ships that pooler untrained (it was trained for mean pooling). Its final [SEP] token knows
more about a conversation's quality than its [CLS] (bench/reward_probe.py, frozen features +
a linear head, 5-fold CV on the HH sample: 0.621 against 0.575), and the reward recipe fits
the head on exactly those features before training (reward/head_init.py), which needs a
head that reads them. So the default reward base loads into this class:

    model = LastTokenBertForSequenceClassification.from_pretrained(minilm_dir, num_labels=1)
    model(input_ids, attention_mask).logits        # (batch, 1): score(h_last)

The encoder's weights load unchanged (the `bert.` prefix); there is no pooler, and the head is
`score` (Linear(hidden, num_labels)), the name LLaMA-style classifiers use, so LoRA's
modules_to_save and the head fitting find it the same way. The config's model_type is our
own and registered with transformers' Auto classes on import (training/models.py imports this
module), so a saved checkpoint loads back through AutoModelForSequenceClassification without
remote code.
"""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.bert.modeling_bert import BertModel, BertPreTrainedModel

MODEL_TYPE = "rlhf_bert_last_token"


class LastTokenBertConfig(BertConfig):
    model_type = MODEL_TYPE


class LastTokenBertForSequenceClassification(BertPreTrainedModel):
    config_class = LastTokenBertConfig

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.score = torch.nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None,
                inputs_embeds=None, **kwargs):  # fmt: skip
        kwargs.pop("return_dict", None)  # always a ModelOutput
        out = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds, **kwargs,
        )  # fmt: skip
        hidden = out.last_hidden_state
        batch, length = hidden.shape[:2]
        if attention_mask is None:
            last = torch.full((batch,), length - 1, device=hidden.device)
        else:  # the rightmost attended position: right or left padding alike
            positions = torch.arange(length, device=hidden.device)
            last = (attention_mask.to(hidden.device).bool() * positions).argmax(-1)
        logits = self.score(hidden[torch.arange(batch, device=hidden.device), last])
        loss = None
        if labels is not None:  # regression, as BertForSequenceClassification with one label
            loss = torch.nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
        # hidden states too (output_hidden_states=True): active learning embeds with them
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )


AutoConfig.register(MODEL_TYPE, LastTokenBertConfig, exist_ok=True)
AutoModelForSequenceClassification.register(
    LastTokenBertConfig, LastTokenBertForSequenceClassification, exist_ok=True
)

"""Two DPO steps with TRL's DPOTrainer on a tiny in-process model, one process per rank.

    torchrun --nproc_per_node 2 tests/torchrun_dpo.py OUT_DIR      (CPU: gloo backend)

Run by tests/test_torchrun.py. Every rank builds the same tiny Llama (same seed) and word
tokenizer; DDP keeps the weights in step. Rank 0 writes OUT_DIR/result.json with the world
size, the global step, the losses and whether the ranks' weights agree after training.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import datasets  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import transformers  # noqa: E402
from test_training_models import tiny_llama_config, word_tokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

PAIRS = [
    ("what colour is the sky", "the sky is blue", "the sky is green"),
    ("name a fruit", "an apple", "a carrot"),
    ("say hello politely", "hello there friend", "go away"),
    ("count to three", "one two three", "one three"),
]


def main(out_dir: str) -> None:
    words = sorted({w for p in PAIRS for text in p for w in text.split()})
    tokenizer = word_tokenizer(words)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(tiny_llama_config(tokenizer))
    ref_model = copy.deepcopy(model).eval()
    rows = [
        {
            "prompt": [{"role": "user", "content": q}],
            "chosen": [{"role": "assistant", "content": good}],
            "rejected": [{"role": "assistant", "content": bad}],
        }
        for q, good, bad in PAIRS
    ]
    config = DPOConfig(
        output_dir=str(Path(out_dir) / "trainer"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        ddp_backend="gloo",
        ddp_find_unused_parameters=False,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        max_length=64,
        seed=0,
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    output = trainer.train()
    # The ranks' weights must agree after the all-reduced steps.
    flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    if dist.get_rank() == 0:
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        result = {
            "world_size": dist.get_world_size(),
            "backend": dist.get_backend(),
            "global_step": output.global_step,
            "losses": losses,
            "weights_agree": all(torch.equal(gathered[0], g) for g in gathered[1:]),
            "weights_changed": not torch.equal(
                flat, torch.cat([p.flatten() for p in ref_model.parameters()])
            ),
        }
        (Path(out_dir) / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])

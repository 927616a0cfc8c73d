"""`rlhf ARGS...` on one rank of a torchrun launch, with a failure injected on one rank.

    torchrun --nproc_per_node 2 tests/training/torchrun_dpo.py --fail-rank 1 train dpo --snapshot 3 ...

Run by tests/training/test_torchrun.py to check that a failure on a rank other than 0 fails the run
once, recorded by rank 0 with that rank's error, and registers no checkpoint: on the rank
named by --fail-rank, transformers' Trainer.save_model raises (every rank saves the final
model together, so the others are left waiting for it). Without --fail-rank this is plain
`python -m app.cli.main ARGS...`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--fail-rank"]:
        fail_rank, argv = int(argv[1]), argv[2:]
        if int(os.environ.get("RANK", "0")) == fail_rank:
            import transformers

            def save_model(self, *args, **kwargs):
                raise RuntimeError(f"injected failure on rank {fail_rank}")

            transformers.Trainer.save_model = save_model
    from app.cli.main import main as rlhf

    return rlhf(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`rlhf generate`: a policy checkpoint answers a project's prompts; answers are stored.

rlhf generate --checkpoint 7 --project demo [--split heldout] [--n 2] [--temperature 0.7]
              [--top_p 0.95] [--max_new_tokens 128] [--seed 0] [--batch_size 16] [--limit 50]
              --json
-> {"checkpoint_id": 7, "prompts": 40, "responses": 80, "skipped": 0, "tokens": 6120,
    "tokens_per_s": 75.7, "batch_size": 32, ...}                       (training/generate.py)

Progress goes to stderr, one line per batch (small batches on CPU, so it moves), the result
to stdout; answers cut at --max_new_tokens are counted in "truncated" and marked on the row. Running the same command again skips
the prompts already answered with the same sampling parameters.
"""

from __future__ import annotations

from app.cli.common import acting_user, id_arg, print_json, sessionmaker, transaction

JSON_IDS_MAX = 1000  # --json lists the new response ids up to this many


def register(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="answer a project's prompts with a policy checkpoint (engineer, admin)",
        description="Batched generation (left padding, prompts sorted by length, batch size "
        "fitted to memory) from a registered policy checkpoint. Greedy when --temperature is 0. "
        "Answers are stored as responses authored by the checkpoint, with their sampling "
        "parameters; prompts already answered with the same parameters are skipped.",
    )
    p.add_argument(
        "--checkpoint", type=id_arg("checkpoint"), required=True, help="policy checkpoint id"
    )
    p.add_argument("--project", required=True, help="project name")
    p.add_argument("--split", default="heldout", choices=["heldout", "train", "all"])
    p.add_argument("--n", type=int, default=1, help="answers per prompt (1-64, default 1)")
    p.add_argument("--max_new_tokens", "--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top_p", "--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch_size", "--batch-size", type=int, help="default: fitted to free memory")
    p.add_argument("--limit", type=int, help="only the first L prompts of the split (by id)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=generate)


def generate(args) -> int:
    with transaction() as s:
        acting_user(s, args, action="generate")
    from training.generate import answer_project

    out = answer_project(
        sessionmaker(),
        checkpoint_id=args.checkpoint,
        project=args.project,
        split=args.split,
        n=args.n,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        batch_size=args.batch_size,
        limit=args.limit,
        progress=True,
    )
    if args.json:
        if len(out["response_ids"]) > JSON_IDS_MAX:
            out = {k: v for k, v in out.items() if k != "response_ids"}
        print_json(out)
    else:
        rate = "-" if out["tokens_per_s"] is None else f"{out['tokens_per_s']:.1f}"
        print(
            f"checkpoint {out['checkpoint_id']} answered {out['prompts']} {out['split']} "
            f"prompts of {out['project']}: {out['responses']} responses stored, "
            f"{out['skipped']} prompts skipped (already answered), {out['tokens']} tokens "
            f"in {out['seconds']:.1f} s ({rate} tokens/s, batch size {out['batch_size'] or '-'})"
        )
        if out["truncated"]:
            print(f"{out['truncated']} answers were cut at --max_new_tokens "
                  f"{args.max_new_tokens} (marked truncated)")  # fmt: skip
    return 0

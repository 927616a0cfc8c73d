"""`rlhf eval reward|policy`: checkpoints measured on a snapshot's split.

rlhf eval reward --checkpoint 4 --snapshot 3 --split heldout --json
-> {"accuracy": 0.75, "n": 8, "ties": 0, "mean_margin": ..., ...}
rlhf eval policy --checkpoint 9 --reward checkpoint:4 --snapshot 3 --split heldout --json
-> {"mean_reward": 0.41, "kl_to_base": 0.07, "n": 8, ...}   (training/evaluate_policy.py)
rlhf eval policy --checkpoint 9 --snapshot 3 --verifiable [--samples 4] --json
-> {"accuracy": 0.62, "ci_low": 0.52, "ci_high": 0.71, "n": 100, "pass_at": {...}, ...}
"""

from __future__ import annotations

from app.cli.common import acting_user, id_arg, int_in, print_json, transaction
from labeling.kinds import Role


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate checkpoints on snapshots (engineer, admin)")
    esub = p.add_subparsers(dest="eval_command", required=True, metavar="WHAT")
    r = esub.add_parser(
        "reward", help="accuracy: how often reward(chosen) > reward(rejected) on a split"
    )
    r.add_argument(
        "--checkpoint", type=id_arg("checkpoint"), required=True, help="reward checkpoint id"
    )
    r.add_argument(
        "--snapshot", type=id_arg("snapshot"), required=True, help="preference snapshot id"
    )
    r.add_argument("--split", default="heldout", choices=["heldout", "train"])
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=eval_reward)
    pol = esub.add_parser(
        "policy",
        help="a policy checkpoint's mean reward-model score and KL to its base on a split, or "
        "(--verifiable) its accuracy against the gold answers",
        description="Greedy answers to the split's prompts, scored by the reward model; the "
        "KL to the base is the mean over generated tokens of log p_policy - log p_base. With "
        "--verifiable: answers to the prompts with a gold answer of an sft snapshot, checked "
        "by the verifier (no reward model): accuracy (pass@1), pass@k, a 95%% Wilson interval.",
    )
    pol.add_argument(
        "--checkpoint", type=id_arg("checkpoint"), required=True, help="policy checkpoint id"
    )
    pol.add_argument(
        "--reward",
        help="reward model: checkpoint:ID of a reward checkpoint (not with --verifiable)",
    )
    pol.add_argument(
        "--snapshot", type=id_arg("snapshot"), required=True, help="snapshot id (its prompts)"
    )
    pol.add_argument("--split", default="heldout", choices=["heldout", "train"])
    pol.add_argument(
        "--base", help="policy to measure the KL against (default: the checkpoint's parent)"
    )
    pol.add_argument("--max_new_tokens", "--max-new-tokens", type=int_in(1, 32768), default=64)
    ver = pol.add_argument_group("verifiable (accuracy against gold answers)")
    ver.add_argument(
        "--verifiable", action="store_true", help="check the answers against the gold answers"
    )
    ver.add_argument(
        "--samples", type=int_in(1, 1024), default=1,
        help="answers per problem: 1 = greedy (default); k > 1 = sampled, gives pass@k",
    )  # fmt: skip
    ver.add_argument(
        "--temperature", type=float,
        help="sampling temperature (default 0 for one sample, 0.8 for several)",
    )  # fmt: skip
    ver.add_argument("--seed", type=int_in(0, 2**31 - 1), default=0, help="sampling seed")
    ver.add_argument(
        "--answer_pattern", "--answer-pattern",
        help="regex whose first group is the final answer (default: the snapshot's)",
    )  # fmt: skip
    ver.add_argument("--batch_size", "--batch-size", type=int_in(1, 4096), help="generation batch")
    pol.add_argument("--json", action="store_true")
    pol.set_defaults(func=eval_policy)


def eval_reward(args) -> int:
    from reward.evaluate import evaluate_checkpoint

    with transaction() as s:
        acting_user(s, args, Role.engineer, Role.admin)
        out = evaluate_checkpoint(
            s, checkpoint_id=args.checkpoint, snapshot_id=args.snapshot, split=args.split
        )
    if args.json:
        print_json(out)
    else:
        accuracy = "-" if out["accuracy"] is None else f"{out['accuracy']:.3f}"
        interval = (
            "" if out.get("ci_low") is None else f" [{out['ci_low']:.3f}, {out['ci_high']:.3f}]"
        )
        longer = out.get("longer_wins_accuracy")
        baseline = "" if longer is None else f"; the longer answer wins {longer:.3f}"
        print(
            f"accuracy {accuracy}{interval} on {out['n']} {out['split']} pairs of snapshot "
            f"{out['snapshot_id']}{baseline}"
        )
    return 0


def eval_policy(args) -> int:
    from labeling.errors import InvalidInput
    from training.evaluate_policy import evaluate_policy

    if args.verifiable:
        if args.reward:
            raise InvalidInput("--verifiable needs no reward model: leave out --reward")
        return eval_verifiable(args)
    if not args.reward:
        raise InvalidInput("pass --reward checkpoint:ID, or --verifiable to check gold answers")
    with transaction() as s:
        acting_user(s, args, Role.engineer, Role.admin)
        out = evaluate_policy(
            s,
            checkpoint_id=args.checkpoint,
            reward=args.reward,
            snapshot_id=args.snapshot,
            split=args.split,
            base=args.base,
            max_new_tokens=args.max_new_tokens,
        )
    if args.json:
        print_json(out)
    else:
        mean = "-" if out["mean_reward"] is None else f"{out['mean_reward']:.4f}"
        kl = "-" if out["kl_to_base"] is None else f"{out['kl_to_base']:.4f}"
        print(
            f"mean reward {mean}, KL to base {kl} ({out['base_from']}) on {out['n']} "
            f"{out['split']} prompts of snapshot {out['snapshot_id']}"
        )
    return 0


def eval_verifiable(args) -> int:
    from training.evaluate_policy import run_verifiable, verifiable_plan

    # The database is read in one short transaction; generating holds no lock.
    with transaction() as s:
        acting_user(s, args, Role.engineer, Role.admin)
        plan = verifiable_plan(
            s, checkpoint_id=args.checkpoint, snapshot_id=args.snapshot, split=args.split,
            samples=args.samples, temperature=args.temperature,
            answer_pattern=args.answer_pattern,
        )  # fmt: skip
    out = run_verifiable(
        plan, max_new_tokens=args.max_new_tokens, seed=args.seed, batch_size=args.batch_size
    )
    if args.json:
        print_json(out)
        return 0
    print(
        f"accuracy {out['accuracy']:.3f} (95% CI {out['ci_low']:.3f}-{out['ci_high']:.3f}) on "
        f"{out['n']} {out['split']} problems of snapshot {out['snapshot_id']}, "
        f"{out['decoding']}, {out['samples']} sample(s) each"
    )
    if out["samples"] > 1:
        print("  ".join(f"pass@{k} {v:.3f}" for k, v in out["pass_at"].items()))
    print(
        f"no final answer in {out['no_answer']} of {out['completions']} completions; "
        f"{out['truncated']} hit max_new_tokens"
    )
    return 0

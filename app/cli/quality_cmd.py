"""`rlhf quality`: can this project's labels be trusted, and whose? (admins and engineers)

    rlhf quality --project P [--labeler NAME] [--reward CHECKPOINT] [--bootstrap N] --json
-> {"project", "agreement": {...}, "position_bias": {...}, "speed": {...},
    "labelers": [{"name", "labels", "gold_accuracy", "gold_n", "left_win_rate",
                  "left_p_value", "position_bias", "median_seconds", "too_fast_share",
                  "competence", "agreement_with_reward", "flags", ...}],
    "items": {...}, "notes": [...]}

What every field means is labeling/quality/report.py's docstring. --reward scores every
labeled pair with a reward checkpoint (torch loads only then) and reports each labeler's
agreement with it where it is confident. Without --json: the labelers as a table, the
agreement and the notes as lines.
"""

from __future__ import annotations

import sys

from app.cli.common import acting_user, id_arg, int_in, print_json, print_table, transaction


def register(sub) -> None:
    p = sub.add_parser(
        "quality",
        help="label quality: agreement, gold accuracy, position bias, speed, competence",
    )
    p.add_argument("--project", required=True, help="a pairwise, arena or ranking project")
    p.add_argument("--labeler", help="show only this labeler's row (computed over everyone)")
    p.add_argument(
        "--reward", type=id_arg("checkpoint"), metavar="CHECKPOINT",
        help="a reward checkpoint id: each labeler's agreement with it where it is confident",
    )  # fmt: skip
    p.add_argument(
        "--bootstrap", type=int_in(0, 100_000), default=1000,
        help="bootstrap rounds for the agreement intervals (default 1000; 0: none)",
    )  # fmt: skip
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=quality)


def _reward_scorer(session, checkpoint_id: int):
    """r_a - r_b for each pair, from the reward checkpoint (scored as `rlhf arena judge`
    scores). The checkpoint is looked up now; the model (torch) loads only when the report
    has pairs to score, after the project and the labeler have been checked."""
    from labeling.registry import training_records

    checkpoint = training_records.get_checkpoint(session, checkpoint_id)

    def scorer(rows):
        from reward.evaluate import checkpoint_max_length, score
        from training.models import load_reward_model

        model, tokenizer = load_reward_model(f"checkpoint:{checkpoint_id}", session=session)
        budget = checkpoint_max_length(checkpoint)

        def side(key):
            conversations = [r["messages"] + [{"role": "assistant", "content": r[key]}]
                             for r in rows]  # fmt: skip
            return score(model, tokenizer, conversations, max_length=budget)

        return [a - b for a, b in zip(side("text_a"), side("text_b"), strict=True)]

    return scorer


def quality(args) -> int:
    from labeling.quality import quality_report

    with transaction() as s:
        acting_user(s, args, action="quality")
        scorer = _reward_scorer(s, args.reward) if args.reward is not None else None
        report = quality_report(
            s, args.project, labeler=args.labeler, bootstrap=args.bootstrap, seed=args.seed,
            reward_scorer=scorer, reward_checkpoint=args.reward,
        )  # fmt: skip
    if args.json:
        print_json(report)
    else:
        _print(report)
    for note in report["notes"]:  # on stderr: --json output keeps its contract
        print(f"note: {note}", file=sys.stderr)
    return 0


def _pct(value) -> str | None:
    return None if value is None else f"{100 * value:.1f}%"


def _num(value, digits: int = 2) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def _interval(stat) -> str:
    if not stat or stat["value"] is None:
        return "-"
    if stat.get("ci_low") is None:
        return f"{stat['value']:.3f}"
    return f"{stat['value']:.3f} (95% CI {stat['ci_low']:.3f} .. {stat['ci_high']:.3f})"


def _print(report) -> None:
    print(f"project {report['project']} ({report['kind']}): {report['labels']:,} labels")
    agreement = report["agreement"]
    if agreement is not None:
        print(f"agreement over {agreement['items']:,} items with two labels or more:")
        for key, title in (("raw", "raw agreement"), ("fleiss_kappa", "Fleiss' kappa"),
                           ("alpha_nominal", "Krippendorff's alpha (nominal)"),
                           ("alpha_ordinal", "Krippendorff's alpha (ordinal strength)"),
                           ("kendall_tau", "Kendall's tau between labelers"),
                           ("kendall_tau_to_consensus", "Kendall's tau to the consensus")):  # fmt: skip
            if key in agreement:
                print(f"  {title}: {_interval(agreement[key])}")
    position = report.get("position_bias")
    if position and position["left_win_rate"] is not None:
        verdict = "biased" if position["position_bias"] else "no bias detected"
        print(f"left answer won {_pct(position['left_win_rate'])} of {position['decisive']:,} "
              f"decisive labels (p = {position['p_value']:.3g}: {verdict})")  # fmt: skip
    rows = [{
        "labeler": r["name"], "labels": r["labels"],
        "gold": None if r["gold_accuracy"] is None else f"{_pct(r['gold_accuracy'])} of {r['gold_n']}",
        "left wins": _pct(r["left_win_rate"]),
        "p (left)": None if r["left_p_value"] is None else f"{r['left_p_value']:.2g}",
        "median s": _num(r["median_seconds"], 1), "too fast": _pct(r["too_fast_share"]),
        "competence": _num(r["competence"]),
        "tau": _num(r.get("kendall_tau_to_consensus")),
        "vs reward": _pct(r["agreement_with_reward"]),
        "flags": ", ".join(r["flags"]) or None,
    } for r in report["labelers"]]  # fmt: skip
    if report["kind"] == "ranking":  # what rankings have instead of sides, gold and competence
        columns = ["labeler", "labels", "tau", "median s", "too fast", "flags"]
    else:
        columns = ["labeler", "labels", "gold", "left wins", "p (left)", "median s",
                   "too fast", "competence", "vs reward", "flags"]  # fmt: skip
    print_table(rows, columns)

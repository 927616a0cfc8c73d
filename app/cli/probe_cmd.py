"""`rlhf probe`: where a checkpoint's knowledge ends, and "I don't know" data from it.

rlhf probe --checkpoint 7 --project facts [--samples 5] [--temperature 0.7]
           [--split heldout|train|all] [--max-new-tokens 64] [--seed 0] [--batch-size B] --json
-> {"probe_id": 3, "questions": 40, "accuracy": 0.41, "abstention_rate": 0.05,
    "confidently_wrong_rate": 0.3, "per_question": [...], ...}      (training/probe.py)
rlhf probe run --checkpoint 7 --project facts ...   # the same, with an action named
rlhf probe export --project facts --probe 3 --min-wrong 0.8 [--refusal TEXT ...] --json
-> an sft snapshot: refusals where the model was wrong, its correct answers elsewhere
rlhf probe report --project facts [--split heldout] --json
-> per checkpoint probed: accuracy, abstention rate, confidently-wrong rate, 95% intervals
rlhf probe show --project facts --probe 3 [--answers] --json
rlhf probe list --project facts --json
rlhf probe unjudged --project facts [--probe 3] [--limit 50] --json
-> the answers the automatic judge left for a person (blind: no checkpoint named)
rlhf probe judge --project facts --answer 812 --verdict correct|incorrect|abstained [--json]
rlhf probe draft --project facts --document handbook.md --checkpoint 7 [--per-passage 3] --json
-> questions a model drafted from a document, pending a person's review (question_drafts)
rlhf probe drafts --project facts [--status pending|accepted|rejected] [--limit 50] --json
rlhf probe accept --project facts --draft 12 [--question TEXT] [--answer TEXT] [--json]
rlhf probe reject --project facts --draft 13 [--json]
rlhf probe config --project facts [--abstain-phrase TEXT ...] [--refusal TEXT ...]
                  [--max-answer-chars N] --json

Questions are the prompts of an sft project that have a gold answer (labeling/probes.py).
"""

from __future__ import annotations

from app.cli.common import acting_user, id_arg, int_in, print_json, print_table, sessionmaker

SPLITS = ("heldout", "train", "all")  # labeling.generations.SPLITS, not imported: --help is light
COLUMNS = ["checkpoint_id", "checkpoint", "probe_id", "questions", "accuracy",
           "abstention_rate", "confidently_wrong_rate"]  # fmt: skip


def register(sub) -> None:
    p = sub.add_parser(
        "probe",
        help="ask a checkpoint the project's gold-answer questions k times; export "
        "'I don't know' data (engineer, admin)",
        description="Without an action: probe. The checkpoint answers each question of an sft "
        "project that has a gold answer --samples times; each answer is judged correct, "
        "incorrect, abstained or unjudged (too long to match) and stored with its sampling "
        "parameters. Actions: export (an sft snapshot of refusals and correct answers), "
        "report (figures per checkpoint), show, list, config, unjudged and judge (a person's "
        "verdict where the automatic judge could not match), draft (questions a model drafts "
        "from a document), drafts, accept and reject (people review them); run is the probe "
        "itself.",
    )
    _probe_arguments(p)
    psub = p.add_subparsers(dest="probe_command", metavar="ACTION")
    # `rlhf probe run ...` is `rlhf probe ...` spelt with an action (for scripts and docs that
    # name one)
    _probe_arguments(psub.add_parser("run", help="probe (the same as no action)"))

    ex = psub.add_parser("export", help="an sft snapshot: refusals where the model was wrong")
    ex.add_argument("--project", required=True)
    ex.add_argument("--probe", type=id_arg("probe"), required=True)
    ex.add_argument("--min-wrong", type=float, default=0.8,
                    help="refuse where at least this share of the samples was wrong (0.8)")  # fmt: skip
    ex.add_argument("--refusal", action="append", metavar="TEXT",
                    help="a refusal phrasing (repeat for several; default: the project's)")  # fmt: skip
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=export)

    rp = psub.add_parser("report", help="per checkpoint: accuracy, abstention, confidently wrong")
    rp.add_argument("--project", required=True)
    rp.add_argument("--split", default="heldout", choices=SPLITS)
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=report)

    sh = psub.add_parser("show", help="one probe's per-question results")
    sh.add_argument("--project", required=True)
    sh.add_argument("--probe", type=id_arg("probe"), required=True)
    sh.add_argument("--answers", action="store_true", help="also each sampled answer's text")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=show)

    ls = psub.add_parser("list", help="the project's probes, newest first")
    ls.add_argument("--project", required=True)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_)

    uj = psub.add_parser("unjudged", help="answers waiting for a person's verdict")
    uj.add_argument("--project", required=True)
    uj.add_argument("--probe", type=id_arg("probe"))
    uj.add_argument("--limit", type=int_in(1, 1000), default=50)
    uj.add_argument("--json", action="store_true")
    uj.set_defaults(func=unjudged)

    jg = psub.add_parser("judge", help="a person's verdict on an unjudged answer (any role)")
    jg.add_argument("--project", required=True)
    jg.add_argument("--answer", type=id_arg("answer"), required=True)
    jg.add_argument("--verdict", required=True, choices=["correct", "incorrect", "abstained"])
    jg.add_argument("--json", action="store_true")
    jg.set_defaults(func=judge)

    dr = psub.add_parser("draft", help="a model drafts questions from a document, for review")
    dr.add_argument("--project", required=True)
    dr.add_argument("--document", required=True, help="a UTF-8 .txt or .md file")
    dr.add_argument("--checkpoint", type=id_arg("checkpoint"), required=True,
                    help="the policy checkpoint that drafts")  # fmt: skip
    dr.add_argument("--per-passage", type=int_in(1, 10), default=3,
                    help="questions per passage (3)")  # fmt: skip
    dr.add_argument("--passage-chars", type=int_in(200, 8000), default=1200)
    dr.add_argument("--max-new-tokens", "--max_new_tokens", dest="max_new_tokens",
                    type=int_in(16, 4096), default=192)  # fmt: skip
    dr.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int_in(1, 1024))
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(func=draft)

    ds = psub.add_parser("drafts", help="the drafted questions, pending review by default")
    ds.add_argument("--project", required=True)
    ds.add_argument("--status", default="pending", choices=["pending", "accepted", "rejected"])
    ds.add_argument("--limit", type=int_in(1, 1000), default=50)
    ds.add_argument("--json", action="store_true")
    ds.set_defaults(func=list_drafts)

    for action, helptext in (("accept", "a drafted question becomes a question (any role)"),
                             ("reject", "a drafted question is dropped (any role)")):  # fmt: skip
        rv = psub.add_parser(action, help=helptext)
        rv.add_argument("--project", required=True)
        rv.add_argument("--draft", type=id_arg("draft"), required=True)
        if action == "accept":
            rv.add_argument("--question", help="the question as edited (default: as drafted)")
            rv.add_argument("--answer", help="the answer as edited (default: as drafted)")
        rv.add_argument("--json", action="store_true")
        rv.set_defaults(func=review_draft, review=action)

    cf = psub.add_parser("config", help="show or set how probe answers are judged and refused")
    cf.add_argument("--project", required=True)
    cf.add_argument("--abstain-phrase", action="append", metavar="TEXT",
                    help="a phrase that means 'I don't know' (repeat; replaces the list)")  # fmt: skip
    cf.add_argument("--refusal", action="append", metavar="TEXT",
                    help="a refusal phrasing for exports (repeat; replaces the list)")  # fmt: skip
    cf.add_argument("--max-answer-chars", type=int_in(1, 100_000),
                    help="answers longer than this without a match stay unjudged (300)")  # fmt: skip
    cf.add_argument("--json", action="store_true")
    cf.set_defaults(func=config)


def _probe_arguments(p) -> None:
    p.add_argument("--checkpoint", type=id_arg("checkpoint"), help="policy checkpoint id")
    p.add_argument("--project", help="project name")
    p.add_argument("--samples", type=int, default=5, help="answers per question (1-64, default 5)")
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (default 0.7)")
    p.add_argument("--top-p", "--top_p", dest="top_p", type=float, default=1.0)
    p.add_argument("--split", default="heldout", choices=SPLITS)
    p.add_argument("--max-new-tokens", "--max_new_tokens", dest="max_new_tokens", type=int,
                   default=64)  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int,
                   help="default: fitted to free memory (small on CPU)")  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=probe)


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def probe(args) -> int:
    from labeling.errors import InvalidInput

    if args.checkpoint is None or not args.project:
        raise InvalidInput("rlhf probe needs --checkpoint and --project (or an action: export, "
                           "report, show, list, config)")  # fmt: skip
    with sessionmaker().begin() as s:
        user = acting_user(s, args, action="probe")
        user_id = user.id if user is not None else None
    from training.probe import run_probe

    out = run_probe(
        sessionmaker(), checkpoint_id=args.checkpoint, project=args.project,
        samples=args.samples, temperature=args.temperature, top_p=args.top_p,
        max_new_tokens=args.max_new_tokens, split=args.split, seed=args.seed,
        batch_size=args.batch_size, created_by=user_id, progress=True,
    )  # fmt: skip
    if args.json:
        print_json(out)
        return 0
    _print_questions(out)
    print(
        f"probe {out['probe_id']}: checkpoint {out['checkpoint_id']} on {out['questions']} "
        f"questions x {out['samples']} samples: accuracy {_percent(out['accuracy'])}, "
        f"abstained {_percent(out['abstention_rate'])}, confidently wrong "
        f"{_percent(out['confidently_wrong_rate'])} of questions, {out['unjudged']} unjudged"
    )
    return 0


def _print_questions(out) -> None:
    rows = [
        {**q, "question": q["question"][:60], "accuracy": _percent(q["accuracy"]),
         "confidently_wrong": "yes" if q["confidently_wrong"] else ""}
        for q in out["per_question"]
    ]  # fmt: skip
    print_table(rows, ["prompt_id", "question", "correct", "incorrect", "abstained",
                       "unjudged", "accuracy", "confidently_wrong"])  # fmt: skip


def export(args) -> int:
    from labeling import probes, snapshots

    with sessionmaker().begin() as s:
        user = acting_user(s, args, action="probe")
        snapshot, created, counts = probes.export_probe(
            s, project=args.project, probe_id=args.probe, min_wrong=args.min_wrong,
            refusal_texts=args.refusal, created_by=user.id if user else None,
        )  # fmt: skip
        out = {**snapshots.describe(s, snapshot), "created": created, **counts}
    if args.json:
        print_json(out)
    else:
        verb = "created" if created else "already existed:"
        print(f"snapshot {out['id']} {verb} {out['rows']} rows ({out['refusals']} refusals, "
              f"{out['correct_answers']} correct answers, {out['left_out']} questions left out) "
              f"at {out['path']}")  # fmt: skip
    return 0


def report(args) -> int:
    from labeling import probes

    with sessionmaker().begin() as s:
        acting_user(s, args, action="probe")
        out = probes.report(s, args.project, split=args.split)
    if args.json:
        print_json(out)
        return 0
    rows = [
        {**r, **{k: _percent(r[k]) for k in ("accuracy", "abstention_rate",
                                              "confidently_wrong_rate")}}
        for r in out["checkpoints"]
    ]  # fmt: skip
    print_table(rows, COLUMNS)
    return 0


def show(args) -> int:
    from labeling import probes

    with sessionmaker().begin() as s:
        acting_user(s, args, action="probe")
        out = probes.probe_results(s, args.probe, project=args.project, texts=args.answers)
    if args.json:
        print_json(out)
    else:
        _print_questions(out)
    return 0


def list_(args) -> int:
    from labeling import probes

    with sessionmaker().begin() as s:
        acting_user(s, args, action="probe")
        out = probes.list_probes(s, args.project)
    if args.json:
        print_json(out)
    else:
        print_table(
            [{**r, "accuracy": _percent(r["accuracy"])} for r in out],
            ["probe_id", "checkpoint_id", "status", "samples", "temperature", "split",
             "questions", "accuracy", "created_at"],
        )  # fmt: skip
    return 0


def unjudged(args) -> int:
    from labeling import probes

    with sessionmaker().begin() as s:
        acting_user(s, args, action="label")
        out = probes.unjudged_answers(s, args.project, probe_id=args.probe, limit=args.limit)
    if args.json:
        print_json(out)
        return 0
    rows = [{**a, "question": a["question"][:50], "text": a["text"][:60]} for a in out["answers"]]
    print_table(rows, ["answer_id", "probe_id", "question", "reference", "text"])
    print(f"{out['remaining']} answers waiting in {out['project']}")
    return 0


def judge(args) -> int:
    from labeling import probes

    with sessionmaker().begin() as s:
        user = acting_user(s, args, action="label")
        out = probes.judge_answer(
            s, args.answer, args.verdict, judged_by=user.id, project=args.project,
        )  # fmt: skip
    if args.json:
        print_json(out)
    else:
        print(f"answer {out['answer_id']} (probe {out['probe_id']}): {out['verdict']}")
    return 0


def draft(args) -> int:
    with sessionmaker().begin() as s:
        user = acting_user(s, args, action="probe")
        user_id = user.id
    from training.question_drafts import draft_from_document

    out = draft_from_document(
        sessionmaker(), project=args.project, document=args.document,
        checkpoint_id=args.checkpoint, per_passage=args.per_passage,
        passage_chars=args.passage_chars, max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size, created_by=user_id,
    )  # fmt: skip
    if args.json:
        print_json(out)
    else:
        print(f"{out['document']}: {out['passages']} passages, {out['drafted']} questions "
              f"drafted, {out['new']} new for review ({out['duplicates']} already drafted, "
              f"{out['unparsed_passages']} passages gave none)")  # fmt: skip
    return 0


def list_drafts(args) -> int:
    from labeling import question_drafts

    with sessionmaker().begin() as s:
        acting_user(s, args, action="label")
        out = question_drafts.list_drafts(s, args.project, status=args.status, limit=args.limit)
    if args.json:
        print_json(out)
        return 0
    print_table([{**d, "question": d["question"][:60]} for d in out["drafts"]],
                ["draft_id", "document", "passage_index", "question", "answer"])  # fmt: skip
    print(", ".join(f"{n} {status}" for status, n in out["counts"].items()))
    return 0


def review_draft(args) -> int:
    from labeling import question_drafts

    with sessionmaker().begin() as s:
        user = acting_user(s, args, action="label")
        if args.review == "accept":
            out = question_drafts.accept_draft(
                s, args.project, args.draft, reviewed_by=user.id, question=args.question,
                answer=args.answer,
            )  # fmt: skip
        else:
            out = question_drafts.reject_draft(s, args.project, args.draft, reviewed_by=user.id)
    if args.json:
        print_json(out)
    else:
        where = f": prompt {out['prompt_id']}" if out["prompt_id"] else ""
        print(f"draft {out['draft_id']} {out['status']}{where}")
    return 0


def config(args) -> int:
    from labeling import probes

    with sessionmaker().begin() as s:
        acting_user(s, args, action="probe")
        out = probes.configure(
            s, args.project, abstain_phrases=args.abstain_phrase, refusal_texts=args.refusal,
            max_answer_chars=args.max_answer_chars,
        )  # fmt: skip
    if args.json:
        print_json(out)
    else:
        for key, value in out.items():
            print(f"{key}: {value}")
    return 0

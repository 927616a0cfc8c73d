"""`rlhf import FILE --project NAME`: prompts, demonstrations and preference pairs in bulk.

An `answer` column (e.g. `prompt`/`answer` rows) is each prompt's gold final answer, for
verifiable rewards (`rlhf train rl --reward verifiable`, `rlhf eval policy --verifiable`)."""

from __future__ import annotations

import sys
from pathlib import Path

from app.cli.common import acting_user, print_json, transaction
from labeling.import_formats import FORMATS

FORMAT_CHOICES = ["auto", *FORMATS]
MB = 1024 * 1024


def register(sub) -> None:
    p = sub.add_parser(
        "import",
        help="import prompts, demonstrations or preference pairs (admin, engineer)",
        description=(
            "Import a JSON lines, CSV or Parquet file, or a directory saved with datasets' "
            "save_to_disk. All or nothing unless --skip-invalid; duplicates (by content "
            "hash) are counted and skipped, so importing a file twice adds nothing."
        ),
    )
    p.add_argument("file", type=Path, help="the file (or saved datasets directory)")
    p.add_argument("--project", required=True)
    p.add_argument(
        "--format",
        default="auto",
        choices=FORMAT_CHOICES,
        help="row format (default: detect from the keys of the rows)",
    )
    p.add_argument("--skip-invalid", action="store_true", help="import the good rows, list the bad")
    p.add_argument(
        "--unlabeled",
        action="store_true",
        help="preference pairs become compare tasks for labelers, without the imported choice",
    )
    p.add_argument("--source", help="stored on new prompts (default: the file name)")
    p.add_argument("--split", help="split of a saved DatasetDict (default: train)")
    p.add_argument(
        "--map",
        metavar="FIELD=COLUMN,...",
        help="rename the file's columns to our fields first, e.g. "
        "prompt=instruction,a=output_1,b=output_2,choice=preference (fields: prompt, system, "
        "input, messages, completion, response, chosen, rejected, a, b, choice, responses, "
        "category, tags, source, answer; labels from another tool: labeler, shown_left, strength, "
        "seconds, created_at)",
    )
    p.add_argument(
        "--map-values",
        action="append",
        metavar="FIELD:FROM=TO,...",
        help="translate a field's values, e.g. choice:1=a,2=b,0=tie (repeat, or separate "
        "fields with ';')",
    )
    caps = p.add_argument_group("caps on what is read (a file over one is refused)")
    caps.add_argument("--max-rows", type=int, default=1_000_000, help="default 1000000")
    caps.add_argument(
        "--max-cell-chars", type=int, default=1_000_000, help="characters a cell; default 1000000"
    )
    caps.add_argument("--max-row-mb", type=int, default=8, help="MB a row; default 8")
    caps.add_argument(
        "--max-total-mb", type=int, default=256, help="MB decompressed in all; default 256"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from labeling import importer
    from labeling.import_formats import ColumnMap, Limits

    # Checked before the transaction: a bad flag is one sentence, nothing opened.
    limits = Limits(
        max_rows=args.max_rows,
        max_cell_chars=args.max_cell_chars,
        max_row_bytes=_mb(args.max_row_mb),
        max_total_bytes=_mb(args.max_total_mb),
    )
    mapping = ColumnMap.parse(args.map, args.map_values)
    try:
        with transaction() as s:
            acting_user(s, args, action="import")
            result = importer.import_file(
                s,
                project=args.project,
                path=args.file,
                format=args.format,
                skip_invalid=args.skip_invalid,
                unlabeled=args.unlabeled,
                source=args.source,
                split=args.split,
                mapping=mapping,
                limits=limits,
            )
    except importer.ImportFailed as exc:
        if args.json:
            print_json(exc.result.as_dict())
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print_json(result.as_dict())
        return 0
    print(
        f"imported {result.imported} of {result.rows_read} rows ({result.format}) into "
        f"{result.project}: {result.prompts_added} prompts, {result.responses_added} responses, "
        f"{result.tasks_added} tasks, {result.labels_added} labels, "
        f"{result.answers_added} gold answers; {result.duplicates} duplicates"
    )
    if result.labelers_created:
        print(f"{result.labelers_created} labelers created (inactive: they cannot log in)")
    for note in result.notes:
        print(note)
    if result.skipped:
        print(f"skipped {len(result.skipped)} invalid rows:")
        for error in result.skipped[: importer.MAX_ERRORS_IN_MESSAGE]:
            print(f"  {error}")
        if len(result.skipped) > importer.MAX_ERRORS_IN_MESSAGE:
            print(f"  ... and {len(result.skipped) - importer.MAX_ERRORS_IN_MESSAGE} more")
    return 0


def _mb(value: int) -> int:
    # Out-of-range numbers reach Limits' own check, which names the flag.
    return value * MB if 0 < value < 2**40 else value

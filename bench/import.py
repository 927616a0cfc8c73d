"""Bulk import vs. the ORM, on SQLite and PostgreSQL, in one run.

    python bench/import.py [--rows 100000] [--orm-rows 10000] [--postgres-url URL | --no-postgres]

Generates N synthetic preference pairs (standard TRL format: prompt, chosen, rejected) as a
JSONL file in a temp dir, then for each database times:

  ours         labeling.importer.import_file on the whole file, commit included
  orm          one ORM object per row: Prompt, 2 Responses, Task, Preference per pair
               (hashes computed the same way, ids assigned up front so that one flush
               per table batches the INSERTs, one commit), on the first --orm-rows pairs,
               reported as rows/s
  orm-flush    the naive ORM import (flush per pair to get ids), on --orm-rows / 10 pairs

The ratio (ours / orm, in rows per second) is printed last, one line per database.
SQLite runs on a temp file; PostgreSQL on a scratch database (rlhf_bench_import) that is
created, migrated and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path, where its other benchmarks would
# shadow standard modules of the same name (bench/queue.py vs. queue): use the repo root.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from labeling import migrate  # noqa: E402
from labeling.db import make_engine, make_sessionmaker  # noqa: E402
from labeling.hashing import prompt_hash, sha256_text, split_for_hash, task_hash  # noqa: E402
from labeling.importer import import_file  # noqa: E402
from labeling.models import (  # noqa: E402
    AuthorKind,
    Choice,
    Origin,
    Preference,
    Project,
    ProjectKind,
    Prompt,
    Response,
    Task,
    TaskKind,
    TaskStatus,
)
from labeling.projects import create_project  # noqa: E402

BENCH_DB = "rlhf_bench_import"

SUBJECTS = [
    "a sourdough starter",
    "a bike chain",
    "my tax return",
    "a Python script",
    "a job interview",
    "the garden soil",
    "a cover letter",
    "a leaking tap",
    "a birthday party",
    "a slow laptop",
    "a marathon plan",
    "a spreadsheet formula",
    "a noisy neighbour",
    "a cat that bites",
]
ASKS = [
    "How do I fix",
    "What is the best way to prepare",
    "Can you explain",
    "Give me tips on",
    "Why does nobody talk about",
    "Write a short note about",
    "What should I know about",
]
GOOD = [
    "Start by checking the basics, then change one thing at a time and note what happens.",
    "Here is a simple plan: first gather what you need, then work through it step by step.",
    "The short answer is that it depends on your situation, but most people begin with this.",
    "A good rule of thumb is to keep it simple and ask for help early if you get stuck.",
]
BAD = [
    "I don't know.",
    "Just search for it online.",
    "That is not something I can help with.",
    "Figure it out yourself.",
    "It is impossible, give up.",
]


def make_file(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(rows):
            prompt = f"{rng.choice(ASKS)} {rng.choice(SUBJECTS)}? (case {i})"
            chosen = f"{rng.choice(GOOD)} {rng.choice(GOOD)} For case {i}, try it today."
            rejected = f"{rng.choice(BAD)} ({rng.randrange(1000)})"
            f.write(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}) + "\n")


def fresh_project(Session, name: str) -> int:  # noqa: N803
    with Session.begin() as s:
        return create_project(s, name=name, kind=ProjectKind.pairwise).id


def run_ours(Session, path: Path) -> tuple[float, int]:  # noqa: N803
    project_id = fresh_project(Session, "ours")
    t0 = time.perf_counter()
    with Session.begin() as s:
        result = import_file(s, project=project_id, path=path)
    elapsed = time.perf_counter() - t0
    assert result.imported == result.rows_read, result.as_dict()
    return elapsed, result.imported


def read_pairs(path: Path, n: int) -> list[dict]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if len(out) == n:
                break
            out.append(json.loads(line))
    return out


def run_orm(Session, path: Path, n: int) -> tuple[float, int]:  # noqa: N803
    """One ORM object per row; ids assigned up front so one flush batches the INSERTs."""
    project_id = fresh_project(Session, "orm")
    t0 = time.perf_counter()
    with Session.begin() as s:
        project = s.get(Project, project_id)
        start = {
            m: (s.scalar(select(func.coalesce(func.max(m.id), 0))) or 0) + 1
            for m in (Prompt, Response, Task, Preference)
        }
        batches: list[list] = [[], [], [], [], []]
        for i, row in enumerate(read_pairs(path, n)):
            messages = [{"role": "user", "content": row["prompt"]}]
            ph = prompt_hash(messages)
            ch, rh = sha256_text(row["chosen"]), sha256_text(row["rejected"])
            p = Prompt(
                id=start[Prompt] + i,
                project_id=project_id,
                messages=messages,
                content_hash=ph,
                split=split_for_hash(ph, project.heldout_fraction),
                source="bench",
            )
            a = Response(
                id=start[Response] + 2 * i,
                prompt_id=p.id,
                text=row["chosen"],
                content_hash=ch,
                author_kind=AuthorKind.imported,
                source="bench",
            )
            b = Response(
                id=start[Response] + 2 * i + 1,
                prompt_id=p.id,
                text=row["rejected"],
                content_hash=rh,
                author_kind=AuthorKind.imported,
                source="bench",
            )
            t = Task(
                id=start[Task] + i,
                project_id=project_id,
                prompt_id=p.id,
                kind=TaskKind.compare,
                response_a_id=a.id,
                response_b_id=b.id,
                content_hash=task_hash("compare", ph, [ch, rh]),
                status=TaskStatus.done,
                overlap=project.overlap,
                labels_count=1,
            )
            pref = Preference(
                id=start[Preference] + i, task_id=t.id, origin=Origin.imported, choice=Choice.a
            )
            for objects, obj in zip(batches, (p, a, b, t, pref), strict=True):
                objects.append(obj)
        # No relationship links a Response to its Prompt or a Preference to its Task, so
        # the unit of work cannot order those INSERTs itself: one flush per table.
        for objects in batches:
            s.add_all(objects)
            s.flush()
    elapsed = time.perf_counter() - t0
    if Session.kw["bind"].dialect.name == "postgresql":  # ids were set by hand: catch up
        with Session.begin() as s:
            for table in ("prompts", "responses", "tasks", "preferences"):
                s.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    return elapsed, n


def run_orm_flush(Session, path: Path, n: int) -> tuple[float, int]:  # noqa: N803
    """The naive ORM import: flush after each object that the next one needs the id of."""
    project_id = fresh_project(Session, "orm-flush")
    t0 = time.perf_counter()
    with Session.begin() as s:
        project = s.get(Project, project_id)
        for row in read_pairs(path, n):
            messages = [{"role": "user", "content": row["prompt"]}]
            ph = prompt_hash(messages)
            ch, rh = sha256_text(row["chosen"]), sha256_text(row["rejected"])
            p = Prompt(
                project_id=project_id,
                messages=messages,
                content_hash=ph,
                split=split_for_hash(ph, project.heldout_fraction),
                source="bench",
            )
            s.add(p)
            s.flush()
            a = Response(
                prompt_id=p.id,
                text=row["chosen"],
                content_hash=ch,
                author_kind=AuthorKind.imported,
                source="bench",
            )
            b = Response(
                prompt_id=p.id,
                text=row["rejected"],
                content_hash=rh,
                author_kind=AuthorKind.imported,
                source="bench",
            )
            t = Task(
                project_id=project_id,
                prompt=p,
                kind=TaskKind.compare,
                response_a=a,
                response_b=b,
                content_hash=task_hash("compare", ph, [ch, rh]),
                status=TaskStatus.done,
                overlap=project.overlap,
                labels_count=1,
            )
            s.add_all([a, b, t])
            s.flush()
            s.add(Preference(task_id=t.id, origin=Origin.imported, choice=Choice.a))
    return time.perf_counter() - t0, n


def bench_db(name: str, url: str, path: Path, args) -> float:
    engine = make_engine(url)
    migrate.upgrade(engine)
    Session = make_sessionmaker(engine)  # noqa: N806
    ours_s, ours_n = run_ours(Session, path)
    orm_s, orm_n = run_orm(Session, path, args.orm_rows)
    flush_n = max(1, args.orm_rows // 10)
    flush_s, flush_n = run_orm_flush(Session, path, flush_n)
    engine.dispose()
    ours_rate, orm_rate, flush_rate = ours_n / ours_s, orm_n / orm_s, flush_n / flush_s
    print(f"{name}: ours       {ours_n:>7} pairs in {ours_s:6.2f} s  {ours_rate:>9,.0f} pairs/s")
    print(
        f"{name}: orm        {orm_n:>7} pairs in {orm_s:6.2f} s  {orm_rate:>9,.0f} pairs/s"
        f"  (one object per row, ids up front; would take {ours_n / orm_rate:.1f} s for {ours_n})"
    )
    print(
        f"{name}: orm-flush  {flush_n:>7} pairs in {flush_s:6.2f} s  {flush_rate:>9,.0f} pairs/s"
        f"  (flush per pair; would take {ours_n / flush_rate:.1f} s for {ours_n})"
    )
    return ours_rate / orm_rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--orm-rows", type=int, default=10_000)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "RLHF_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        t0 = time.perf_counter()
        make_file(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        print(
            f"generated {args.rows} preference pairs ({size_mb:.1f} MB) in "
            f"{time.perf_counter() - t0:.1f} s; orm baselines run on {args.orm_rows} and "
            f"{max(1, args.orm_rows // 10)} pairs and are compared in pairs/s"
        )
        ratios["sqlite"] = bench_db("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", path, args)
        if not args.no_postgres:
            admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{BENCH_DB}"'))
            url = make_url(args.postgres_url).set(database=BENCH_DB)
            try:
                ratios["postgres"] = bench_db(
                    "postgres", url.render_as_string(hide_password=False), path, args
                )
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
                admin.dispose()
    for name, ratio in ratios.items():
        print(f"ratio {name} ours/orm: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

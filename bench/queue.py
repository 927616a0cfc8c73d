"""Queue throughput: N concurrent labelers claiming and submitting, small queue vs huge queue.

    python bench/queue.py                     # 16 labelers, 10 s each, SQLite and PostgreSQL
    python bench/queue.py --labelers 8 --seconds 5 --sizes 10000,1000000 --db sqlite

For each database and queue size: a fresh migrated database holding one pairwise project
with SIZE open compare tasks (overlap 1). N threads each loop: claim (labeling.queue.claim_next,
one transaction) then submit (labeling.queue.submit_preference, another transaction), as the
tests do. Both sizes of one database are filled first, then measured in alternating slices
(10k, 1M, 1M, 10k with --rounds 2), each slice after a one-second warm-up, so that load from
others on this shared machine falls on both sizes alike; cycles completed inside the
measured windows are counted. Duplicate assignments are counted with SQL afterwards and
must be 0.

The figure that matters is printed last: claims/s with 1M queued tasks over claims/s with
10k queued tasks, per database (goal >= 0.8: a deep queue must not slow the claim down).
Absolute numbers on a shared 2-core machine are noise; compare within one run.

PostgreSQL: RLHF_BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
names the server; scratch databases rlhf_bench_* are created there and dropped at the end.
"""

from __future__ import annotations

import os
import sys

# Run as `python bench/queue.py`, this file's folder comes first on sys.path and would
# shadow the standard library's `queue` module (used by concurrent.futures, psycopg, ...).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import hashlib  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from sqlalchemy import Engine, create_engine, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from labeling import migrate, projects  # noqa: E402
from labeling import queue as lq  # noqa: E402
from labeling.db import make_engine, make_sessionmaker  # noqa: E402
from labeling.hashing import prompt_hash, sha256_text  # noqa: E402
from labeling.models import Prompt, Response, Role, User  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "RLHF_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
N_PROMPTS = 1000
WARMUP_S = 1.0
SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"
TASK_COLUMNS = (
    "project_id", "prompt_id", "kind", "response_a_id", "response_b_id", "content_hash",
    "is_gold", "status", "overlap", "labels_count", "active_leases", "lease_epoch",
    "priority", "created_at",
)  # fmt: skip


# --- databases ----------------------------------------------------------------------------


@dataclass
class Scratch:
    db: str
    url: str
    cleanup: list = field(default_factory=list)

    def close(self) -> None:
        for fn in reversed(self.cleanup):
            fn()


def sqlite_scratch() -> Scratch:
    folder = tempfile.mkdtemp(prefix="rlhf_bench_")
    scratch = Scratch("sqlite", f"sqlite:///{folder}/bench.db")
    scratch.cleanup.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    return scratch


def pg_scratch(size: int) -> Scratch:
    name = f"rlhf_bench_{os.getpid()}_{size}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    scratch = Scratch("postgres", url)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    scratch.cleanup.append(drop)
    return scratch


def bench_engine(scratch: Scratch, labelers: int) -> Engine:
    # One pooled connection per labeler thread and some slack, on both databases.
    return make_engine(scratch.url, pool_size=labelers + 4, max_overflow=4)


# --- filling ------------------------------------------------------------------------------


def fill(engine: Engine, size: int, labelers: int) -> tuple[int, list[int]]:
    """A pairwise project with `size` open compare tasks; returns (project id, labeler ids).

    1000 prompts with two responses each (Core bulk inserts); the tasks reuse them, each
    with a distinct content hash. Tasks go in with executemany (SQLite) or COPY (PostgreSQL).
    """
    Session = make_sessionmaker(engine)  # noqa: N806
    now = datetime.now(UTC)
    with Session.begin() as s:
        project = projects.create_project(
            s, name="bench", kind="pairwise", overlap=1, lease_seconds=1800
        )
        project_id = project.id
        s.execute(
            insert(User),
            [
                {"name": f"labeler{i}", "role": Role.labeler, "password_hash": None}
                for i in range(labelers)
            ],
        )
        prompts = []
        for i in range(N_PROMPTS):
            messages = [{"role": "user", "content": f"Bench question {i}?"}]
            prompts.append(
                {"project_id": project_id, "messages": messages,
                 "content_hash": prompt_hash(messages), "split": "train", "created_at": now}
            )  # fmt: skip
        s.execute(insert(Prompt), prompts)
        prompt_ids = list(s.scalars(select(Prompt.id).order_by(Prompt.id)))
        responses = [
            {"prompt_id": pid, "text": f"Answer {side} to {pid}.",
             "content_hash": sha256_text(f"Answer {side} to {pid}."),
             "author_kind": "import", "created_at": now}
            for pid in prompt_ids
            for side in ("A", "B")
        ]  # fmt: skip
        s.execute(insert(Response), responses)
        pairs = {}
        for rid, pid in s.execute(select(Response.id, Response.prompt_id).order_by(Response.id)):
            pairs.setdefault(pid, []).append(rid)
        user_ids = list(
            s.scalars(select(User.id).where(User.name.like("labeler%")).order_by(User.id))
        )
    plist = [(pid, pairs[pid][0], pairs[pid][1]) for pid in prompt_ids]

    # Distinct hashes, handed out in sorted order so the unique index fills left to right.
    digests = sorted(hashlib.sha256(b"bench-task-%d" % i).hexdigest() for i in range(size))

    def rows(created, false):
        for i in range(size):
            pid, ra, rb = plist[i % N_PROMPTS]
            yield (project_id, pid, "compare", ra, rb, digests[i], false, "open", 1, 0, 0, 0, 0,
                   created)  # fmt: skip

    cols = ", ".join(TASK_COLUMNS)
    if engine.dialect.name == "sqlite":
        created = now.replace(tzinfo=None).strftime(SQLITE_TS)
        with engine.begin() as conn:  # BEGIN IMMEDIATE: one transaction for all rows
            raw = conn.connection.driver_connection
            cur = raw.cursor()
            cur.execute("PRAGMA cache_size=-262144")  # 256 MiB while loading
            marks = ", ".join("?" * len(TASK_COLUMNS))
            cur.executemany(
                f"INSERT INTO tasks ({cols}) VALUES ({marks})",
                rows(created, 0),
            )
            cur.execute("PRAGMA cache_size=-2000")
            cur.close()
        with engine.connect() as conn:  # outside any transaction: ANALYZE, then empty the WAL
            raw = conn.connection.driver_connection
            raw.execute("ANALYZE")
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            line = "\t".join(["%s"] * len(TASK_COLUMNS)) + "\n"
            with raw.cursor() as cur:
                superuser = cur.execute(
                    "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                ).fetchone()[0]
                if superuser:
                    # Scratch data built from ids just read back: skip the per-row
                    # foreign-key triggers for this transaction (halves the load time).
                    cur.execute("SET LOCAL session_replication_role = replica")
                with cur.copy(f"COPY tasks ({cols}) FROM STDIN") as copy:
                    chunk = []
                    for r in rows(now.isoformat(), "f"):
                        chunk.append(line % r)
                        if len(chunk) == 20_000:
                            copy.write("".join(chunk))
                            chunk = []
                    copy.write("".join(chunk))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # A long-lived queue has been vacuumed (hint bits, visibility map) and its pages
            # written out; a fresh COPY has neither, and autovacuum may be off on this server.
            conn.exec_driver_sql("VACUUM (ANALYZE) tasks")
            conn.exec_driver_sql("ANALYZE")
            if superuser:
                conn.exec_driver_sql("CHECKPOINT")
    # Let the load's dirty pages reach the disk before measuring, not during the measurement
    # (commits fsync their WAL and would queue behind that writeback).
    os.sync()
    return project_id, user_ids


# --- the labelers -------------------------------------------------------------------------


@dataclass
class Result:
    cycles: int = 0
    claim_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    rejected: int = 0
    drained: int = 0
    errors: list[str] = field(default_factory=list)


def run_labelers(engine: Engine, project_id: int, user_ids: list[int], seconds: float) -> Result:
    maker = make_sessionmaker(engine)
    result = Result()
    lock = threading.Lock()
    barrier = threading.Barrier(len(user_ids) + 1)
    window = {}

    def labeler(user_id: int) -> None:
        rng = random.Random(user_id)
        mine = Result()
        try:
            barrier.wait()
            start, end = window["start"], window["end"]
            while True:
                t0 = time.perf_counter()
                if t0 >= end:
                    break
                with maker.begin() as s:
                    a = lq.claim_next(s, project_id=project_id, user_id=user_id, rng=rng)
                    task_id = None if a is None else a.task_id
                t1 = time.perf_counter()
                if task_id is None:
                    mine.drained += 1
                    break
                with maker.begin() as s:
                    r = lq.submit_preference(
                        s, task_id=task_id, user_id=user_id, choice=rng.choice("ab"),
                        strength=2, idempotency_key=f"{user_id}-{task_id}",
                    )  # fmt: skip
                    accepted = r.accepted and not r.duplicate
                t2 = time.perf_counter()
                if t0 >= start and t2 <= end:
                    mine.cycles += 1
                    mine.claim_ms.append((t1 - t0) * 1000)
                    mine.submit_ms.append((t2 - t1) * 1000)
                    mine.rejected += not accepted
        except Exception as exc:  # reported with the results
            mine.errors.append(repr(exc))
        with lock:
            result.cycles += mine.cycles
            result.claim_ms += mine.claim_ms
            result.submit_ms += mine.submit_ms
            result.rejected += mine.rejected
            result.drained += mine.drained
            result.errors += mine.errors

    threads = [threading.Thread(target=labeler, args=(u,), daemon=True) for u in user_ids]
    for t in threads:
        t.start()
    now = time.perf_counter()
    window["start"] = now + WARMUP_S
    window["end"] = now + WARMUP_S + seconds
    barrier.wait()
    for t in threads:
        t.join()
    return result


def duplicates(engine: Engine) -> int:
    """Tasks with more preferences than their overlap, plus (task, user) pairs seen twice."""
    with engine.connect() as conn:
        over = conn.scalar(
            text(
                """SELECT count(*) FROM (
                       SELECT p.task_id FROM preferences p JOIN tasks t ON t.id = p.task_id
                       GROUP BY p.task_id, t.overlap HAVING count(*) > t.overlap) x"""
            )
        )
        twice = conn.scalar(
            text(
                """SELECT count(*) FROM (
                       SELECT task_id, user_id FROM preferences
                       GROUP BY task_id, user_id HAVING count(*) > 1) y"""
            )
        )
        twice_assigned = conn.scalar(
            text(
                """SELECT count(*) FROM (
                       SELECT task_id, user_id FROM assignments
                       GROUP BY task_id, user_id HAVING count(*) > 1) z"""
            )
        )
    return over + twice + twice_assigned


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


# --- main ---------------------------------------------------------------------------------


class Bench:
    """One fresh database holding `size` queued tasks, measured in one or more slices."""

    def __init__(self, db: str, size: int, labelers: int) -> None:
        self.db, self.size = db, size
        self.scratch = sqlite_scratch() if db == "sqlite" else pg_scratch(size)
        self.result = Result()
        self.seconds = 0.0
        try:
            self.engine = bench_engine(self.scratch, labelers)
            migrate.upgrade(self.engine)
            t0 = time.perf_counter()
            self.project_id, self.user_ids = fill(self.engine, size, labelers)
            self.fill_s = time.perf_counter() - t0
        except BaseException:
            self.scratch.close()
            raise

    def run(self, seconds: float) -> None:
        res = run_labelers(self.engine, self.project_id, self.user_ids, seconds)
        self.engine.dispose()  # close this slice's connections while the other size runs
        self.seconds += seconds
        total = self.result
        total.cycles += res.cycles
        total.claim_ms += res.claim_ms
        total.submit_ms += res.submit_ms
        total.rejected += res.rejected
        total.drained += res.drained
        total.errors += res.errors

    @property
    def rate(self) -> float:
        return self.result.cycles / self.seconds if self.seconds else float("nan")

    def close(self) -> None:
        try:
            self.duplicates = duplicates(self.engine)
        finally:
            self.engine.dispose()
            self.scratch.close()

    def report(self) -> None:
        res = self.result
        line = (
            f"{self.db:8s} {self.size:>9,d} tasks: {self.rate:8.1f} claims/s  "
            f"claim p50 {pct(res.claim_ms, 0.5):7.1f} ms  p99 {pct(res.claim_ms, 0.99):7.1f} ms  "
            f"submit p50 {pct(res.submit_ms, 0.5):7.1f} ms  duplicates {self.duplicates}  "
            f"(cycles {res.cycles}, fill {self.fill_s:.1f} s"
        )
        if res.rejected:
            line += f", rejected submits {res.rejected}"
        if res.drained:
            line += f", QUEUE DRAINED for {res.drained} labeler runs"
        print(line + ")", flush=True)
        for err in res.errors[:3]:
            print(f"  error: {err}", flush=True)
        if res.errors or self.duplicates:
            print(f"  {len(res.errors)} labeler errors, {self.duplicates} duplicates: NOT OK")


def measure_db(db: str, sizes: list[int], labelers: int, seconds: float, rounds: int) -> dict:
    """Fill one database per size, then measure them in alternating slices (ABBA order),
    so that load from others on the machine falls on every size alike."""
    benches: list[Bench] = []
    try:
        for size in sizes:
            benches.append(Bench(db, size, labelers))
        for r in range(rounds):
            for bench in benches if r % 2 == 0 else benches[::-1]:
                bench.run(seconds / rounds)
    finally:
        for bench in benches:
            bench.close()
    for bench in benches:
        bench.report()
    return {bench.size: bench.rate for bench in benches}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labelers", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0, help="measured, per size and database")
    ap.add_argument("--sizes", default="10000,1000000", help="queued tasks, baseline first")
    ap.add_argument("--db", default="sqlite,postgres")
    ap.add_argument(
        "--rounds", type=int, default=2, help="slices per size, alternating sizes (ABBA)"
    )
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x]
    dbs = [x.strip() for x in args.db.split(",") if x.strip()]
    for db in dbs:
        if db not in ("sqlite", "postgres"):
            ap.error(f"unknown database {db!r}: use sqlite and/or postgres")
    if not sizes or args.labelers < 1 or args.seconds <= 0 or args.rounds < 1:
        ap.error("need at least one size, one labeler, some seconds and one round")

    started = time.perf_counter()
    print(
        f"# queue benchmark: {args.labelers} labeler threads, each looping claim_next then "
        f"submit_preference (one transaction each); overlap 1"
    )
    print(
        f"# per size: {args.seconds:g} s measured, in {args.rounds} alternating slices "
        f"(sizes in ABBA order), each after {WARMUP_S:g} s of warm-up"
    )
    print(
        f"# machine: {os.cpu_count()} cores, shared and noisy: absolute figures are noise, "
        f"compare within this run"
    )
    print(
        f"# baseline: {sizes[0]:,} queued tasks; compared: "
        f"{', '.join(f'{s:,}' for s in sizes[1:]) or '-'} queued tasks; a fresh database "
        f"per size (SQLite temp file, PostgreSQL scratch database rlhf_bench_*)",
        flush=True,
    )
    rates = {db: measure_db(db, sizes, args.labelers, args.seconds, args.rounds) for db in dbs}
    print(f"# total {time.perf_counter() - started:.0f} s", flush=True)
    for db in dbs:
        base = rates[db][sizes[0]]
        for size in sizes[1:]:
            ratio = rates[db][size] / base if base else float("nan")
            print(
                f"ratio {db} {_short(size)}/{_short(sizes[0])} claims/s: {ratio:.2f} (goal >= 0.8)"
            )
    return 0


def _short(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


if __name__ == "__main__":
    sys.exit(main())

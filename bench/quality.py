"""Label quality: `rlhf quality`'s service on a million labels, and Dawid–Skene by our
vectorised EM against a plain per-item Python loop EM, one run.

    python bench/quality.py                         # 1M labels, 1,000 labelers, both databases
    python bench/quality.py --labels 100000 --db sqlite --loop-items 5000

Data: a pairwise project; every item gets --overlap labels from distinct labelers (so
items = labels / overlap; the issue's "100k items, overlap 3" and "1M labels" cannot both
hold, and labels and overlap are kept), 1% of items are gold. Labelers have known
behaviour: most answer right with an accuracy drawn from 0.55..0.95, 2% always take the
left answer, 2% click at random (and fast), 1% answer the opposite. Sides are a coin per
label. Rows go in through labeling/bulk_insert.py's writers (executemany on SQLite, COPY on
PostgreSQL), never the ORM.

1. quality_report(session, project, bootstrap=B) on each database: seconds (the goal is
   under 10 s on PostgreSQL), with the share spent reading the labels.
2. Dawid–Skene: labeling.quality.competence.fit on all labels against a textbook EM that
   loops over items and labels in Python (dicts and lists, math.log). The loop on all labels
   would take minutes, so it runs on the labels of the first --loop-items items for a fixed
   number of iterations, and its time is scaled linearly to all labels and to the
   iterations ours took (EM work is linear in both); both are also run on that subsample
   with the same iterations, and their reliabilities must agree (printed).
Ratios are printed last, on lines starting with "ratio ". Absolute seconds on a shared
2-core machine are noise; the ratios come from one run.

PostgreSQL: RLHF_BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres);
a scratch database rlhf_bench_quality_* is created there and dropped at the end.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, where bench/queue.py would shadow the
# standard library's `queue` (used by psycopg and labeling/bulk_insert.py): use the repo root.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

import numpy as np  # noqa: E402
from sqlalchemy import create_engine, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from labeling import migrate, projects  # noqa: E402
from labeling.bulk_insert import _PostgresWriter, _SQLiteWriter  # noqa: E402
from labeling.db import make_engine, make_sessionmaker  # noqa: E402
from labeling.hashing import prompt_hash, sha256_text  # noqa: E402
from labeling.models import Prompt, Response, Role, User  # noqa: E402
from labeling.quality import competence, data, quality_report  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "RLHF_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
N_PROMPTS = 1000
CHOICES = ("a", "b", "tie", "both_bad")
TASK_COLUMNS = (
    "id", "project_id", "prompt_id", "kind", "response_a_id", "response_b_id", "content_hash",
    "is_gold", "gold", "status", "overlap", "labels_count", "active_leases", "lease_epoch",
    "priority", "created_at",
)  # fmt: skip
PREF_COLUMNS = (
    "task_id", "user_id", "origin", "choice", "strength", "left_response_id", "time_spent_ms",
    "created_at",
)  # fmt: skip


# --------------------------------------------------------------------------- simulated labels


def simulate(n_labels: int, n_labelers: int, overlap: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_items = n_labels // overlap
    truth = rng.choice(4, n_items, p=[0.45, 0.45, 0.07, 0.03])
    # distinct labelers per item: sorted draws from 0..J-k plus 0, 1, ..., k-1
    draws = np.sort(rng.integers(0, n_labelers - overlap + 1, (n_items, overlap)), axis=1)
    labeler = (draws + np.arange(overlap)).ravel()
    item = np.repeat(np.arange(n_items), overlap)
    kind = rng.choice(4, n_labelers, p=[0.95, 0.02, 0.02, 0.01])  # careful, left, random, contra
    accuracy = rng.uniform(0.55, 0.95, n_labelers)
    t = truth[item]
    left_is_a = rng.random(len(item)) < 0.5
    careful = np.where(rng.random(len(item)) < accuracy[labeler], t,
                       (t + rng.integers(1, 4, len(item))) % 4)  # fmt: skip
    left = np.where(left_is_a, 0, 1)
    coin = rng.integers(0, 2, len(item))
    contrarian = np.select([t == 0, t == 1], [1, 0], 1 - coin)
    k = kind[labeler]
    choice = np.select([k == 0, k == 1, k == 2], [careful, left, coin], contrarian)
    seconds = np.where(k == 2, rng.uniform(0.5, 3, len(item)), rng.lognormal(2.3, 0.5, len(item)))
    strength = np.where(choice <= 1, rng.integers(1, 4, len(item)), 0)
    gold = np.zeros(n_items, bool)
    gold[rng.choice(n_items, max(1, n_items // 100), replace=False)] = True
    return {"item": item, "labeler": labeler, "choice": choice, "strength": strength,
            "left_is_a": left_is_a, "ms": (seconds * 1000).astype(np.int64), "truth": truth,
            "gold": gold, "accuracy": accuracy, "kind": kind}  # fmt: skip


# --------------------------------------------------------------------------- databases


def sqlite_url() -> tuple[str, callable]:
    folder = tempfile.mkdtemp(prefix="rlhf_bench_quality_")
    return f"sqlite:///{folder}/bench.db", lambda: shutil.rmtree(folder, ignore_errors=True)


def postgres_url() -> tuple[str, callable]:
    name = f"rlhf_bench_quality_{os.getpid()}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False), drop


def fill(engine, sim: dict[str, np.ndarray], n_labelers: int) -> int:
    """The project, 1,000 prompts with two answers, the tasks and the labels; its id."""
    maker = make_sessionmaker(engine)
    now = datetime.now(UTC)
    with maker.begin() as s:
        project_id = projects.create_project(s, name="bench", kind="pairwise", overlap=3).id
        s.execute(insert(User), [{"name": f"labeler{i}", "role": Role.labeler}
                                 for i in range(n_labelers)])  # fmt: skip
        user_ids = np.array(list(s.scalars(
            select(User.id).where(User.name.like("labeler%")).order_by(User.id))))  # fmt: skip
        prompts = []
        for i in range(N_PROMPTS):
            messages = [{"role": "user", "content": f"Bench question {i}?"}]
            prompts.append({"project_id": project_id, "messages": messages, "split": "train",
                            "content_hash": prompt_hash(messages), "created_at": now})  # fmt: skip
        s.execute(insert(Prompt), prompts)
        prompt_ids = list(s.scalars(select(Prompt.id).order_by(Prompt.id)))
        s.execute(insert(Response), [
            {"prompt_id": pid, "text": f"Answer {side} to {pid}.", "author_kind": "import",
             "content_hash": sha256_text(f"Answer {side} to {pid}."), "created_at": now}
            for pid in prompt_ids for side in "AB"
        ])  # fmt: skip
        pairs: dict[int, list[int]] = {}
        for rid, pid in s.execute(select(Response.id, Response.prompt_id).order_by(Response.id)):
            pairs.setdefault(pid, []).append(rid)
    n_items = len(sim["truth"])
    with maker.begin() as s:
        writer = _SQLiteWriter(s) if engine.dialect.name == "sqlite" else _PostgresWriter(s)
        stamp, false = writer.timestamp(now), writer.false
        true = 1 if false == 0 else "t"
        task_ids = np.array(list(writer.ids("tasks", n_items)), np.int64)
        prompt_of = np.array(prompt_ids)[np.arange(n_items) % N_PROMPTS]
        a_of = np.array([pairs[p][0] for p in prompt_ids])[np.arange(n_items) % N_PROMPTS]
        b_of = np.array([pairs[p][1] for p in prompt_ids])[np.arange(n_items) % N_PROMPTS]
        rows = []
        for i in range(n_items):
            gold = sim["gold"][i]
            rows.append((int(task_ids[i]), project_id, int(prompt_of[i]), "compare", int(a_of[i]),
                         int(b_of[i]), hashlib.sha256(b"bench-%d" % i).hexdigest(),
                         true if gold else false,
                         json.dumps({"choice": CHOICES[sim["truth"][i]]}) if gold else None,
                         "done", 3, 3, 0, 0, 0, stamp))  # fmt: skip
            if len(rows) == 50_000:
                writer.insert("tasks", TASK_COLUMNS, rows)
                rows = []
        writer.insert("tasks", TASK_COLUMNS, rows)
        item, choice = sim["item"], sim["choice"]
        left = np.where(sim["left_is_a"], a_of[item], b_of[item])
        columns = zip(task_ids[item].tolist(), user_ids[sim["labeler"]].tolist(),
                      choice.tolist(), sim["strength"].tolist(), left.tolist(),
                      sim["ms"].tolist(), strict=True)  # fmt: skip
        rows = []
        for task, user, c, strength, shown, ms in columns:
            rows.append((task, user, "labeler", CHOICES[c], strength or None, shown, ms, stamp))
            if len(rows) == 100_000:
                writer.insert("preferences", PREF_COLUMNS, rows)
                rows = []
        writer.insert("preferences", PREF_COLUMNS, rows)
        writer.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    return project_id


# --------------------------------------------------------------------------- the loop baseline


def loop_dawid_skene(item, labeler, value, n_labelers, C, iterations, prior=competence.PRIOR):
    """Dawid–Skene EM as a textbook writes it: per item, per label, in Python."""
    by_item: dict[int, list[tuple[int, int]]] = {}
    for i, j, v in zip(item.tolist(), labeler.tolist(), value.tolist(), strict=True):
        by_item.setdefault(i, []).append((j, v))
    T = {}
    for i, labels in by_item.items():  # soft majority vote
        counts = [0.0] * C
        for _, v in labels:
            counts[v] += 1
        T[i] = [c / len(labels) for c in counts]
    for _ in range(iterations):
        counts = [[[prior] * C for _ in range(C)] for _ in range(n_labelers)]
        pi = [prior] * C
        for i, labels in by_item.items():
            t = T[i]
            for c in range(C):
                pi[c] += t[c]
            for j, v in labels:
                row = counts[j]
                for c in range(C):
                    row[c][v] += t[c]
        total = sum(pi)
        pi = [p / total for p in pi]
        log_theta = [[[math.log(x / sum(row)) for x in row] for row in rows] for rows in counts]
        for i, labels in by_item.items():
            logs = [math.log(pi[c]) for c in range(C)]
            for j, v in labels:
                for c in range(C):
                    logs[c] += log_theta[j][c][v]
            top = max(logs)
            w = [math.exp(x - top) for x in logs]
            s = sum(w)
            T[i] = [x / s for x in w]
    theta = [[[math.exp(x) for x in row] for row in rows] for rows in log_theta]
    return [sum(pi[c] * theta[j][c][c] for c in range(C)) for j in range(n_labelers)]


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--labelers", type=int, default=1000)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--db", choices=["both", "sqlite", "postgres"], default="both")
    parser.add_argument(
        "--loop-items",
        type=int,
        default=20_000,
        help="items whose labels the Python loop EM runs on (scaled up)",
    )
    parser.add_argument("--loop-iterations", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sim = simulate(args.labels, args.labelers, args.overlap, args.seed)
    n = len(sim["item"])
    print(f"data: {n:,} labels, {len(sim['truth']):,} items (overlap {args.overlap}), "
          f"{args.labelers:,} labelers, {int(sim['gold'].sum()):,} gold items")  # fmt: skip
    seconds: dict[str, float] = {}
    for db in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
        url, cleanup = sqlite_url() if db == "sqlite" else postgres_url()
        try:
            engine = make_engine(url)
            migrate.upgrade(engine)
            t0 = time.perf_counter()
            project_id = fill(engine, sim, args.labelers)
            print(f"{db}: seeded in {time.perf_counter() - t0:.1f} s")
            maker = make_sessionmaker(engine)
            with maker() as s:
                t0 = time.perf_counter()
                data.preferences(s, project_id)
                read = time.perf_counter() - t0
            with maker() as s:
                t0, c0 = time.perf_counter(), time.process_time()
                report = quality_report(s, project_id, bootstrap=args.bootstrap)
                seconds[db] = time.perf_counter() - t0
                cpu = time.process_time() - c0
            flagged = {f: sum(f in r["flags"] for r in report["labelers"])
                       for f in ("position_bias", "too_fast", "low_competence")}  # fmt: skip
            truly = {"position_bias": int((sim["kind"] == 1).sum()),
                     "too_fast": int((sim["kind"] == 2).sum())}  # fmt: skip
            print(
                f"{db}: quality report {seconds[db]:.2f} s ({cpu:.2f} s of this process's CPU; "
                f"reading the labels alone {read:.2f} s; {args.bootstrap} bootstrap rounds); "
                f"flagged {flagged}, simulated {truly}"
            )
            engine.dispose()
        finally:
            cleanup()

    # Dawid–Skene: ours on everything, then both on the subsample with the same iterations
    _, item = np.unique(sim["item"], return_inverse=True)
    t0 = time.perf_counter()
    ours = competence.fit(item, sim["labeler"], sim["choice"], item.max() + 1, args.labelers, 4)
    ours_s = time.perf_counter() - t0
    true_acc = np.where(sim["kind"] == 0, sim["accuracy"], np.nan)
    err = np.nanmax(np.abs(ours.reliability - true_acc))
    print(
        f"dawid-skene ours: {ours_s:.2f} s, {ours.iterations} iterations on {n:,} labels "
        f"(max |reliability - true accuracy| over careful labelers {err:.3f})"
    )
    sub = item < args.loop_items
    k = args.loop_iterations
    t0 = time.perf_counter()
    loop = loop_dawid_skene(item[sub], sim["labeler"][sub], sim["choice"][sub], args.labelers,
                            4, k)  # fmt: skip
    loop_s = time.perf_counter() - t0
    check = competence.fit(item[sub], sim["labeler"][sub], sim["choice"][sub], args.loop_items,
                           args.labelers, 4, max_iterations=k, tolerance=0)  # fmt: skip
    used = np.bincount(sim["labeler"][sub], minlength=args.labelers) > 0
    diff = np.abs(np.array(loop) - check.reliability)[used].max()
    scaled = loop_s * (n / sub.sum()) * (ours.iterations / k)
    print(
        f"dawid-skene python loop: {loop_s:.2f} s for {k} iterations on {int(sub.sum()):,} "
        f"labels -> scaled to {n:,} labels and {ours.iterations} iterations: {scaled:.1f} s "
        f"(same subsample, same iterations: max reliability difference {diff:.1e})"
    )
    for db, s in seconds.items():
        print(f"ratio {db} quality report seconds / 10 s goal: {s / 10:.2f}")
    print(f"ratio dawid-skene python loop / ours: {scaled / ours_s:.1f}")


if __name__ == "__main__":
    main()

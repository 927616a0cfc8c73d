"""Compare page latency in a real browser: submit key press to the next task on screen.

    python bench/ui.py                      # 10k queued tasks, 50 timed submits
    python bench/ui.py --tasks 10000 --submits 50 --warmup 3

A fresh SQLite database holds the demo accounts and one pairwise project with TASKS
unlabeled compare tasks (bulk-imported with labeling.importer, `candidates` format).
`rlhf serve` runs on a free port; headless Chromium (/usr/bin/chromium) logs in as the
demo labeler and opens Compare. For each task: press "a" (choose; not timed), then time
from the "Enter" key press (a keydown listener stamps performance.now() in the page) to the
next task being shown: the left answer's text changed and Streamlit's script state is back
to notRunning (also stamped in the page, polled every animation frame).

Baseline, in the same run and on the same database: the same work without the browser and
Streamlit (labeling.labeler_views.submit_compare, which records the label and claims the
next task, in one transaction per submit, as the page's callback does), for another
labeler. The UI figure over the baseline is the cost of the UI round trip.

Printed last: median and p95 in ms, their ratios, and the goal line (median < 500 ms).
Absolute times on a shared 2-core machine are noise; the goal is about a person's feel.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

# Run as `python bench/ui.py`, this folder comes first on sys.path, and bench/queue.py would
# shadow the standard library's `queue` module: put the repository root there instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from labeling import demo, migrate, projects  # noqa: E402
from labeling import labeler_views as lv  # noqa: E402
from labeling.db import make_engine, make_sessionmaker  # noqa: E402
from labeling.importer import import_rows  # noqa: E402
from labeling.models import Preference, Task, User  # noqa: E402
from tests.browser.conftest import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    LABELER,
    _stop,
    login,
    start_server,
    wait_idle,
)

PROJECT = "a-bench-ui"  # sorts first: the Compare page opens on it
GOAL_MEDIAN_MS = 500

# Resolves with performance.now() once the left answer differs from `before`, is not stale,
# and the script is idle; polled every animation frame by wait_for_function.
_SHOWN_JS = """
(before) => {
    const app = document.querySelector('[data-testid="stApp"]');
    const el = document.querySelector('.st-key-answer-a');
    if (!app || !el || el.closest('[data-stale="true"]')) return false;
    if (app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (el.innerText === before) return false;
    return performance.now();
}
"""
_STAMP_KEYS_JS = """
() => {
    window.__rlhfKeyAt = null;
    if (!window.__rlhfStamp) {
        window.__rlhfStamp = true;
        window.addEventListener('keydown', e => {
            if (e.key === 'Enter') window.__rlhfKeyAt = performance.now();
        }, true);
    }
}
"""


def fill(url: str, n_tasks: int) -> tuple[float, int]:
    """Migrate, seed the demo, import n_tasks compare tasks; returns (seconds, project id)."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    Session = make_sessionmaker(engine)  # noqa: N806
    t0 = time.perf_counter()
    with Session.begin() as s:
        demo.seed(s)
        project = projects.create_project(s, name=PROJECT, kind="pairwise", overlap=1)
        rows = (
            {
                "prompt": f"Bench question {i}: which answer is better?",
                "responses": [f"Left answer for task {i}.", f"Right answer for task {i}."],
            }
            for i in range(n_tasks)
        )
        result = import_rows(s, project=project, rows=rows, format="candidates")
        project_id = project.id
    seconds = time.perf_counter() - t0
    engine.dispose()
    print(f"filled: {n_tasks} compare tasks in {seconds:.1f} s ({result.as_dict()})")
    return seconds, project_id


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def measure_ui(server, n_submits: int, warmup: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    times: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(30_000)
            page = context.new_page()
            login(page, server, *LABELER)
            page.locator(".st-key-answer-a").first.wait_for()
            page.evaluate("() => document.activeElement && document.activeElement.blur()")
            for i in range(warmup + n_submits):
                before = page.locator(".st-key-answer-a").first.inner_text()
                page.keyboard.press("a")
                wait_idle(page, settle_ms=150)
                page.evaluate(_STAMP_KEYS_JS)
                page.keyboard.press("Enter")
                shown_at = page.wait_for_function(
                    _SHOWN_JS, arg=before, polling="raf", timeout=30_000
                ).json_value()
                pressed_at = page.evaluate("() => window.__rlhfKeyAt")
                if i >= warmup:
                    times.append(shown_at - pressed_at)
                wait_idle(page, settle_ms=150)
        finally:
            browser.close()
    return times


def measure_direct(url: str, project_id: int, n_submits: int) -> list[float]:
    """The same submit + next claim, called directly (no browser, no Streamlit)."""
    engine = make_engine(url)
    Session = make_sessionmaker(engine)  # noqa: N806
    with Session() as s:
        user_id = s.scalar(select(User.id).where(User.name == "labeler2"))
    with Session.begin() as s:
        view = lv.open_task(s, user_id=user_id, project_id=project_id)
    times = []
    for _ in range(n_submits):
        t0 = time.perf_counter()
        with Session.begin() as s:
            outcome = lv.submit_compare(
                s, assignment_id=view.assignment_id, user_id=user_id, screen_choice="a",
                strength=2, idempotency_key=uuid.uuid4().hex,
            )  # fmt: skip
            view = outcome.next
        times.append((time.perf_counter() - t0) * 1000)
    engine.dispose()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--submits", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3, help="untimed submits first")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        print(f"error: needs Chromium at {CHROMIUM}", file=sys.stderr)
        return 1

    folder = Path(tempfile.mkdtemp(prefix="rlhf_bench_ui_"))
    url = f"sqlite:///{folder / 'bench.db'}"
    server = None
    try:
        _, project_id = fill(url, args.tasks)
        t0 = time.perf_counter()
        server = start_server(folder / "bench.db", folder / "home", folder / "serve.log")
        print(f"server: {server.url} healthy after {time.perf_counter() - t0:.1f} s")
        ui = measure_ui(server, args.submits, args.warmup)
        direct = measure_direct(url, project_id, args.submits)
        with server.Session() as s:
            labels = s.scalar(
                select(func.count(Preference.id))
                .join(Task, Task.id == Preference.task_id)
                .where(Task.project_id == project_id)
            )
        expected = args.warmup + 2 * args.submits
        print(f"labels written: {labels} (expected {expected})")
    finally:
        if server is not None:
            _stop(server.process)
            server.Session.kw["bind"].dispose()
        shutil.rmtree(folder, ignore_errors=True)

    ui_med, ui_p95 = statistics.median(ui), percentile(ui, 0.95)
    d_med, d_p95 = statistics.median(direct), percentile(direct, 0.95)
    print(f"queue: {args.tasks} compare tasks; {args.submits} timed submits each")
    print(f"direct submit+claim (no UI):  median {d_med:7.1f} ms   p95 {d_p95:7.1f} ms")
    print(f"browser Enter -> next task:   median {ui_med:7.1f} ms   p95 {ui_p95:7.1f} ms")
    print(f"browser min {min(ui):.1f} ms, max {max(ui):.1f} ms")
    print(
        f"ratio browser / direct:       median {ui_med / d_med:5.1f}x   p95 {ui_p95 / d_p95:5.1f}x"
    )
    print(f"ratio median / goal:          {ui_med / GOAL_MEDIAN_MS:.2f} (<= 1.00 meets the goal)")
    print(f"goal: median < {GOAL_MEDIAN_MS} ms: {'met' if ui_med < GOAL_MEDIAN_MS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

"""Browser tests: a real `rlhf serve` (Streamlit) on a fresh SQLite file, driven by Playwright
with Debian's Chromium (/usr/bin/chromium; never `playwright install`).

Each test gets its own server on a free port and its own database (a copy of a migrated,
demo-seeded template, plus whatever the test adds), so the tests run under pytest-xdist.
One headless Chromium per worker process; a fresh browser context (cookies, storage) per
test. Screenshots of what each test saw go to test-artifacts/screenshots/.

    def test_something(serve, new_page):
        server = serve(extra=lambda s: ...)          # seed more rows, start the server
        page = new_page()
        login(page, server, "labeler", "demo-labeler")
        ...
        with server.Session() as s: ...              # assert on the database
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

CHROMIUM = Path(os.environ.get("RLHF_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
STARTUP_TIMEOUT_S = 60
DEFAULT_TIMEOUT_MS = 15_000

# The demo accounts (labeling.demo.ACCOUNTS).
ADMIN = ("admin", "demo-admin-pw")
LABELER = ("labeler", "demo-labeler")
LABELER2 = ("labeler2", "demo-labeler2")


def pytest_configure(config) -> None:
    # Also listed in pyproject.toml; registered here too so --strict-markers never trips.
    config.addinivalue_line("markers", "browser: drives the app in Chromium (Playwright)")


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests need the playwright Python package (pip install -e '.[dev]')"
    return None


SKIP_REASON = _skip_reason()


# --- the database and the server ----------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory) -> Path:
    """A migrated SQLite file holding the demo accounts and projects (copied per test)."""
    from labeling import demo, migrate
    from labeling.db import make_engine, make_sessionmaker

    path = tmp_path_factory.mktemp("browser-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    with make_sessionmaker(engine).begin() as s:
        demo.seed(s)
    engine.dispose()  # the last connection checkpoints the WAL into the file
    return path


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    port: int
    Session: sessionmaker[Session]
    process: subprocess.Popen
    log: Path
    allowed_origins: tuple[str, ...] = field(default=())

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _wait_healthy(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"rlhf serve exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as resp:
                body = resp.read().decode(errors="replace").strip()
                if resp.status == 200 and body == "ok":
                    return
                last = f"{resp.status} {body!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"rlhf serve not healthy after {timeout_s} s ({last}):\n{server.log_tail()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)  # its own process group (start_new_session)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start_server(
    db_path: Path, home: Path, log: Path, *, user: str = "admin", attempts: int = 3
) -> Server:
    """`rlhf serve --port <free port>` on this database; returns once /_stcore/health is ok."""
    from labeling.db import make_engine, make_sessionmaker

    url = f"sqlite:///{db_path}"
    env = {
        **os.environ,
        "RLHF_HOME": str(home),
        "RLHF_DATABASE_URL": url,
        "RLHF_USER": user,
        "PYTHONUNBUFFERED": "1",
    }
    rlhf = Path(sys.executable).parent / "rlhf"
    base = [str(rlhf)] if rlhf.exists() else [sys.executable, "-m", "app.cli.main"]
    error: Exception | None = None
    for _ in range(attempts):  # a free port can be taken between our check and the bind
        port = free_port()
        with open(log, "ab") as out:
            process = subprocess.Popen(
                [*base, "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        server = Server(
            url=f"http://127.0.0.1:{port}",
            port=port,
            Session=make_sessionmaker(make_engine(url)),
            process=process,
            log=log,
            allowed_origins=(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"),
        )
        try:
            _wait_healthy(server, STARTUP_TIMEOUT_S)
            return server
        except RuntimeError as exc:
            error = exc
            _stop(process)
            server.Session.kw["bind"].dispose()
            if "already in use" not in server.log_tail():
                break
    raise error  # type: ignore[misc]


@pytest.fixture
def serve(tmp_path, seeded_template) -> Iterator[Callable[..., Server]]:
    """serve(extra=fn) -> Server: a fresh copy of the demo database, `fn(session)` run on it
    in one transaction (add projects, tasks...), then `rlhf serve` started on it."""
    servers: list[Server] = []

    def start(extra: Callable[[Session], object] | None = None) -> Server:
        from labeling.db import make_engine, make_sessionmaker

        n = len(servers)
        db_path = tmp_path / f"rlhf{n}.db"
        shutil.copy(seeded_template, db_path)
        if extra is not None:
            engine = make_engine(f"sqlite:///{db_path}")
            with make_sessionmaker(engine).begin() as s:
                extra(s)
            engine.dispose()
        server = start_server(db_path, tmp_path / "home", tmp_path / f"serve{n}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        _stop(server.process)
        server.Session.kw["bind"].dispose()


# --- the browser --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@dataclass
class Watch:
    """What a page did that a person would not see: dialogs opened, requests sent."""

    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def foreign_requests(self, allowed_origins: tuple[str, ...]) -> list[str]:
        ok = tuple(o + "/" for o in allowed_origins)
        return [
            url
            for url in self.requests
            if not (url.startswith(ok) or url in allowed_origins)
            and not url.startswith(("data:", "blob:"))
        ]


def _watch(page, watch: Watch) -> None:
    def on_dialog(dialog) -> None:
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda request: watch.requests.append(request.url))
    page.on("websocket", lambda ws: watch.requests.append(ws.url))
    page.on(
        "console",
        lambda msg: watch.console_errors.append(msg.text) if msg.type == "error" else None,
    )


@pytest.fixture
def new_page(browser, request) -> Iterator[Callable[[], object]]:
    """new_page() -> a Page in a fresh browser context (a separate person); each page has
    `.watch` (dialogs, requests) and is screenshotted at the end of the test."""
    contexts, pages = [], []

    def make():
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(DEFAULT_TIMEOUT_MS)
        page.set_default_navigation_timeout(DEFAULT_TIMEOUT_MS)
        page.watch = Watch()
        _watch(page, page.watch)
        page.shot_prefix = f"{_safe(request.node.name)}" + (f"-p{len(pages) + 1}" if pages else "")
        page.shot_count = 0
        pages.append(page)
        return page

    yield make
    for page in pages:
        try:
            shot(page, "end")
        except Exception:  # noqa: BLE001 - a failed screenshot must not hide the real failure
            pass
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page):
    return new_page()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]


def shot(page, label: str) -> Path:
    """Save a screenshot as test-artifacts/screenshots/<test>-<n>-<label>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.shot_count += 1
    path = SCREENSHOTS / f"{page.shot_prefix}-{page.shot_count:02d}-{_safe(label)}.png"
    page.screenshot(path=str(path), full_page=True, timeout=DEFAULT_TIMEOUT_MS)
    return path


# --- helpers for the tests ----------------------------------------------------------------

_IDLE_JS = """
([settleMs, token]) => {
    const app = document.querySelector('[data-testid="stApp"]');
    const now = performance.now();
    const idle = !!app
        && app.getAttribute('data-test-script-state') === 'notRunning'
        && app.getAttribute('data-test-connection-state') === 'CONNECTED'
        && !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')
        && !document.querySelector('[data-testid="stStatusWidgetRunningManIcon"]')
        && !document.querySelector('[data-stale="true"]')
        && !document.querySelector('[data-testid="stSkeleton"]');
    if (window.__rlhfIdleToken !== token) { window.__rlhfIdleToken = token; window.__rlhfIdleSince = null; }
    if (!idle) { window.__rlhfIdleSince = null; return false; }
    if (window.__rlhfIdleSince == null) window.__rlhfIdleSince = now;
    return now - window.__rlhfIdleSince >= settleMs;
}
"""
_idle_calls = 0


def wait_idle(page, *, settle_ms: int = 250, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
    """Wait until the Streamlit script is not running, the websocket is connected and no
    element is stale, continuously for `settle_ms` (a key press reaches the server a few
    milliseconds after it happens, so "idle right now" alone could be the state before it)."""
    global _idle_calls
    _idle_calls += 1
    page.wait_for_function(_IDLE_JS, arg=[settle_ms, _idle_calls], polling=50, timeout=timeout_ms)


def no_exception(page) -> None:
    """Fail with the app's own traceback when a page raised (st.exception box)."""
    boxes = page.locator('[data-testid="stException"]')
    if boxes.count():
        raise AssertionError(f"the app raised on {page.url}:\n{boxes.first.inner_text()[:3000]}")


def goto(page, server: Server, path: str = "") -> None:
    """A full page load (a new Streamlit session: st.session_state starts empty)."""
    page.goto(f"{server.url}/{path.lstrip('/')}", wait_until="domcontentloaded")
    page.wait_for_selector('[data-testid="stApp"]')
    wait_idle(page)
    no_exception(page)


def main_area(page):
    return page.locator('[data-testid="stMain"]')


def sidebar(page):
    return page.locator('[data-testid="stSidebar"]')


def login(page, server: Server, name: str, password: str, *, expect_ok: bool = True) -> None:
    """Fill in the login form (loading the app first if this page shows none)."""
    if not page.url.startswith(server.url):
        goto(page, server)
    else:
        wait_idle(page)
    close_notice(page)
    if is_logged_in(page):
        log_out(page)
    main = main_area(page)
    main.get_by_role("textbox", name="User name").fill(name)
    main.get_by_role("textbox", name="Password").fill(password)
    main.get_by_role("button", name="Log in").click()
    wait_idle(page)
    no_exception(page)
    if expect_ok:
        sidebar(page).get_by_text("Signed in as").wait_for(state="visible")
        wait_for_session_cookie(page)


def wait_for_session_cookie(page, timeout: float = 15.0) -> None:
    """After a login the page hands the token to the server, which sets the HttpOnly cookie a
    reload needs; a test that reloads at once must not outrun it (nor may the app drop it)."""
    from app.ui.web_security import COOKIE

    deadline = time.monotonic() + timeout
    while not any(c["name"] == COOKIE for c in page.context.cookies()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {COOKIE} cookie {timeout:.0f} s after logging in")
        page.wait_for_timeout(100)


def close_notice(page) -> None:
    """Close a modal notice (Streamlit's "Page not found", for one) that blocks the page."""
    dialog = page.locator('[role="dialog"]')
    if dialog.count() and dialog.first.is_visible():
        page.keyboard.press("Escape")
        dialog.first.wait_for(state="hidden")
        wait_idle(page)


def log_out(page) -> None:
    sidebar(page).get_by_role("button", name="Log out").click()
    main_area(page).get_by_role("button", name="Log in").wait_for(state="visible")
    wait_idle(page)


def is_logged_in(page) -> bool:
    return sidebar(page).get_by_text("Signed in as").count() > 0


def open_page(page, title: str) -> None:
    """Go to a page the way a person does: its link in the sidebar (keeps the session)."""
    link = page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True)
    link.click()
    page.wait_for_function(
        "el => el.getAttribute('aria-current') === 'page'", arg=link.element_handle()
    )
    wait_idle(page)
    no_exception(page)


def nav_titles(page) -> list[str]:
    """The page titles the sidebar offers."""
    links = page.locator('[data-testid="stSidebarNav"] [data-testid="stSidebarNavLink"]')
    return [
        t.strip()
        for t in links.evaluate_all(
            "els => els.map(e => (e.querySelector('span[label]') || e).getAttribute('label') || e.innerText)"
        )
    ]

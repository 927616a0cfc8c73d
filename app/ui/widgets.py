"""Pieces the labeler pages share: project choice, the task on screen, skip/flag, the
counter, and the autosaving answer editor (a tiny st.components.v2 component).

Session state holds only ids and plain values (app.ui.state); every database call goes
through labeling.labeler_views inside one transaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import streamlit as st

from app.ui import render, state
from app.ui.actions import flash
from app.ui.db import transaction
from labeling import labeler_views as lv
from labeling.errors import RLHFError
from labeling.kinds import with_article
from labeling.models import ProjectKind, Role

FLAG_REASONS = {
    "unsafe": "Unsafe",
    "unanswerable": "Unanswerable",
    "personal_data": "Contains personal data",
}

# --- project choice -----------------------------------------------------------------------


def pick_project(page: str, kinds: tuple[ProjectKind, ...]) -> lv.ProjectInfo | None:
    """A "Project" selectbox when there is more than one; the choice is remembered per page.
    The guidelines (admin-written Markdown, still rendered inertly) go in the sidebar."""
    with transaction() as s:
        choices = lv.labeler_projects(s, kinds)
    if not choices:
        return None
    key = f"{state.PROJECT_ID}:{page}"
    ids = [p.id for p in choices]
    if st.session_state.get(key) not in ids:
        st.session_state[key] = ids[0]
    if len(choices) > 1:
        names = {p.id: p.name for p in choices}
        st.selectbox(
            "Project", ids, format_func=names.__getitem__, key=key, on_change=_project_changed
        )
        # After a pick the selectbox keeps the focus, so "a" then Enter would type into it
        # instead of labeling: the component blurs it once per change.
        _blur_selectbox(key="project-blur", data={"rev": st.session_state.get(_BLUR_REV, 0)})
    project = next(p for p in choices if p.id == st.session_state[key])
    with st.sidebar:
        with st.expander("Guidelines", expanded=True, icon=":material/menu_book:"):
            render.untrusted(project.guidelines or "No guidelines for this project.")
    return project


_BLUR_REV = "project_blur_rev"
_BLUR_JS = """
export default function(component) {
  const rev = String((component.data && component.data.rev) || 0);
  if (rev === "0" || window.__rlhfProjectBlurRev === rev) return;
  window.__rlhfProjectBlurRev = rev;
  const el = document.activeElement;
  if (el && el.closest && el.closest('[data-testid="stSelectbox"]')) el.blur();
}
"""
_blur_selectbox = st.components.v2.component("rlhf_project_blur", html="<span></span>", js=_BLUR_JS)


def pick_waiting_project(waiting: list[tuple[str, int]], key: str, what: str) -> str:
    """A selectbox of the projects with something waiting for people ((name, count) pairs,
    never empty): "facts (12 to judge)". The pick is remembered under `key`."""
    counts = dict(waiting)
    names = list(counts)
    if st.session_state.get(key) not in names:
        st.session_state[key] = names[0]
    return st.selectbox(
        "Project", names, key=key, format_func=lambda n: f"{n} ({counts[n]} {what})"
    )


def _project_changed() -> None:
    st.session_state[_BLUR_REV] = st.session_state.get(_BLUR_REV, 0) + 1


# --- the task on screen -------------------------------------------------------------------


def start_form(assignment_id: int | None) -> None:
    """A new task is on screen: fresh idempotency key, clock, and choices."""
    st.session_state[state.ASSIGNMENT_ID] = assignment_id
    st.session_state[state.SUBMIT_KEY] = uuid.uuid4().hex
    st.session_state[state.SHOWN_AT] = time.monotonic()
    st.session_state[state.CHOICE] = None
    st.session_state[state.STRENGTH] = 2
    st.session_state.pop(state.EDITOR_REV, None)
    st.session_state.pop(state.SAVED_TEXT, None)


def _start_labeling(project_id: int) -> None:
    st.session_state[state.STAFF_LABELING] = {*st.session_state.get(state.STAFF_LABELING, ()),
                                              project_id}  # fmt: skip


def current_task(user, project_id: int) -> lv.TaskView | None:
    """The leased task (a plain read on reruns), or the next claim. An admin or engineer
    opening the page claims nothing until they press "Start labeling" (their own live lease
    is shown as it is): looking must not take items from labelers' queues."""
    user_id = user.id
    role = Role(user.role)
    if role != Role.labeler and project_id not in st.session_state.get(state.STAFF_LABELING, ()):
        with transaction() as s:
            view = lv.held_task(s, user_id=user_id, project_id=project_id)
        if view is None:
            st.info(
                f"You are {with_article(role.value)}: "
                "opening this page takes no items from the labelers' queues.",
                icon=":material/visibility:",
            )
            st.button("Start labeling", key="start-labeling", type="primary",
                      on_click=_start_labeling, args=(project_id,))  # fmt: skip
            st.stop()
        _start_labeling(project_id)  # already holding one: carry on as a labeler would
    try:
        with transaction() as s:
            view = lv.open_task(
                s,
                user_id=user_id,
                project_id=project_id,
                assignment_id=st.session_state.get(state.ASSIGNMENT_ID),
            )
    except RLHFError as exc:
        st.error(render.inert_markdown(str(exc)))
        st.stop()
    if view is None:
        st.session_state[state.ASSIGNMENT_ID] = None
    elif view.assignment_id != st.session_state.get(state.ASSIGNMENT_ID):
        start_form(view.assignment_id)
    return view


def time_spent_ms() -> int | None:
    shown = st.session_state.get(state.SHOWN_AT)
    return None if shown is None else max(0, int((time.monotonic() - shown) * 1000))


def advance(user_id: int, project_id: int, call: Callable, **kwargs) -> lv.Outcome | None:
    """Run one labeler action (a labeler_views submit, skip or flag) in one transaction,
    flash its outcome and put the next task on screen (callbacks)."""
    try:
        with transaction() as s:
            outcome = call(s, user_id=user_id, **kwargs)
    except RLHFError as exc:
        flash("error", str(exc))
        return None
    if not outcome.accepted:
        flash("warning", outcome.message)
    elif outcome.message:
        flash("success", outcome.message)
    if outcome.accepted and not outcome.duplicate and call in SUBMITS:
        _bump_counter(project_id)
    start_form(outcome.next.assignment_id if outcome.next else None)
    return outcome


SUBMITS = (lv.submit_compare, lv.submit_write, lv.submit_rank)


def skip_and_flag(user_id: int, project_id: int, assignment_id: int) -> None:
    """The Skip button (shortcut S) and the Flag popover, side by side."""
    left, right = st.columns(2)
    left.button(
        "Skip",
        key="skip",
        shortcut="s",
        icon=":material/skip_next:",
        on_click=advance,
        args=(user_id, project_id, lv.skip_task),
        kwargs={"assignment_id": assignment_id},
        width="stretch",
    )
    with right.popover("Flag", icon=":material/flag:", width="stretch"):
        st.radio(
            "Reason",
            list(FLAG_REASONS),
            format_func=FLAG_REASONS.get,
            key=f"flag-reason-{assignment_id}",
        )
        st.text_input("Note (optional)", key=f"flag-note-{assignment_id}")
        st.button(
            "Send flag",
            key="flag-send",
            on_click=_send_flag,
            args=(user_id, project_id, assignment_id),
        )


def _send_flag(user_id: int, project_id: int, assignment_id: int) -> None:
    # read in the callback: the radio and note are current here, even if just edited
    reason = st.session_state.get(f"flag-reason-{assignment_id}") or "unanswerable"
    note = (st.session_state.get(f"flag-note-{assignment_id}") or "").strip() or None
    advance(
        user_id, project_id, lv.flag_task, assignment_id=assignment_id, reason=reason, note=note
    )


# --- the counter --------------------------------------------------------------------------


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def done_today(user_id: int, project_id: int) -> int:
    """Counted once per project and day, then kept up to date by this session's submits."""
    cached = st.session_state.get(state.DONE_TODAY)
    if not cached or cached[0] != project_id or cached[1] != _today():
        with transaction() as s:
            count = lv.done_today(s, user_id=user_id, project_id=project_id)
        cached = (project_id, _today(), count)
        st.session_state[state.DONE_TODAY] = cached
    return cached[2]


def _bump_counter(project_id: int) -> None:
    cached = st.session_state.get(state.DONE_TODAY)
    if cached and cached[0] == project_id and cached[1] == _today():
        st.session_state[state.DONE_TODAY] = (project_id, cached[1], cached[2] + 1)


def queue_state(user_id: int, project_id: int) -> lv.QueueState:
    with transaction() as s:
        return lv.queue_state(s, user_id=user_id, project_id=project_id)


def counter(user_id: int, project_id: int, queue: lv.QueueState | None = None) -> None:
    queue = queue or queue_state(user_id, project_id)
    st.caption(
        f":material/check_circle: {done_today(user_id, project_id)} done today · "
        f"{queue.left} of {queue.total} left"
    )


def empty_queue(user_id: int, project_id: int) -> None:
    queue = queue_state(user_id, project_id)
    if queue.held_by_others:
        n = queue.held_by_others
        st.info(
            f"{n} item{'s are' if n != 1 else ' is'} being labeled by others right now; "
            "check back soon (an item comes back when its lease lapses or it is skipped).",
            icon=":material/hourglass_top:",
        )
    else:
        st.info("Nothing left to label in this project.", icon=":material/done_all:")
    counter(user_id, project_id, queue)


# --- the autosaving answer editor ---------------------------------------------------------

_EDITOR_HTML = '<textarea aria-label="Your answer" spellcheck="true"></textarea>'
_EDITOR_CSS = """
textarea {
  box-sizing: border-box; width: 100%; min-height: 320px; resize: vertical;
  padding: 0.75rem; font: inherit; font-family: var(--st-font, sans-serif);
  line-height: 1.5; color: var(--st-text-color); background: var(--st-secondary-background-color);
  border: 1px solid var(--st-border-color, #ccc); border-radius: 0.5rem;
}
textarea:focus { outline: 2px solid var(--st-primary-color); }
"""
# The text is untrusted: it is only ever assigned with `.value`, never as HTML. A new `rev`
# (a new task, or a model answer copied in) replaces what is in the box; otherwise a rerun
# leaves the labeler's typing alone. Typing is reported after 700 ms of quiet, on blur, and
# at once before Ctrl/Cmd+Enter submits.
_EDITOR_JS = """
export default function(component) {
  const { data, setStateValue, setTriggerValue, parentElement } = component;
  const area = parentElement.querySelector("textarea");
  const rev = String(data && data.rev !== undefined ? data.rev : 0);
  if (area.dataset.rev !== rev) {
    area.value = (data && typeof data.text === "string") ? data.text : "";
    area.dataset.rev = rev;
    area.dataset.sent = area.value;
  }
  area.placeholder = (data && data.placeholder) || "";
  const send = () => {
    if (area._timer) { clearTimeout(area._timer); area._timer = null; }
    if (area.value !== area.dataset.sent) {
      area.dataset.sent = area.value;
      setStateValue("text", area.value);
    }
  };
  area.oninput = () => {
    if (area._timer) clearTimeout(area._timer);
    area._timer = setTimeout(send, 700);
  };
  area.onblur = send;
  area.onkeydown = (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      e.stopPropagation();
      send();
      setTriggerValue("submit", area.value);
    }
  };
  window.addEventListener("beforeunload", send);
  return () => { window.removeEventListener("beforeunload", send); send(); };
}
"""
_editor = st.components.v2.component(
    "rlhf_answer_editor", html=_EDITOR_HTML, css=_EDITOR_CSS, js=_EDITOR_JS
)


def editor_key(assignment_id: int) -> str:
    return f"answer-editor-{assignment_id}-{st.session_state.get(state.EDITOR_REV, 0)}"


def answer_editor(assignment_id: int, initial: str, placeholder: str = "") -> tuple[str, bool]:
    """The text area; returns (current text, whether Ctrl+Enter asked to submit)."""
    key = editor_key(assignment_id)
    with st.container(key="answer-editor"):
        result = _editor(
            key=key,
            data={"text": initial, "rev": key, "placeholder": placeholder},
            default={"text": initial},
            on_text_change=lambda: None,
            on_submit_change=lambda: None,
        )
    text = result.text if isinstance(result.text, str) else initial
    submit = result.submit is not None
    if submit and isinstance(result.submit, str):
        text = result.submit
    return text, submit


def editor_text(assignment_id: int) -> str | None:
    """The editor's latest text, read in a callback (the widget state is current there)."""
    value = st.session_state.get(editor_key(assignment_id))
    if value is None:
        return None
    text = value.get("text") if hasattr(value, "get") else getattr(value, "text", None)
    return text if isinstance(text, str) else None


def replace_editor_text(assignment_id: int) -> None:
    """A new editor instance (new key, new rev) so the box shows text set from Python."""
    st.session_state[state.EDITOR_REV] = st.session_state.get(state.EDITOR_REV, 0) + 1

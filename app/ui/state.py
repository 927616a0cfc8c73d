"""Every st.session_state key the UI uses, in one place. Values are plain ids and strings:
no ORM objects, nothing shared between users."""

USER_ID = "user_id"  # the logged-in account's id; its role is re-read from the database
PROJECT_ID = "project_id"  # the project the labeler is working in
ASSIGNMENT_ID = "assignment_id"  # the lease currently shown
CHOICE = "compare_choice"  # a, b, tie, both_bad picked but not yet submitted
STRENGTH = "compare_strength"  # 1, 2, 3
SUBMIT_KEY = "submit_key"  # idempotency key of the form on screen: a double click writes once
SHOWN_AT = "shown_at"  # monotonic time the current task appeared (time spent)
FLASH = "flash"  # one message to show after the next rerun
TOKEN = "session_token"  # the login token, looked up in the database on every rerun
LOGGED_OUT = "logged_out"  # set by logout: the old cookie must not log the session back in
COOKIE_READ = "cookie_read"  # the page load's cookie was looked at (it is read once, see auth)
COOKIE_PENDING = "cookie_pending"  # (token, component key) until the server stored it ("" clears)
SESSION_ENDED = "session_ended"  # the token died while the tab was open: say so at login
EDITOR_REV = "editor_rev"  # bumped when Python replaces the answer editor's text
SAVED_TEXT = "saved_text"  # the answer text last autosaved (only saves on change)
DONE_TODAY = "done_today"  # (project id, UTC date, count) for the "N done today" counter
ADMIN_PROJECT_ID = "admin_project_id"  # the project picked on the admin and engineer pages
SNAPSHOT_ID = "admin_snapshot_id"  # the snapshot shown in detail on the Snapshots page
RUN_ID = "admin_run_id"  # the run whose details and metrics the Runs page shows
STAFF_LABELING = "staff_labeling"  # project ids where an admin / engineer chose to label
REFUSED_TEXT = "refused_text"  # a written answer a late submit could not count, shown once
UNDO = "undo_offer"  # {project_id, task_id, until}: the last submit, undoable for a minute
RANK_ORDER = "rank_order"  # (assignment id, [screen positions picked, best first]) on Rank

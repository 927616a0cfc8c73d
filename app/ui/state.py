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
TOKEN = "session_token"  # the login token also kept in the browser's cookie
LOGGED_OUT = "logged_out"  # set by logout: the old cookie must not log the session back in

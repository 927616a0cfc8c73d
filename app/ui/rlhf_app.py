"""The ASGI app `rlhf serve` runs (`streamlit run app/ui/rlhf_app.py ...`): Streamlit's own
server for app/ui/main.py, plus the security headers and the HttpOnly session-cookie route
of app/ui/web_security.py. Streamlit finds `app` here and serves it with all its usual flags."""

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from app.ui.web_security import ROUTES, SecurityHeaders

app = st.App(
    Path(__file__).with_name("main.py"),
    routes=ROUTES,
    middleware=[Middleware(SecurityHeaders)],
)

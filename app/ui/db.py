"""The database for the UI: one engine per server process (not per user)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from sqlalchemy.orm import Session

from labeling.db import make_engine, make_sessionmaker


@st.cache_resource(show_spinner=False)
def _sessionmaker():
    # Shared by every session of this server: it holds connections, no user data.
    return make_sessionmaker(make_engine())


@contextmanager
def transaction() -> Iterator[Session]:
    """One user action, one transaction (commits on success)."""
    with _sessionmaker().begin() as session:
        yield session

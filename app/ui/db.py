"""The database for the UI: one engine per server process (not per user)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from sqlalchemy.orm import Session

from labeling.db import make_engine, make_sessionmaker
from labeling.errors import RLHFError, Unavailable, describe_failure
from labeling.settings import load_settings


@st.cache_resource(show_spinner=False)
def _sessionmaker():
    # Shared by every session of this server: it holds connections, no user data.
    return make_sessionmaker(make_engine())


@contextmanager
def transaction() -> Iterator[Session]:
    """One user action, one transaction (commits on success).

    A full disk or an unreachable database becomes `Unavailable`, an RLHFError, so the pages'
    usual error path shows one sentence instead of a traceback; the transaction is rolled
    back, so what the user saved before (drafts, labels) is untouched.
    """
    try:
        with _sessionmaker().begin() as session:
            yield session
    except RLHFError:
        raise
    except Exception as exc:
        message = describe_failure(exc, database_url=load_settings().database_url)
        if message is None:
            raise
        raise Unavailable(message) from exc

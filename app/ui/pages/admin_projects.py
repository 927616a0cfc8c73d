"""Placeholder: this page is being built."""

import streamlit as st

from app.ui import auth


def render() -> None:
    auth.require()
    st.info("Coming soon.")

"""The one renderer for untrusted text (labeler writing, model output, imported data).

Markdown and code blocks render, but inertly: no raw HTML, no images, no links, no LaTeX,
no Streamlit directives. Everything is escaped outside code; code stays verbatim.
Never call st.markdown(..., unsafe_allow_html=True) with such text anywhere else.
"""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})[^\n]*\n.*?(?:^(?P=fence)[ \t]*$|\Z)", re.M | re.S)
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
# Characters that start HTML, links, images, entities, LaTeX or Streamlit directives.
_ESCAPE = str.maketrans(
    {
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
        "[": "\\[",
        "]": "\\]",
        "$": "\\$",
        ":": "&#58;",
        "\\": "\\\\",
    }
)


def inert_markdown(text: str) -> str:
    """Markdown with everything that could fetch, link or run made into plain characters."""
    out: list[str] = []
    pos = 0
    for fence in _FENCE.finditer(text):
        out.append(_escape_inline(text[pos : fence.start()]))
        block = fence.group(0)
        if not block.endswith("\n"):
            block += "\n"
        # close an unterminated fence so it cannot swallow what we render after it
        opener = fence.group("fence")
        if not re.search(rf"^{re.escape(opener)}[ \t]*$", block.split("\n", 1)[1], re.M):
            block += opener + "\n"
        out.append(block)
        pos = fence.end()
    out.append(_escape_inline(text[pos:]))
    return "".join(out)


# Bare addresses that the Markdown renderer would turn into links after decoding escapes.
_AUTOLINK = re.compile(
    r"(?i)(?:\b(?:https?|ftp)://|\bwww\.|\bmailto:)[^\s<>()\[\]]*|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
)


def _escape_inline(text: str) -> str:
    out, pos = [], 0
    for span in _CODE_SPAN.finditer(text):
        out.append(_escape_plain(text[pos : span.start()]))
        out.append(span.group(0))
        pos = span.end()
    out.append(_escape_plain(text[pos:]))
    return "".join(out)


def _escape_plain(text: str) -> str:
    """Escape prose; show bare addresses as code, which no renderer turns into a link."""
    out, pos = [], 0
    for match in _AUTOLINK.finditer(text):
        out.append(text[pos : match.start()].translate(_ESCAPE))
        out.append(_as_code(match.group(0)))
        pos = match.end()
    out.append(text[pos:].translate(_ESCAPE))
    return "".join(out)


def _as_code(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence, pad = "`" * (longest + 1), " " if longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def untrusted(text: str, *, container: Any = None) -> None:
    """Show untrusted text as inert Markdown."""
    (container or st).markdown(inert_markdown(text or ""), unsafe_allow_html=False)


ROLE_NAMES = {"user": "user", "assistant": "assistant", "system": "system"}


def chat(messages: list[dict[str, str]]) -> None:
    """A conversation as chat bubbles; contents are untrusted."""
    for message in messages:
        role = ROLE_NAMES.get(message.get("role"), "user")
        with st.chat_message(role if role != "system" else "assistant", avatar=_avatar(role)):
            if role == "system":
                st.caption("system")
            untrusted(message.get("content", ""))


def _avatar(role: str) -> str:
    return {"user": ":material/person:", "assistant": ":material/smart_toy:"}.get(
        role, ":material/settings:"
    )

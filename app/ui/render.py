"""The one renderer for untrusted text (labeler writing, model output, imported data, names).

The text is parsed by a real CommonMark parser (markdown-it-py) and Markdown is written out
again from its syntax tree, so what the browser renders agrees with what was parsed:

- paragraphs, emphasis, headings, lists, block quotes and code keep their formatting;
- every character of prose is escaped, so nothing in it can be re-parsed as markup: no raw
  HTML, no links, images or reference definitions, no LaTeX (`$`), no Streamlit directives
  (`:red[...]`, `:material/...:`, `:smile:`), no tables;
- links and images are shown as the Markdown they were written as (`![alt](address)`), so
  a labeler sees exactly what a model wrote; bare addresses and e-mails, which Streamlit's
  GFM renderer would turn into links, are shown as inline code; raw HTML is shown as text;
- code keeps its content verbatim inside a fence longer than any backtick run in it, so no
  line of it can close the fence early;
- invisible characters (bidi controls, zero-width and other format characters) are shown
  as `<U+202E>`, never passed raw.

Time is linear: text with more markup characters than the parser handles quickly is shown
escaped line by line instead (formatting dropped, every character kept). Every result is
parsed once more and checked before it is returned (`live_markup`); anything that fails
the check falls back to that plain rendering.

Never call st.markdown(..., unsafe_allow_html=True) with such text anywhere else.
"""

from __future__ import annotations

import re
from typing import Any

import streamlit as st
from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.tree import SyntaxTreeNode

# Deeper nesting than this is not parsed (markdown-it would drop the rest of the text).
MAX_NESTING = 40
# markdown-it-py is linear but slow per line and per markup character (10-90 us each on a
# busy 2-core machine, `![` the worst), so text with more of them than this is rendered
# plain: a bound well under a second. A typical 2 kB answer has ~50 lines, ~300 characters.
LINE_BUDGET = 1_000
MARKUP_BUDGET = 3_000
_TERMINATORS = "!#$%&*+-:<=>@[\\]^_`{}~|"  # where markdown-it's rules start, and `|`

# Reference definitions stay on: they decide what the lines after them are. They are not
# shown (CommonMark shows them nowhere), and a reference link shows the address it resolved to.
_PARSER = MarkdownIt("commonmark", {"maxNesting": MAX_NESTING + 10})

# Format, control, separator and surrogate code points, plus the invisible fillers.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u034f\u061c\u0600-\u0605\u06dd\u070f\u0890\u0891"
    "\u08e2\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    "\u3164\ud800-\udfff\ufe00-\ufe0e\ufeff\uffa0\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f\U000e0100-\U000e01ef]"
)
# Escaped wherever they occur: the characters that start inline markup, block markup that
# may stand anywhere on a line, or a GFM table or strikethrough. The colon is written as an
# entity instead (Streamlit looks for ":material/" in the source text itself), and so are
# `<` and `>`, so that no tag-like text stands in the Markdown at all. The rest of
# ASCII punctuation is harmless mid-line (`!` needs `[`, `(` needs `](`...) and is left
# alone, which keeps the output small; `#`, `-`, `+` at a line start and `.`/`)` after a
# digit (headings, list markers) are escaped where they stand.
_ESCAPE = {ord(c): "\\" + c for c in "\\`*_[]&$~|="}
_ESCAPE.update({ord(":"): "&#58;", ord("<"): "&lt;", ord(">"): "&gt;"})
_LIST_NUMBER = re.compile(r"(?<=[0-9])(?=[.)])")
# Streamlit replaces :name: (emoji, icons, its logo) in text after decoding escapes: a word
# joiner after the first colon breaks the pattern without changing what is shown.
_SHORTCODE = re.compile(r":(?=[\w+-]+:)")
_WORD_JOINER = "\u2060"
# Words that GFM autolinks (www., http(s)://, e-mail) once escapes are decoded.
_BLANK = re.compile(r"[ \t\n]")
_LINKY = re.compile(r"(?i)://|www\.|[\w.+-]@[\w-]+\.[\w-]")
_LANG = re.compile(r"[\w+#.-]{1,40}")
_BACKTICKS = re.compile(r"`+")


def _visible(text: str) -> str:
    return _INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def _longest_backticks(text: str) -> int:
    return max(map(len, _BACKTICKS.findall(text)), default=0)


def code_span(text: str) -> str:
    """Inline code around `text`, verbatim: the fence is longer than any backtick run."""
    text = text.replace("\n", " ")
    if not text:
        return ""
    fence = "`" * (_longest_backticks(text) + 1)
    strips = text[0] == " " and text[-1] == " " and text.strip(" ")
    pad = " " if text[0] == "`" or text[-1] == "`" or strips else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _linky_words(text: str) -> list[tuple[str, str]]:
    """Prose split into ("prose", ...) and ("code", word) for the words GFM would link."""
    out: list[tuple[str, str]] = []
    pos = 0
    while hit := _LINKY.search(text, pos):
        # the whole blank-delimited word: GFM's autolink takes everything up to a blank
        start = max(pos, *(text.rfind(blank, pos, hit.start()) + 1 for blank in " \t\n"))
        after = _BLANK.search(text, hit.end())
        end = after.start() if after else len(text)
        out += [("prose", text[pos:start]), ("code", text[start:end])]
        pos = end
    out.append(("prose", text[pos:]))
    return out


def _assemble(parts: list[tuple[str, str]]) -> str:
    """Markdown from ("prose" | "code" | "raw", text) parts. Adjacent prose is escaped as one
    (a bare address split over two tokens is one text node in the browser), and adjacent
    code becomes one span: two spans side by side would make one longer backtick run."""
    merged: list[tuple[str, str]] = []
    run: list[str] = []
    for kind, text in parts + [("raw", "")]:
        if kind == "prose":
            run.append(text)
            continue
        if run:
            merged += _linky_words("".join(run))
            run = []
        merged.append((kind, text))
    out: list[str] = []
    code: list[str] = []
    for kind, text in merged:
        if kind == "code":
            code.append(text)
            continue
        if not text:
            continue
        if code:
            out.append(code_span("".join(code)))
            code = []
        out.append(_escape(text) if kind == "prose" else text)
    if code:
        out.append(code_span("".join(code)))
    return "".join(out)


def _escape_words(text: str) -> str:
    """Prose with markup characters escaped and linkable words shown as code."""
    return _assemble([("prose", text)])


def _escape(text: str) -> str:
    text = _SHORTCODE.sub(":" + _WORD_JOINER, text).translate(_ESCAPE)
    return _LIST_NUMBER.sub("\\\\", text)


def _line_start(line: str) -> str:
    """A line of prose: leading blanks dropped (they would make code), a heading or list
    marker escaped."""
    line = line.lstrip(" \t")
    return "\\" + line if line[:1] in ("#", "-", "+") else line


# --- inline ---------------------------------------------------------------------------------


class _Inline:
    """Markdown for one inline run: raw pieces we wrote, and prose that gets escaped."""

    def __init__(self, *, one_line: bool = False) -> None:
        self.parts: list[tuple[str, str]] = []  # (prose | code | raw, text)
        self.one_line = one_line

    def prose(self, text: str) -> None:
        if self.one_line:
            text = text.replace("\n", " ")
        self.parts.append(("prose", text))

    def code(self, text: str) -> None:
        self.parts.append(("code", text))

    def raw(self, markdown: str) -> None:
        self.parts.append(("raw", markdown))

    def markdown(self) -> str:
        return _assemble(self.parts)

    def walk(self, nodes: list[SyntaxTreeNode]) -> None:
        for node in nodes:
            kind = node.type
            if kind in ("text", "html_inline"):
                self.prose(node.content)
            elif kind == "code_inline":
                self.code(node.content)
            elif kind == "softbreak":
                self.raw(" " if self.one_line else "\n")
            elif kind == "hardbreak":
                self.raw(" " if self.one_line else "\\\n")
            elif kind in ("em", "strong"):
                mark = "*" if kind == "em" else "**"
                self.raw(mark)
                self.walk(node.children)
                self.raw(mark)
            elif kind == "link":
                self._link(node)
            elif kind == "image":  # its source as text: never fetched, the address in view
                self._source("!", _plain(node.children), node, "src")
            else:  # a token type we do not know: its text, escaped
                self.prose(node.content or _plain(node.children))

    def _link(self, node: SyntaxTreeNode) -> None:
        if node.markup == "autolink":  # <http://...>: the address as code between the brackets
            self.prose("<")
            self.code(_plain(node.children))
            self.prose(">")
            return
        self._source("", None, node, "href")

    def _source(self, bang: str, label: str | None, node: SyntaxTreeNode, attr: str) -> None:
        """A link or image shown as the Markdown it was written as, all of it escaped; an
        address in it that GFM would link becomes code with the rest of its word."""
        self.prose(bang + "[")
        if label is None:
            self.walk(node.children)
        else:
            self.prose(label)
        address = _PARSER.normalizeLinkText(str(node.attrs.get(attr, "")))
        title = str(node.attrs.get("title") or "")
        self.prose(f"]({address}" + (f' "{title}"' if title else "") + ")")


def _plain(nodes: list[SyntaxTreeNode]) -> str:
    out: list[str] = []
    for node in nodes:
        if node.type in ("text", "code_inline", "html_inline"):
            out.append(node.content)
        elif node.type in ("softbreak", "hardbreak"):
            out.append(" ")
        else:
            out.append(_plain(node.children))
    return "".join(out)


def _inline_lines(node: SyntaxTreeNode | None, *, one_line: bool = False) -> list[str]:
    run = _Inline(one_line=one_line)
    if node is not None:
        run.walk(node.children)
    return [_line_start(line) for line in run.markdown().split("\n")]


# --- blocks ---------------------------------------------------------------------------------

# Blocks that may follow a paragraph line directly (they interrupt it); anything else
# gets a blank line first. `---` is never written: under a paragraph it is a heading.
_INTERRUPTS = {"fence", "code_block", "blockquote", "heading", "hr"}


def _fence(content: str, lang: str = "") -> list[str]:
    fence = "`" * max(3, _longest_backticks(content) + 1)
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [fence + lang, *lines, fence]


def _block(node: SyntaxTreeNode) -> list[str]:
    kind = node.type
    if kind == "paragraph":
        return _inline_lines(node.children[0] if node.children else None)
    if kind == "heading":
        level = int(node.tag[1:]) if node.tag[1:].isdigit() else 1
        text = _inline_lines(node.children[0] if node.children else None, one_line=True)[0]
        return [("#" * level + " " + text).rstrip()]
    if kind in ("fence", "code_block"):
        words = (node.info or "").split()
        lang = words[0] if words and _LANG.fullmatch(words[0]) else ""
        return _fence(node.content, lang)
    if kind == "html_block":  # shown as the text it is, like inline HTML
        return _plain_markdown(node.content).split("\n")
    if kind == "hr":
        return ["***"]
    if kind == "blockquote":
        return [f"> {line}" if line else ">" for line in _blocks(node.children)]
    if kind in ("bullet_list", "ordered_list"):
        return _list(node)
    return _inline_lines(None) if not node.content else _fence(node.content)


def _starts_list_safely(node: SyntaxTreeNode) -> bool:
    # only a non-empty item interrupts a paragraph, and of ordered ones only a "1."
    first = node.children[0] if node.children else None
    if first is None or not first.children:
        return False
    return node.type == "bullet_list" or str(node.attrs.get("start", 1)) == "1"


def _blocks(nodes: list[SyntaxTreeNode], *, tight: bool = False) -> list[str]:
    lines: list[str] = []
    previous: SyntaxTreeNode | None = None
    for node in nodes:
        if previous is not None:
            joined = tight and (
                previous.type in ("heading", "hr", "fence", "code_block")
                or (
                    previous.type == "paragraph"
                    and (
                        node.type in _INTERRUPTS
                        or (node.type.endswith("_list") and _starts_list_safely(node))
                    )
                )
            )
            if not joined:
                lines.append("")
        lines.extend(_block(node))
        previous = node
    return lines


def _list(node: SyntaxTreeNode) -> list[str]:
    items = node.children
    tight = any(
        child.type == "paragraph" and child.hidden for item in items for child in item.children
    )
    start = str(node.attrs.get("start", 1))
    lines: list[str] = []
    for i, item in enumerate(items):
        if i and not tight:
            lines.append("")
        # every item repeats the first number: a counted-up one could grow past 9 digits,
        # which is no list marker, and the item's fenced code would be read as prose
        marker = (start if node.type == "ordered_list" else "") + (item.markup or "-")
        indent = " " * (len(marker) + 1)
        body = _blocks(item.children, tight=tight)
        if not body:
            lines.append(marker)
            continue
        lines.append(f"{marker} {body[0]}".rstrip() if body[0] else marker)
        lines.extend(f"{indent}{line}" if line else "" for line in body[1:])
    return lines


# --- the whole text -------------------------------------------------------------------------


def _plain_markdown(text: str) -> str:
    """Every line escaped, no structure: for text too deep or too big to parse quickly."""
    paragraphs, lines = [], []
    for line in text.split("\n"):
        if line.strip(" \t"):
            lines.append(line)
        elif lines:
            paragraphs.append(lines)
            lines = []
    if lines:
        paragraphs.append(lines)
    out = []
    for paragraph in paragraphs:
        escaped = _escape_words("\n".join(paragraph)).split("\n")
        # a hard line break (backslash, newline) after each line: the text's own are escaped
        out.append("\\\n".join(_line_start(line) for line in escaped))
    return "\n\n".join(out)


def _too_big(text: str) -> bool:
    if text.count("\n") > LINE_BUDGET:
        return True
    # brackets cost the parser most (link and image labels): they count extra
    markup = sum(map(text.count, _TERMINATORS)) + len(_LIST_NUMBER.findall(text))
    markup += text.count("[") + 4 * text.count("![")
    return markup > MARKUP_BUDGET


def inert_markdown(text: str) -> str:
    """Markdown with everything that could fetch, link or run made into plain characters."""
    text = _visible((text or "").replace("\r\n", "\n").replace("\r", "\n"))
    if _too_big(text):
        return _plain_markdown(text)
    tokens = _PARSER.parse(text)
    if any(token.level >= MAX_NESTING for token in tokens):
        return _plain_markdown(text)
    out = "\n".join(_blocks(SyntaxTreeNode(tokens).children)).strip("\n")
    if live_markup(out):  # belt and braces: never seen, but never shown either
        return _plain_markdown(text)
    return out


def inline(text: str) -> str:
    """One line of inert Markdown for a short untrusted string (a name) inside other text."""
    run = _Inline(one_line=True)
    run.prose(_visible(str(text or "")).replace("\r", " "))
    return _line_start(run.markdown())  # it may start a line of the Markdown around it


# --- the check ------------------------------------------------------------------------------

_CHECKER = MarkdownIt("commonmark", {"maxNesting": 10_000})


def _flag(name: str, pattern: str):
    """An inline rule that turns an unescaped trigger character into a `name` token."""
    compiled = re.compile(pattern)

    def rule(state: StateInline, silent: bool) -> bool:
        if not compiled.match(state.src, state.pos):
            return False
        if not silent:
            state.push(name, "", 0).content = state.src[state.pos]
        state.pos += 1
        return True

    return rule


# after "escape" and "backticks": an escaped `$` or code is never seen by these rules
_CHECKER.inline.ruler.after("backticks", "math", _flag("math", r"\$"))
_CHECKER.inline.ruler.after("math", "directive", _flag("directive", r":"))
_LIVE_TOKENS = {"html_block", "html_inline", "image", "link_open", "math", "directive"}
_LIVE_TEXT = re.compile(r"(?i)https?://|www\.|[\w.+-]@[\w-]+\.[\w-]|:[\w+-]+:")


def live_markup(markdown: str) -> list[str]:
    """What in `markdown` a GFM renderer with Streamlit's extensions would make live: raw
    HTML, links, images, math, directives, and text it autolinks or turns into icons."""
    found: list[str] = []
    for token in _CHECKER.parse(markdown):
        for child in [token, *(token.children or ())]:
            if child.type in _LIVE_TOKENS:
                found.append(f"{child.type}: {child.content[:40]!r}")
            elif child.type == "text" and (hit := _LIVE_TEXT.search(child.content)):
                found.append(f"text: {hit.group()!r}")
            elif child.type == "text" and _INVISIBLE.search(
                child.content.replace(_WORD_JOINER, "")  # the one we add ourselves
            ):
                found.append("text: an invisible character")
    return found


# --- Streamlit ------------------------------------------------------------------------------


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

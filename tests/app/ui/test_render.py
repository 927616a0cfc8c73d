"""The one renderer for untrusted text: Markdown renders, nothing can fetch, link or run.

The output is judged by an independent reading: markdown-it (CommonMark, and with GFM's
tables and strikethrough) with the `text_join` step off, so an escaped `$` or an entity
`:` stays a separate `text_special` token and a raw one shows up in a `text` token. On top,
what Streamlit's GFM renderer does to decoded text: autolinks (www., http(s)://, e-mail)
and :shortcodes: (emoji, :material/...: icons, its logo).
"""

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from app.ui import render
from app.ui.render import MAX_NESTING, inert_markdown, inline, live_markup

COMMONMARK = MarkdownIt("commonmark", {"maxNesting": 10_000}).disable("text_join")
GFM_ISH = (
    MarkdownIt("commonmark", {"maxNesting": 10_000})
    .enable(["table", "strikethrough"])
    .disable("text_join")
)
LIVE_TYPES = {"html_block", "html_inline", "image", "link_open", "s_open", "table_open"}
# GFM's autolink literals and Streamlit's shortcodes, as they would match decoded text
AUTOLINK = re.compile(r"(?i)https?://|www\.|[\w.+-]@[\w-]+\.[\w-]")
SHORTCODE = re.compile(r":[\w+-]+:|:material/")
# characters that must never stand raw in prose: each starts some markup somewhere (a raw
# `*` or `_` may: an emphasis mark that no longer pairs up is only a visible star)
RAW_IN_TEXT = re.compile(r"[$:<>\[\]`~|&\\]")
INVISIBLE = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\u200b-\u200d\ufeff]")


def problems(markdown: str) -> list[str]:
    """Everything in `markdown` that a renderer would make live, by our independent check."""
    found = []
    for parser in (COMMONMARK, GFM_ISH):
        for token in parser.parse(markdown):
            for tok in [token, *(token.children or ())]:
                if tok.type in LIVE_TYPES:
                    found.append(f"{tok.type} {tok.content[:30]!r}")
                if tok.type == "text":
                    if hit := (AUTOLINK.search(tok.content) or SHORTCODE.search(tok.content)):
                        found.append(f"text {hit.group()!r} in {tok.content[:60]!r}")
                    if hit := RAW_IN_TEXT.search(tok.content):
                        found.append(f"raw {hit.group()!r} in {tok.content[:60]!r}")
                if INVISIBLE.search(tok.content):
                    found.append(f"invisible character in {tok.type}")
    return found


def visible_text(markdown: str) -> str:
    """What a reader sees: prose, code, and the text of links and images (a link's edges
    count as a blank: the output may show brackets or the address there)."""
    out = []

    def inline(tokens) -> None:
        for tok in tokens:
            if tok.type in ("text", "text_special", "code_inline", "html_inline"):
                out.append(tok.content)
            elif tok.type in ("link_open", "link_close", "image"):
                out.append(" ")
                inline(tok.children or ())
                out.append(" ")

    for token in COMMONMARK.parse(markdown):
        if token.type in ("fence", "code_block", "html_block"):
            out.append(token.content)
        inline(token.children or ())
        out.append(" ")
    return "".join(out)


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9]+", text)


def assert_inert_and_whole(text: str) -> str:
    out = inert_markdown(text)
    assert problems(out) == [], (text, out)
    # an emphasis mark may no longer pair up where its neighbour became code or an escape
    # ("1*http://*": a star then a backtick does not open); it is then shown as a star
    shown = visible_text(out).replace("*", "")
    for word in words(visible_text(text)):
        assert word in shown, (word, text, out)
    return out


# --- the corner cases of the issue -------------------------------------------------------

PIXEL = "![x](http://203.0.113.9/p.png)"
CORNERS = {
    "closing fence longer than the opener": f"```\ncode\n`````\n{PIXEL}",
    "closing fence indented by 3 spaces": f"```\ncode\n   ```\n{PIXEL}",
    "tilde fence, backtick lines inside": f"~~~\n```\n~~~\n{PIXEL}",
    "code span across a blank line": f"`a\n\nb` {PIXEL} `c`",
    "reference-style image": "![x][r]\n\n[r]: http://203.0.113.9/p.png",
    "reference-style link": "[see][r] and [r]\n\n[r]: http://203.0.113.9/ 'title'",
    "html block": "<div>\n<img src=http://203.0.113.9/p.png>\n</div>\n\n*after*",
    "inline html": "text <img src=http://203.0.113.9/p.png> <a href='http://e.invalid'>x</a>",
    "script": "<script>alert(1)</script>",
    "javascript link": "[click](javascript:alert(1))",
    "autolink": "<http://203.0.113.9/auto> and <a@example.invalid>",
    "bare addresses": "see http://e.invalid/x, www.e.invalid and a@b.example",
    "image inside a link": f"[{PIXEL}](http://e.invalid)",
    "nested lists and quotes": f"- a\n  - b\n    > q {PIXEL}\n    > ```\n    > x\n- c\n\n> > {PIXEL}",
    "unclosed fence": "```\n<script>x</script>\n![y](http://e.invalid/y.png)",
    "unclosed fence in a list": f"1. ```\n   {PIXEL}\n\n{PIXEL}",
    "streamlit directives": ":red[styled] :blue-badge[b] :material/home: :streamlit: :smile: ::x",
    "latex": "$x^2$ and $$\\int$$ and \\$5",
    "emoji in times": "at 10:30:45 and :+1: :-1:",
    "entities": "&lt;img src=x&gt; &#58;red[x] &amp;#58;",
    "backslashes": "\\![x](http://e.invalid/p.png) \\\\![y](http://e.invalid/q.png)",
    "setext and lists": "Title\n---\n\n1. one\n2) two\n+ three\n-\n\n***\n",
    "table": "| a | b |\n|---|---|\n| `x|y` | ![i](http://e.invalid/i.png) |",
    "ordered list near 9 digits": "999999999. ```\n    x\n999999999. y",
    "tabs and indents": "\t- a\n\t\t```\n\t\tb\n\t\t```\n    code ![i](http://e.invalid)",
}


@pytest.mark.parametrize("text", CORNERS.values(), ids=CORNERS.keys())
def test_corner_cases_render_nothing_live(text):
    assert_inert_and_whole(text)


def test_text_after_a_long_closing_fence_is_text_not_an_image():
    out = inert_markdown(CORNERS["closing fence longer than the opener"])
    tokens = COMMONMARK.parse(out)
    fences = [t for t in tokens if t.type == "fence"]
    assert [f.content for f in fences] == ["code\n"]
    assert "![x](http://203.0.113.9/p.png)" in visible_text(out)


def test_code_stays_verbatim_in_a_fence_longer_than_its_backticks():
    code = "if a < b:\n    print('<ok>')  # ``` and ```` inside\n  ```\n"
    indented = "".join(f"  {line}\n" for line in code.splitlines())
    out = inert_markdown(f"- item\n\n  ~~~python\n{indented}  ~~~\n")
    fences = [t for t in COMMONMARK.parse(out) if t.type == "fence"]
    assert [(f.info, f.content) for f in fences] == [("python", code)]
    assert "`````python" in out  # longer than the four backticks inside


def test_inline_code_keeps_its_backticks():
    out = inert_markdown("use `` a`b `` and ` `` `")
    spans = [
        c.content
        for t in COMMONMARK.parse(out)
        for c in t.children or ()
        if c.type == "code_inline"
    ]
    assert spans == ["a`b", "``"]


def test_ordinary_formatting_survives():
    text = (
        "# Title\n\nSome **bold**, *em* and `code`.\n\n- one\n- two\n  1. sub\n\n> quoted\n\n"
        "```py\nx = 1\n```\n\n***\n"
    )
    out = assert_inert_and_whole(text)
    kinds = [t.type for t in COMMONMARK.parse(out)]
    for kind in ("heading_open", "bullet_list_open", "ordered_list_open", "blockquote_open",
                 "fence", "hr"):  # fmt: skip
        assert kind in kinds, (kind, out)
    inline = [c.type for t in COMMONMARK.parse(out) for c in t.children or ()]
    assert {"strong_open", "em_open", "code_inline"} <= set(inline)
    # a tight list stays tight (no paragraph spacing between its items)
    assert "- one\n- two\n  1. sub" in out


def test_links_and_images_are_shown_as_written():
    text = '[docs](http://e.invalid/d "The docs"), [*run*](javascript:alert(1)) and <http://e.invalid/a>'
    out = inert_markdown(f"{text}\n\n{PIXEL}")
    assert problems(out) == []
    shown = visible_text(out)
    assert text.replace("*run*", "run") in shown and PIXEL in shown
    assert "`[docs](http://e.invalid/d`" in out  # the address goes into code with its word
    assert "*run*" in out  # formatting inside a link's text stays


def test_invisible_characters_are_shown():
    text = "abc\u202edcba\u2066x\u2069 zero\u200bwidth \ufeff\u200d \u061c"
    out = assert_inert_and_whole(text)
    shown = visible_text(out)
    for code in ("202E", "2066", "2069", "200B", "FEFF", "200D", "061C"):
        assert f"<U+{code}>" in shown
    assert not INVISIBLE.search(out)
    # in code too: a bidi override there reorders what the reader sees just the same
    assert "<U+202E>" in inert_markdown("`a\u202eb`\n\n```\nc\u202ed\n```")


def test_every_format_control_character_is_covered():
    import sys
    import unicodedata

    missed = [
        f"U+{cp:04X}"
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) in ("Cf", "Cc", "Zl", "Zp", "Cs")
        and chr(cp) not in "\t\n"
        and not render._INVISIBLE.match(chr(cp))
    ]
    assert missed == []


def test_names_render_on_one_line():
    name = "# :red[x] ![i](http://e.invalid/p.png)\n- www.e.invalid \u202e"
    out = inline(name)
    assert "\n" not in out
    assert problems(f"Signed in as **{out}** (admin)") == []
    assert "<U+202E>" in visible_text(out)


def test_deep_nesting_is_rendered_plain_with_every_word():
    text = "> " * (MAX_NESTING + 5) + f"deep {PIXEL}\n" + "- " * 60 + "list"
    out = assert_inert_and_whole(text)
    assert "deep" in out and "list" in out


def test_the_module_checker_agrees():
    # live_markup is what inert_markdown checks before it returns; it must see the danger
    assert live_markup(PIXEL) and live_markup("<b>x</b>") and live_markup("$x$")
    assert live_markup("see www.e.invalid") and live_markup(":smile:")
    assert live_markup(inert_markdown(PIXEL)) == []


# --- generated Markdown -------------------------------------------------------------------

ALPHABET = "`~[]()!<>&:$\\*_#-|@./ \n\tab1Z"
FRAGMENTS = [
    "http://", "https://", "www.", "a@b.co", ".com", "```", "~~~", "    ", "\n\n", "> ", "- ",
    "1. ", "2) ", "![", "](", "]: ", "<img src=x>", "<http://e.invalid>", "<div>\n", "[r]: /u\n",
    ":red[", ":material/home:", ":smile:", "$$", "&#58;", "&lt;", "&amp;", "\u202e", "\u200b",
    "---", "===", "***", "<!--", "-->", "``", "\\`", "javascript:", "{x}", "::", "| a |",
]  # fmt: skip
markdown_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(ALPHABET, max_size=6)), max_size=40
).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markdown_text)
def test_generated_markdown_renders_nothing_live_and_keeps_every_word(text):
    assert_inert_and_whole(text)


@settings(max_examples=100, deadline=None)
@given(markdown_text)
def test_rendering_twice_is_still_inert(text):
    assert problems(inert_markdown(inert_markdown(text))) == []


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_any_unicode_name_is_inert_on_one_line(text):
    out = inline(text)
    assert "\n" not in out and problems(out) == []


# --- time ---------------------------------------------------------------------------------

SHAPES = {
    "one 60k word": "a" * 60_000,
    "one 100k word with an address": "a" * 50_000 + "www.e.invalid" + "b" * 50_000,
    "50k backticks": "`" * 50_000,
    "backtick words": "`a" * 50_000,
    "nested brackets": "[" * 50_000 + "]" * 50_000,
    "image openers": "![" * 50_000,
    "10k stars": "*" * 10_000 + "a" + "*" * 10_000,
    "stars and letters": "*a" * 50_000,
    "deep quotes": ">" * 100_000,
    "short lines": "a\n" * 50_000,
    "list items": "- a\n" * 25_000,
    "angle brackets": "<a " * 33_000,
    "colons": ":a" * 50_000,
    "addresses": "http://e.invalid/ " * 5_500,
    "e-mails": "a@b.c" * 20_000,
    "prose": ("The quick brown fox, it's said, jumps (over) the lazy dog. " * 1_700)[:100_000],
    "mixed": ("Some *text* with `code`, [a link](http://e.invalid) and\n\n- a list\n" * 1_700)[
        :100_000
    ],
    "just under the budget": "![" * 450 + "- a\n" * 900,
}


@pytest.mark.parametrize("text", SHAPES.values(), ids=SHAPES.keys())
def test_any_100k_characters_render_quickly(text):
    # the claim is "well under a second" (bench/render.py); asserted loosely: shared machine
    started = time.perf_counter()
    out = inert_markdown(text)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{elapsed:.2f} s"
    assert live_markup(out) == []

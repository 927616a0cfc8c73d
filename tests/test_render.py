"""The one renderer for untrusted text: Markdown renders, nothing can fetch, link or run."""

import re

from app.ui.render import inert_markdown

HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    "![tracker](http://example.invalid/pixel.png)",
    "<http://example.invalid/auto>",
    "[ref]: http://example.invalid/x\n\n[see][ref]",
    ":red[styled] :material/home: $x^2$",
]


def test_hostile_inline_payloads_are_escaped():
    for payload in HOSTILE:
        out = inert_markdown(payload)
        assert "<" not in out and ">" not in out, out
        assert not re.search(r"(?<!\\)[\[\]]", out), out  # every bracket escaped: no links
        prose = re.sub(r"`[^`]*`", "", out)  # bare addresses are shown as code spans
        assert ":" not in prose.replace("&#58;", ""), out
        assert "$" not in out.replace("\\$", ""), out


def test_bare_addresses_become_code_not_links():
    out = inert_markdown("see http://example.invalid/x, www.example.invalid and a@b.example")
    assert "`http://example.invalid/x,`" in out and "`www.example.invalid`" in out
    assert "`a@b.example`" in out


def test_code_stays_verbatim_and_markdown_still_formats():
    text = "**bold** and `a[0] <b>`\n\n```python\nif a < b:\n    print('<ok>')\n```\nafter <i>"
    out = inert_markdown(text)
    assert "**bold**" in out
    assert "`a[0] <b>`" in out  # inline code untouched
    assert "```python\nif a < b:\n    print('<ok>')\n```" in out  # fenced code untouched
    assert out.endswith("after &lt;i&gt;")


def test_unterminated_fence_is_closed():
    out = inert_markdown("```\n<script>x</script>")
    assert out.rstrip().endswith("```") and out.count("```") == 2

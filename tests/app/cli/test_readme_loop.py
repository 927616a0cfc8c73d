"""The README's "Try the whole loop" block names commands and flags that exist.

bench/first_hour.py runs that block for real (15 minutes: too long for the suite); this keeps
it honest between bench runs: a renamed subcommand or flag fails here.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
from pathlib import Path

import pytest

from app.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[3]


def first_hour():
    spec = importlib.util.spec_from_file_location("first_hour", ROOT / "bench" / "first_hour.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaf(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The subparser the words of argv lead to, and the words after it."""
    parser, words = build_parser(), list(argv)
    while words and (choices := subcommands(parser)):
        assert words[0] in choices, f"no subcommand {words[0]!r}; there are {sorted(choices)}"
        parser = choices[words.pop(0)]
    return parser, words


def test_the_block_is_found_and_every_step_but_the_browser_one_runs_rlhf():
    steps = first_hour().readme_steps()
    commands = [c for c, _ in steps]
    assert commands[0] == "export RLHF_USER=admin"
    assert any("(browser)" in c for c in commands)
    for command in commands:
        assert command.startswith(("rlhf ", "export ", "# (browser)")), command
    # every step a machine runs says how long it takes; the promise adds up
    timed = [minutes for c, minutes in steps if not c.startswith("export ")]
    assert all(m is not None for m in timed)
    assert sum(timed) <= first_hour().PROMISE_MIN


@pytest.mark.parametrize(
    "command",
    [c for c, _ in first_hour().readme_steps() if c.startswith("rlhf ")],
)
def test_each_command_and_flag_exists(command):
    words = shlex.split(command, comments=True)[1:]
    parser, rest = leaf(words)
    known = set(parser._option_string_actions)
    for word in rest:
        if word.startswith("--"):
            assert word.split("=", 1)[0] in known, f"{command}: no flag {word}"


def readme_commands() -> list[str]:
    """Every `rlhf ...` line in the README's bash blocks (continuations joined)."""
    commands, in_block, pending = [], False, ""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() in ("```bash", "```sh") if not in_block else False
            continue
        if not in_block:
            continue
        line = pending + line.strip()
        pending = line[:-1] + " " if line.endswith("\\") else ""
        if not pending and line.startswith("rlhf "):
            commands.append(line)
    return commands


def test_the_readme_names_many_commands():
    assert len(readme_commands()) > 40


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_and_flag_exists(command):
    """Not only the loop's: a renamed subcommand or flag anywhere in the README fails here.
    `rlhf train` hands unknown flags to its recipe's config (--learning_rate, --critic): there
    only the subcommands are checked."""
    words = shlex.split(command.split(" | ")[0], comments=True)[1:]
    parser, rest = leaf(words)
    known = set(parser._option_string_actions)
    for word in rest:
        word = word.lstrip("[")
        if word.startswith("--") and words[0] != "train":
            assert word.split("=", 1)[0].rstrip("]") in known, f"{command}: no flag {word}"

"""Every `cariosan` command and option explains itself, and README.md names every command."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from cariosan.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str | None]]:
    """(words, parser, help) of every command that runs something, subcommands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*prefix, name), sub, helps.get(name)
                yield from _commands(sub, (*prefix, name))


def _leaves() -> list[tuple[str, ...]]:
    parser = build_parser()
    return [
        words
        for words, sub, _ in _commands(parser)
        if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
    ]


def test_every_command_and_option_has_help() -> None:
    missing = []
    commands = list(_commands(build_parser()))
    assert len(commands) >= 15
    for words, sub, help_text in commands:
        if not help_text:
            missing.append(" ".join(words))
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(
                    f"{' '.join(words)} {'/'.join(action.option_strings) or action.dest}"
                )
    assert missing == []


def test_readme_lists_every_command() -> None:
    text = README.read_text(encoding="utf-8")
    leaves = _leaves()
    assert ("workspace", "list") in leaves and ("backup", "create") in leaves
    absent = [" ".join(words) for words in leaves if f"cariosan {' '.join(words)}" not in text]
    assert absent == []

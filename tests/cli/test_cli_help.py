"""`--help` shows the bracketed parts of help texts (``[@VERSION]``, ...) as written:
Rich reads unescaped square brackets as markup and would drop them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import typer
from rich.errors import StyleSyntaxError
from rich.style import Style
from typer.testing import CliRunner

from noetl_agent.cli.app import app
from tests.cli.conftest import CliResult

BRACKETED = re.compile(r"\\?\[([^\[\]]*)\]")


def _commands(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, command
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from _commands(sub, [*path, name])


def _literal_brackets(text: str) -> list[str]:
    """The ``[...]`` parts of a help text meant to be shown (not Rich styles)."""
    shown = []
    for match in BRACKETED.finditer(text):
        inner = match.group(1)
        if inner.startswith("/"):
            continue  # a closing style tag
        try:
            Style.parse(inner)
        except StyleSyntaxError:
            shown.append(f"[{inner}]")
    return shown


def test_run_help_shows_the_catalog_version_syntax(cli: Callable[..., CliResult]) -> None:
    result = cli("run", "--help")
    assert result.returncode == 0, result.describe()
    assert "catalog://PATH[@VERSION]" in result.stdout


def test_every_help_text_keeps_its_bracketed_parts() -> None:
    runner = CliRunner()
    checked = 0
    for path, command in _commands(typer.main.get_command(app), []):
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        wanted = [part for text in texts for part in _literal_brackets(text)]
        if not wanted:
            continue
        shown = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250"}).output
        for part in wanted:
            assert part in shown, f"`noetl-agent {' '.join(path)} --help` lost {part}"
            checked += 1
    assert checked >= 1

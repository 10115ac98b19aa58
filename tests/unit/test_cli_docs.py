"""``--help`` of every ``rag-ingest`` and ``rag-serve`` command (issue 27): each option is
shown, flags carry no ``<bool>`` label and values a meaningful metavar."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ingest.cli import app as ingest_app
from serving.cli import cli as serve_app

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = {"rag-ingest": ingest_app, "rag-serve": serve_app}
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every runnable command under ``command`` (typer's own click: duck-typed)."""
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from leaves(sub, (*path, name))
    else:
        yield path, command


def options(command: Any) -> set[str]:
    names = {
        name
        for param in command.params
        if param.param_type_name == "option"
        for name in (*param.opts, *param.secondary_opts)
    }
    return {n for n in names if n.startswith("--")} - {"--help"}


def real_commands() -> dict[tuple[str, ...], set[str]]:
    found = {}
    for program, app in PROGRAMS.items():
        for path, command in leaves(typer.main.get_command(app)):
            found[(program, *path)] = options(command)
    return found


@pytest.mark.parametrize("command", sorted(real_commands()), ids=" ".join)
def test_help_shows_every_option_with_a_meaningful_label(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(
        PROGRAMS[command[0]], [*command[1:], "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}
    )
    assert result.exit_code == 0, result.output
    shown = set(OPTION.findall(result.output))
    assert real_commands()[command] <= shown, result.output
    labels = ("<bool>", "<str>", "<int>", "<float>", "<Path>", "BOOLEAN", "TEXT", "INTEGER")
    flags = result.output.split("Options:", 1)[1]  # arguments keep typer's type column
    assert not [label for label in labels if label in flags], result.output

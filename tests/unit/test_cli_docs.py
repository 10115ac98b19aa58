"""README, docs/CLI.md and ``--help`` in step (issue 27): every option of every
``rag-ingest`` and ``rag-serve`` command is in docs/CLI.md's usage lines and nothing else is,
``--help`` shows each one, and the README's command lines name only real options."""

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


def documented(text: str) -> dict[tuple[str, ...], set[str]]:
    """Options named on each ``.venv/bin/<program> <command>`` line of ``text``."""
    known = real_commands()
    found: dict[tuple[str, ...], set[str]] = {}
    for line in text.splitlines():
        match = re.match(r"\s*\.venv/bin/(rag-ingest|rag-serve)\b(.*)", line)
        if not match:
            continue
        words = match.group(2).split("#", 1)[0].split()
        key: tuple[str, ...] = (match.group(1),)
        for word in words:
            if (*key, word) in known or any(k[: len(key) + 1] == (*key, word) for k in known):
                key = (*key, word)
            else:
                break
        found.setdefault(key, set()).update(OPTION.findall(match.group(2).split("#", 1)[0]))
    return found


def test_the_command_reference_lists_exactly_the_real_options() -> None:
    real = real_commands()
    docs = documented((REPO / "docs" / "CLI.md").read_text(encoding="utf-8"))
    assert set(docs) == set(real), "commands in docs/CLI.md differ from the CLI"
    for command, names in real.items():
        assert docs[command] == names, f"{' '.join(command)}: docs/CLI.md vs --help"


def test_the_readme_names_only_real_options_and_links_the_reference() -> None:
    real = real_commands()
    for page in ("README.md", "docs/INGEST.md", "docs/DEPLOY.md", "docs/API.md"):
        text = (REPO / page).read_text(encoding="utf-8")
        for command, names in documented(text).items():
            assert command in real, f"{page}: no command {' '.join(command)}"
            assert names <= real[command], f"{page}: {' '.join(command)} {names - real[command]}"
    assert "(docs/CLI.md)" in (REPO / "README.md").read_text(encoding="utf-8")


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

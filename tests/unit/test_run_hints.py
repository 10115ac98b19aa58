"""Messages say how to run a command the way the README does (issue 27): after
``make setup`` the commands live in ``.venv/bin``, which is not on ``PATH``, so a bare
``rag-ingest`` in an error message does not run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rag.errors import NotFoundError, how_to_run
from rag.state.apikeys import KeyStore
from tests.statedb import sqlite_state

IN_CHECKOUT_VENV = Path(sys.prefix).name == ".venv"


@pytest.mark.skipif(not IN_CHECKOUT_VENV, reason="runs from the checkout's .venv")
def test_commands_are_named_as_the_readme_writes_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scripts = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p != scripts]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    assert how_to_run("rag-ingest keys list") == ".venv/bin/rag-ingest keys list"
    with pytest.raises(NotFoundError) as caught:
        KeyStore(sqlite_state(tmp_path / "keys.sqlite3")).revoke("nope")
    assert "`.venv/bin/rag-ingest keys list`" in caught.value.message


@pytest.mark.skipif(not IN_CHECKOUT_VENV, reason="runs from the checkout's .venv")
def test_a_command_on_path_keeps_its_bare_name(monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", scripts + os.pathsep + os.environ.get("PATH", ""))
    assert how_to_run("rag-serve") == "rag-serve"

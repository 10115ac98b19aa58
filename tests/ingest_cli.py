"""``rag-ingest`` as a real subprocess on the test profile (``python -m ingest.cli``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ASSETS, REPO


def cli_env(store: Path, **env: str) -> dict[str, str]:
    return {
        **os.environ,
        "RAG_PROFILE": "test",
        "RAG_STORE__PATH": str(store),
        "RAG_PATHS__ASSETS_DIR": str(ASSETS),
        **env,
    }


def cli(store: Path, *args: str, crash: str | None = None, **env: str) -> Any:
    """Run ``rag-ingest ARGS`` to the end; ``crash``: ``RAG_TEST_CRASH_AT`` (the process
    SIGKILLs itself at that point of the write protocol)."""
    environ = cli_env(store, **env)
    if crash:
        environ["RAG_TEST_CRASH_AT"] = crash
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=REPO,
        timeout=300,
        check=False,
    )


def events(proc: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]

"""Ingest, start-up and a question inside a network namespace with only loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ASSETS, KB_DIR, REPO
from tests.servers import free_port

pytestmark = pytest.mark.slow


def netns_available() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip is not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        return f"cannot create a network namespace here: {probe.stderr.decode()[:200]}"
    return None


def test_everything_works_with_only_loopback(tmp_path: Path) -> None:
    reason = netns_available()
    if reason:
        pytest.skip(reason)
    kb = tmp_path / "kb"
    kb.mkdir()
    for name in ["faq-printing.txt", "it-wifi-and-vpn.md"]:
        shutil.copy(KB_DIR / name, kb / name)
    env = {
        **os.environ,
        "RAG_PROFILE": "test",
        "RAG_PATHS__DATA_DIR": str(tmp_path),
        "RAG_PATHS__ASSETS_DIR": str(ASSETS),
        "RAG_STORE__PATH": str(tmp_path / "chroma"),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    driver = f"{sys.executable} -m tests.e2e.netns_driver {tmp_path} {kb} {free_port()}"
    run = subprocess.run(
        ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {driver}"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = (tmp_path / "server.log").read_text() if (tmp_path / "server.log").exists() else ""
    assert run.returncode == 0, run.stderr[-3000:] + log[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["ingest_rc"] == 0, result["ingest_err"]
    assert result["internet_reachable"] is False
    assert result.get("status") == 200, (result, log[-3000:])
    sources = {Path(c["source"]).name for c in result["body"]["citations"]}
    assert "faq-printing.txt" in sources

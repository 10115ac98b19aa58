"""``KB_NET_AUDIT`` leaves proof that it was on even when nothing was attempted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rag.deploy.netguard import read_log
from tests.conftest import REPO


def test_the_audit_file_starts_with_a_header_line(tmp_path: Path) -> None:
    audit = tmp_path / "audit" / "net.jsonl"
    env = {**os.environ, "KB_NET_AUDIT": str(audit), "KB_NET_AUDIT_ALLOW": "chroma.lan"}
    code = "from rag.deploy.netguard import install_from_env; install_from_env()"
    subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True, timeout=60)
    (line,) = audit.read_text(encoding="utf-8").splitlines()
    header = json.loads(line)
    assert header["event"] == "audit-start" and header["allow"] == ["chroma.lan"]
    assert header["block"] is False and header["pid"] > 0
    assert read_log(audit) == []  # a header is not an attempt

"""The README's "Going to production" section, command by command (issue 27, finding 4).

The commands are read from the README's code block and run as written (``.venv/bin/X`` is
this interpreter's ``-m`` module, so the code under test is this checkout's) in an empty
folder holding only ``examples/kb``: a fresh checkout after ``make setup`` (the offline
assets come from the set-up's folder). Checked: a refused start creates nothing, the key
works, the start-up hint carries the header, what answers without a key, and that the API
docs are closed in ``prod-cpu``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import ASSETS, KB_DIR, REPO
from tests.procs import OWN_GROUP, stop_group
from tests.servers import free_port, wait_ready

pytestmark = pytest.mark.slow

SECTION = "## Going to production"
PROGRAMS = {
    ".venv/bin/rag-ingest": [sys.executable, "-m", "ingest.cli"],
    ".venv/bin/rag-serve": [sys.executable, "-m", "serving.cli"],
}
# Only to keep the test small on 2 cores: the same model, fewer tokens, a smaller KV cache,
# torch embeddings (the test profile's: no ONNX export), no parse workers.
SPEED = {
    "RAG_LLM__MAX_TOKENS": "24",
    "RAG_LLM__KV_CACHE_SPACE_GIB": "1",
    "RAG_EMBEDDING__BACKEND": "torch",
    "RAG_INGEST__WORKERS": "1",
}


def section_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", body, re.S)
    assert block, "the section has no bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_going_to_production_section_works_as_written(tmp_path: Path) -> None:
    commands = section_commands()
    assert commands[0] == "export RAG_PROFILE=prod-cpu"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAG_")},
        "PYTHONPATH": str(REPO),
        "RAG_PATHS__ASSETS_DIR": str(ASSETS),
        **SPEED,
    }
    home = tmp_path / "checkout"
    shutil.copytree(KB_DIR, home / "examples" / "kb")
    env["RAG_HOME"] = str(home)  # what a checkout of its own would be without it

    def argv(command: str, port: int | None = None) -> list[str]:
        words = shlex.split(command)
        if port is not None:
            words[words.index("--port") + 1] = str(port)
        return PROGRAMS[words[0]] + words[1:]

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv(command), env=env, cwd=home, capture_output=True, text=True, timeout=300
        )

    name, value = commands[0].removeprefix("export ").split("=", 1)
    env[name] = value
    serve = commands[-1]
    assert serve.startswith(".venv/bin/rag-serve")

    # Started before any key exists: refused, saying how, and nothing is created.
    refused = run(serve.replace("--port 8000", f"--port {free_port()}"))
    assert refused.returncode == 2, refused.stderr
    assert "keys create" in refused.stderr and "paths.data_dir" in refused.stderr
    assert not (home / "var" / "state.sqlite3").exists()

    secret = ""
    for command in commands[1:-1]:
        done = run(command)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        found = re.search(r"kb_[A-Za-z0-9_-]+", done.stdout)
        secret = found.group(0) if "keys create" in command and found else secret
    assert secret, "keys create printed no key"
    assert (home / "var" / "state.sqlite3").exists()  # the key, in the shared data folder

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv(serve, port), env=env, cwd=home, stdout=out, stderr=out, **OWN_GROUP
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base, log)
        hint = [line for line in log.read_text().splitlines() if line.startswith("Ask:")]
        assert hint and "-H 'Authorization: Bearer <key>'" in hint[0], hint

        question = {"question": "What is the name of the shared print queue?"}
        assert httpx.post(f"{base}/v1/ask", json=question, timeout=30).status_code == 401
        for closed in ("/docs", "/docs/assets/swagger-ui.css", "/openapi.json", "/widget/demo"):
            assert httpx.get(f"{base}{closed}").status_code == 404, closed
        for open_ in ("/healthz", "/readyz", "/v1/models", "/widget.js"):
            assert httpx.get(f"{base}{open_}").status_code == 200, open_
        assert httpx.get(f"{base}/metrics").status_code == 401  # counts every group's documents

        auth = {"Authorization": f"Bearer {secret}"}
        resp = httpx.post(f"{base}/v1/ask", json=question, headers=auth, timeout=120)
        assert resp.status_code == 200, resp.text
        sources = [Path(c["source"]).name for c in resp.json()["citations"]]
        assert "faq-printing.txt" in sources, json.dumps(resp.json())[:500]
    finally:
        stop_group(proc, signal.SIGINT)

"""vLLM's own OpenAI-compatible server, as real processes, once per test session.

Two servers start in parallel the first time a test asks for either: the tiny random
gpt-oss (harmony inside the server) and SmolLM2-135M (its ChatML template). The remote-engine
tests use both; the replica tests point their replicas at SmolLM2's. Registered as a pytest
plugin in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ASSETS
from tests.integration.remote_servers import VllmServer

TINY_NAME = "tiny-gpt-oss"
SMOL_NAME = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def vllm_servers(
    tiny_gptoss_dir: Path, assets: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, VllmServer]]:
    logs = tmp_path_factory.mktemp("vllm-server-logs")
    servers = {
        "tiny": VllmServer(tiny_gptoss_dir, TINY_NAME, logs / "tiny.log"),
        "smol": VllmServer(ASSETS / "models" / SMOL_NAME, SMOL_NAME, logs / "smol.log"),
    }
    try:
        for server in servers.values():
            server.start()
        for server in servers.values():
            server.wait_ready(600)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="session")
def tiny_server(vllm_servers: dict[str, VllmServer]) -> VllmServer:
    return vllm_servers["tiny"]


@pytest.fixture(scope="session")
def smol_server(vllm_servers: dict[str, VllmServer]) -> VllmServer:
    return vllm_servers["smol"]

"""Shared fixtures: offline environment, assets, settings in tmp dirs, real engines.

Slow things (models, engines, the ingested sample knowledge base) are session-scoped, and
every async test runs on the one session event loop, because vLLM binds its output handler
to the loop that first uses the engine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
KB_DIR = REPO / "examples" / "kb"
QUESTIONS = REPO / "examples" / "questions.yaml"
ASSETS = Path(os.environ.get("RAG_TEST_ASSETS", REPO / "var" / "assets"))

# chroma_server: a real `chroma run`; pg_server, pg_url: a real PostgreSQL (initdb in a temp
# folder); vllm_servers, smol_server, tiny_server: vLLM's own OpenAI-compatible servers
pytest_plugins = [
    "tests.chroma_server",
    "tests.postgres_server",
    "tests.oidc_provider",
    "tests.vllm_servers",
]


def pytest_configure(config: pytest.Config) -> None:
    from rag.deploy.offline import OFFLINE_ENV
    from rag.deploy.vocab import offline_tokenizer_env

    os.environ.update(OFFLINE_ENV)
    os.environ.update(offline_tokenizer_env(ASSETS))
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = "1"
    for key in [k for k in os.environ if k.startswith("RAG_")]:
        del os.environ[key]
    # Every connection this process and its subprocesses (servers, CLIs) attempt to a
    # non-loopback address is recorded; the session fails if there is any.
    from rag.deploy.netguard import AUDIT_ENV, install

    audit = Path(config.rootpath) / "test-artifacts" / "outbound-connections.jsonl"
    audit.parent.mkdir(exist_ok=True)
    audit.unlink(missing_ok=True)
    os.environ[AUDIT_ENV] = str(audit)
    install(audit)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from rag.deploy.netguard import AUDIT_ENV, read_log

    attempts = read_log(Path(os.environ.get(AUDIT_ENV, "/nonexistent")))
    if attempts:
        where = "; ".join(f"{a['address']} from {a['argv']}" for a in attempts[:5])
        print(f"\nFAILED: {len(attempts)} outbound connection attempt(s): {where}")
        print(f"details: {os.environ[AUDIT_ENV]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def assets() -> Any:
    from rag.deploy.assets import ensure_assets

    return ensure_assets(ASSETS)


@pytest.fixture(scope="session")
def questions() -> list[dict[str, Any]]:
    data = yaml.safe_load(QUESTIONS.read_text(encoding="utf-8"))
    return list(data["questions"])


SettingsFactory = Callable[..., Any]


@pytest.fixture(scope="session")
def make_settings(tmp_path_factory: pytest.TempPathFactory) -> SettingsFactory:
    """``make_settings(**sections)``: the test profile with a fresh store dir."""
    from rag.config import deep_merge, load_settings

    def make(**sections: dict[str, Any]) -> Any:
        store = tmp_path_factory.mktemp("store")
        base = {
            "paths": {"assets_dir": str(ASSETS), "data_dir": str(store)},
            "store": {"path": str(store / "chroma")},
        }
        return load_settings("test", overrides=deep_merge(base, sections), environ={})

    return make


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh state database: an SQLite file (one machine) or a database in the session's
    real PostgreSQL server (several replicas)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite3'}"
    server: Any = request.getfixturevalue("pg_server")
    url: str = server.create_database()
    return url


@pytest.fixture(scope="session")
def sample_kb(make_settings: SettingsFactory, assets: Any) -> Any:
    """Settings whose store holds the whole sample knowledge base."""
    from ingest.pipeline import Ingestor
    from rag.services import build_knowledge_base

    settings = make_settings()
    kb = build_knowledge_base(settings)
    results = list(Ingestor(settings, kb.embedder, kb.store).add([KB_DIR]))
    failed = [r for r in results if r.status == "failed"]
    assert not failed, failed
    return settings


@pytest.fixture(scope="session")
def smol_engine(make_settings: SettingsFactory, assets: Any) -> Iterator[Any]:
    from rag.engines import start_engine

    engine = start_engine(make_settings())
    yield engine
    engine.shutdown()


@pytest.fixture(scope="session")
def tiny_gptoss_dir(assets: Any) -> Path:
    from rag.deploy.modelprep import build_tiny_gptoss

    return build_tiny_gptoss(ASSETS / "test-models" / "tiny-gptoss", assets.vocab_file)


@pytest.fixture(scope="session")
def tiny_engine(tiny_gptoss_dir: Path, make_settings: SettingsFactory) -> Iterator[Any]:
    from rag.engines.vllm_engine import VllmEngine

    settings = make_settings(
        llm={"model": str(tiny_gptoss_dir), "max_model_len": 8192, "max_tokens": 32}
    )
    engine = VllmEngine.start(settings.llm, tiny_gptoss_dir)
    yield engine
    engine.shutdown()

from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import load_settings
from rag.errors import ConfigError


def test_dev_profile_is_the_default() -> None:
    settings = load_settings(environ={})
    assert settings.profile == "dev"
    assert settings.llm.model == "builtin:smollm2-135m-instruct"


def test_profile_from_environment_and_nested_override() -> None:
    settings = load_settings(
        environ={"RAG_PROFILE": "gpu-20b", "RAG_STORE__PATH": "var/kb", "RAG_LLM__MAX_TOKENS": "99"}
    )
    assert settings.profile == "gpu-20b"
    assert settings.llm.max_model_len == 131072
    assert settings.llm.family == "gpt-oss"
    assert settings.store.path == Path("var/kb")
    assert settings.llm.max_tokens == 99


def test_env_list_values_parse_as_yaml() -> None:
    settings = load_settings(environ={"RAG_INGEST__DEFAULT_GROUPS": "[staff, it]"})
    assert settings.ingest.default_groups == ["staff", "it"]


def test_unknown_env_key_is_rejected_with_its_name() -> None:
    with pytest.raises(ConfigError, match=r"store\.pth"):
        load_settings(environ={"RAG_STORE__PTH": "x"})


def test_malformed_env_name_is_rejected() -> None:
    with pytest.raises(ConfigError, match="RAG_<SECTION>__<KEY>"):
        load_settings(environ={"RAG_STOREPATH": "x"})


def test_unknown_yaml_key_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "dev.yaml").write_text("llm:\n  temprature: 0.5\n")
    with pytest.raises(ConfigError, match=r"llm\.temprature"):
        load_settings(environ={}, config_dir=tmp_path)


def test_invalid_value_names_the_env_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RAG_SERVER__PORT"):
        load_settings(environ={"RAG_SERVER__PORT": "not-a-port"})


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="gpu-20b"):
        load_settings("nope", environ={})


def test_every_shipped_profile_is_valid() -> None:
    folder = Path(__file__).resolve().parents[2] / "configs"
    names = [p.stem for p in folder.glob("*.yaml") if p.stem != "base"]
    assert {"dev", "test", "gpu-20b", "gpu-120b"} <= set(names)
    for name in names:
        assert load_settings(name, environ={}).profile == name


def test_the_cpu_demo_answers_extractively_and_gpt_oss_generates() -> None:
    assert load_settings("dev", environ={}).answer.mode == "extractive"
    for name in ("gpu-20b", "gpu-120b"):
        assert load_settings(name, environ={}).answer.mode == "generative"
    with pytest.raises(ConfigError, match=r"answer\.mode"):
        load_settings(environ={"RAG_ANSWER__MODE": "creative"})

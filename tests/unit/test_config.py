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
    assert settings.store.path == Path(__file__).resolve().parents[2] / "var" / "kb"
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


def test_config_dir_adds_profiles_without_a_copy_of_base(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text("server:\n  port: 9443\n  public_docs: false\n")
    settings = load_settings("site", environ={"RAG_CONFIG_DIR": str(tmp_path)})
    assert settings.profile == "site" and settings.server.port == 9443
    assert not settings.server.public_docs and settings.auth.required  # base.yaml underneath
    assert settings.store.hnsw_ef_search == 200
    # The shipped profiles stay available, and a base.yaml there changes the shipped one.
    (tmp_path / "base.yaml").write_text("retrieval:\n  top_k: 3\n")
    env = {"RAG_CONFIG_DIR": str(tmp_path)}
    assert load_settings("site", environ=env).retrieval.top_k == 3
    assert load_settings("dev", environ=env).retrieval.top_k == 3
    with pytest.raises(ConfigError, match="RAG_CONFIG_DIR") as refused:
        load_settings("nope", environ=env)
    assert "site" in refused.value.message and "prod-cpu" in refused.value.message


def test_a_rule_across_settings_reads_as_one_sentence() -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings("remote-openai", environ={"RAG_AUTH__REQUIRED": "false"})
    lines = refused.value.message.splitlines()
    assert lines[1].startswith("  auth.required is false in the 'remote-openai' profile")
    assert "Value error" not in refused.value.message and " : " not in refused.value.message


def test_prod_cpu_needs_keys_and_hides_the_docs() -> None:
    settings = load_settings("prod-cpu", environ={})
    assert settings.auth.required and not settings.server.public_docs
    assert settings.llm.backend == "vllm" and not settings.widget.demo_page
    assert settings.answer.mode == "extractive"  # its 135M model must not be shown inventing


def test_the_exit_code_table_is_the_same_in_the_readme_and_the_help() -> None:
    from typer.testing import CliRunner

    from ingest.cli import EXIT_CODES, app

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = {
        int(code): meaning
        for code, meaning in (
            line.strip("|").split("|")
            for line in readme.splitlines()
            if line.startswith("| ") and line[2].isdigit()
        )
    }
    assert {k: v.strip() for k, v in rows.items()} == EXIT_CODES
    shown = " ".join(CliRunner().invoke(app, ["--help"], terminal_width=400).output.split())
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {meaning}" in shown


def test_the_cpu_demo_answers_extractively_and_gpt_oss_generates() -> None:
    assert load_settings("dev", environ={}).answer.mode == "extractive"
    for name in ("gpu-20b", "gpu-120b"):
        assert load_settings(name, environ={}).answer.mode == "generative"
    with pytest.raises(ConfigError, match=r"answer\.mode"):
        load_settings(environ={"RAG_ANSWER__MODE": "creative"})


def test_keyless_operation_is_an_explicit_setting_not_a_profile_name(tmp_path: Path) -> None:
    """Issue 19: a site's own profile named ``dev`` (RAG_CONFIG_DIR) ran without keys by its
    name alone. Only ``auth.allow_keyless: true`` permits ``required: false``."""
    env = {"RAG_CONFIG_DIR": str(tmp_path)}
    (tmp_path / "dev.yaml").write_text("auth:\n  required: false\n")
    with pytest.raises(ConfigError, match="allow_keyless") as refused:
        load_settings("dev", environ=env)
    assert "rag-ingest keys create" in refused.value.message
    (tmp_path / "laptop.yaml").write_text("auth:\n  required: false\n  allow_keyless: true\n")
    assert not load_settings("laptop", environ=env).auth.required
    # The shipped dev and test profiles say so themselves.
    assert load_settings("dev", environ={}).auth.allow_keyless
    assert not load_settings("prod-cpu", environ={}).auth.allow_keyless

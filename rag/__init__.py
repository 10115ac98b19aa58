"""Core of the private-knowledge Q&A service: config, the index, retrieval, answering,
engines and the service's state.

Nothing here runs at import time; entrypoints build :class:`rag.config.Settings` once and
build every part from it through :mod:`rag.services` (the composition root). The package
map and the direction of imports are in docs/ARCHITECTURE.md.
"""

__version__ = "0.1.0"

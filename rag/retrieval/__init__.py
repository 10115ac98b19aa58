"""Hybrid retrieval over the index (dense + BM25, access-controlled) and its LangChain adapter."""

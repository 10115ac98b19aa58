"""Retrieval evaluation on BEIR-format datasets (rag-ingest eval)."""

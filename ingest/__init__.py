"""Document ingest: parse with unstructured, chunk by structure, embed, store in Chroma."""

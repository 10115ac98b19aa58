"""Request and response models of the public API (the OpenAI wire models are in
serving.openai_compat.protocol)."""

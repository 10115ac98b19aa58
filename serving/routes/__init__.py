"""The routes, one module-level router per job (the OpenAI-compatible ones are in
serving.openai_compat)."""

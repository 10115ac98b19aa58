"""Prometheus metrics (``prometheus-client``), one registry per app, served at ``/metrics``.

Nothing here carries question, document or answer text: only routes, status codes,
timings, token counts and outcomes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from rag.types import Answer
from serving.principal import scraper

if TYPE_CHECKING:
    from rag.services import Services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_EXAMPLE = (
    "# HELP kb_answers_total Answers by outcome (answered, declined).\n"
    "# TYPE kb_answers_total counter\n"
    'kb_answers_total{outcome="answered"} 381.0\n'
    'kb_answers_total{outcome="declined"} 37.0\n'
    "# HELP kb_prefix_cache_hit_ratio Share of prompt tokens served from the engine's prefix "
    "cache since start (0 when the engine does not report it).\n"
    "# TYPE kb_prefix_cache_hit_ratio gauge\n"
    "kb_prefix_cache_hit_ratio 0.83\n"
)
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOKENS = (64, 256, 1024, 4096, 16384, 32768, 65536, 131072)


class _StateCollector(Collector):
    """Values read at scrape time: engine queue depth, readiness, store size."""

    def __init__(self, state: Services, metrics: Metrics) -> None:
        self._state = state
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = self._state
        ready = GaugeMetricFamily("kb_ready", "1 when the service is ready to answer.")
        ready.add_metric([], 1.0 if state.status == "ready" else 0.0)
        yield ready
        engine = state.engine
        running = getattr(engine, "unfinished_requests", None)
        if callable(running):
            depth = GaugeMetricFamily(
                "kb_engine_requests_unfinished", "Requests the engine is working on or queueing."
            )
            depth.add_metric([], float(running()))
            yield depth
        faults = getattr(engine, "decode_faults", None)
        if callable(faults):
            yield _output_faults(faults())
        answers = state.answers
        if answers is not None:
            failures = CounterMetricFamily(
                "kb_engine_failures", "Answers that failed in the engine since start."
            )
            failures.add_metric([], float(answers.engine_health.failures))
            yield failures
        total, cached = self._metrics.prompt_seen, self._metrics.cached_seen
        rate = GaugeMetricFamily(
            "kb_prefix_cache_hit_ratio",
            "Share of prompt tokens served from the engine's prefix cache since start "
            "(0 when the engine does not report it).",
        )
        rate.add_metric([], cached / total if total else 0.0)
        yield rate
        yield from _handoff_stats(state)
        yield from _index_stats(state)
        yield from _curated_stats(state)
        cache = getattr(state, "answer_cache", None)
        if cache is not None:
            lookups = CounterMetricFamily(
                "kb_answer_cache_lookups",
                "Answer cache lookups since start by result: hit, miss, stale (a cited "
                "document changed: the entry was dropped), error (the state database failed).",
                labels=["result"],
            )
            for result in ("hit", "miss", "stale", "error"):
                lookups.add_metric([result], float(cache.lookups[result]))
            yield lookups
        if state.db.shared:
            catch_ups = CounterMetricFamily(
                "kb_index_catch_ups",
                "Times this replica brought its keyword index in step with an ingest made "
                "on another machine (shared state database).",
            )
            catch_ups.add_metric([], float(state.catch_ups))
            yield catch_ups
            last = GaugeMetricFamily(
                "kb_index_catch_up_seconds", "How long the last catch-up took (0: none yet)."
            )
            last.add_metric([], state.last_catch_up_s)
            yield last
        store = state.kb.store if state.kb is not None else None
        if store is not None:
            chunks = GaugeMetricFamily("kb_store_chunks", "Chunks in the vector store.")
            try:
                chunks.add_metric([], float(store.count()))
            except Exception:  # a scrape never fails because the store is busy
                return
            yield chunks


def _output_faults(counts: dict[str, int]) -> CounterMetricFamily:
    """What the engine's output filter met in the model's output (rag/engines/harmony.py):
    malformed tokens skipped, headers repaired, raw text recovered, answers cut off while
    reasoning, tool calls refused. Counts only."""
    family = CounterMetricFamily(
        "kb_engine_output_faults",
        "Faults in the model's output the engine survived, by kind (gpt-oss harmony).",
        labels=["kind"],
    )
    for kind, count in sorted(counts.items()):
        family.add_metric([kind], float(count))
    return family


def _handoff_stats(state: Any) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """Hand-offs in the outbox by state (from the state database, so every replica reports
    the same totals) and this process's delivery tries."""
    outbox = state.outbox
    if not outbox.available:
        return
    try:
        counts = outbox.store.counts()
    except Exception:  # a scrape never fails because the state database is busy
        return
    family = GaugeMetricFamily(
        "kb_handoffs", "Hand-offs kept in the outbox, by state (all replicas).", labels=["status"]
    )
    for status in ("pending", "delivered", "failed"):
        family.add_metric([status], float(counts.by_status.get(status, 0)))
    yield family
    tries = CounterMetricFamily(
        "kb_handoff_delivery_tries",
        "Delivery tries this process made, by result (ok, failed: retried later).",
        labels=["result"],
    )
    tries.add_metric(["ok"], float(outbox.sent))
    tries.add_metric(["failed"], float(outbox.failed_tries))
    yield tries


def _curated_stats(state: Any) -> Iterator[GaugeMetricFamily]:
    """Curated answers kept in the state database (every replica reports the same)."""
    store = state.curated_store
    if store is None:
        return
    try:
        active = store.list(status="active")
    except Exception:  # a scrape never fails because the state database is busy
        return
    family = GaugeMetricFamily(
        "kb_curated_answers",
        "Active curated answers, by freshness (stale: past the review date, due for review).",
        labels=["freshness"],
    )
    today = store.today()
    stale = sum(e.stale(today) for e in active)
    family.add_metric(["current"], float(len(active) - stale))
    family.add_metric(["stale"], float(stale))
    yield family


def _index_stats(state: Any) -> Iterator[GaugeMetricFamily]:
    """What the ingest manifest records for the served collection, whoever ingested it
    (`rag-ingest` or uploads): documents, chunks, and files that failed to ingest."""
    store = state.kb.store if state.kb is not None else None
    if store is None:
        return
    try:
        manifest = state.manifest()
        if manifest is None:
            return
        with manifest:
            stats = manifest.stats(store.name)
    except Exception:  # a scrape never fails because the manifest is busy
        return
    for key, help_text in (
        ("documents", "Documents in the index."),
        ("chunks", "Chunks in the index."),
        ("failed", "Files whose last ingest failed (see rag-ingest stats)."),
    ):
        family = GaugeMetricFamily(f"kb_index_{key}", help_text)
        family.add_metric([], float(stats[key]))
        yield family


class Metrics:
    """One registry per app: request counts and latencies, answer and ingest outcomes, and
    what the service's parts report at scrape time."""

    def __init__(self, services: Services) -> None:
        self.registry = CollectorRegistry()
        self.prompt_seen = 0
        self.cached_seen = 0
        r = self.registry
        self.requests = Counter(
            "kb_http_requests", "HTTP requests.", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "kb_http_request_seconds",
            "Time to the response head (streams continue after it).",
            ["route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.answers = Counter(
            "kb_answers", "Answers by outcome (answered, declined).", ["outcome"], registry=r
        )
        self.retrieval = Histogram(
            "kb_retrieval_seconds", "Retrieval time per answer.", buckets=_LATENCY, registry=r
        )
        self.ttft = Histogram(
            "kb_time_to_first_token_seconds",
            "From the request to the first answer token.",
            buckets=_LATENCY,
            registry=r,
        )
        self.prompt_tokens = Histogram(
            "kb_prompt_tokens", "Prompt tokens per answer.", buckets=_TOKENS, registry=r
        )
        self.tokens = Counter(
            "kb_tokens", "Tokens in and out of the engine.", ["direction"], registry=r
        )
        self.cached_tokens = Counter(
            "kb_prompt_cached_tokens",
            "Prompt tokens the engine served from its prefix cache (when it reports them); "
            "hit rate = rate(kb_prompt_cached_tokens_total) / rate(kb_tokens_total{direction="
            '"in"}).',
            registry=r,
        )
        self.ingested = Counter(
            "kb_ingest_documents",
            "Documents through the ingest pipeline from this service (uploads), by outcome.",
            ["status"],
            registry=r,
        )
        self.ingested_chunks = Counter(
            "kb_ingest_chunks", "Chunks written by uploads to this service.", registry=r
        )
        self.audit_records = Counter(
            "kb_audit_records",
            "Audit records written by this service, by action (ask, retrieve, upload, "
            "delete, login_failure, denied).",
            ["action"],
            registry=r,
        )
        self.audit_failures = Counter(
            "kb_audit_failures",
            "Audit records this service could not write (the request itself was served; "
            "see the log).",
            registry=r,
        )
        self.quotes = Counter(
            "kb_answer_quotes",
            "Answers that quote the sources instead of model text: extractive answers, and "
            "generative ones with no verified sentence (see answer.mode).",
            registry=r,
        )
        self.origins = Counter(
            "kb_answers_by_origin",
            "Answers by where they came from: sources (made for the question), cache (the "
            "answer cache), curated (an admin's answer).",
            ["origin"],
            registry=r,
        )
        self.citations = Histogram(
            "kb_citations_per_answer",
            "Citations attached to an answer.",
            buckets=(0, 1, 2, 3, 5, 8, 13),
            registry=r,
        )
        self.handoffs = Counter(
            "kb_handoffs_created",
            "Hand-offs to a person this process created, by reason (declined, unsupported, "
            "thumbs_down, other).",
            ["reason"],
            registry=r,
        )
        self.curated = Counter(
            "kb_curated_answers_served",
            "Answers given from a curated answer, by freshness (current, or stale: past its "
            "review date).",
            ["freshness"],
            registry=r,
        )
        r.register(_StateCollector(services, self))

    def observe_answer(self, answer: Answer) -> None:
        self.answers.labels("declined" if answer.declined else "answered").inc()
        self.origins.labels(answer.origin).inc()
        timings = answer.timings
        if "retrieval_ms" in timings:
            self.retrieval.observe(timings["retrieval_ms"] / 1000)
        if "first_token_ms" in timings:
            self.ttft.observe(timings["first_token_ms"] / 1000)
        if not answer.declined:
            self.prompt_tokens.observe(answer.usage.prompt_tokens)
            self.citations.observe(len(answer.citations))
        if answer.quoted:
            self.quotes.inc()
        if answer.origin == "curated":
            stale = any(c.stale for c in answer.citations)
            self.curated.labels("stale" if stale else "current").inc()
        self.tokens.labels("in").inc(answer.usage.prompt_tokens)
        self.tokens.labels("out").inc(answer.usage.completion_tokens)
        self.cached_tokens.inc(answer.usage.cached_tokens)
        self.prompt_seen += answer.usage.prompt_tokens
        self.cached_seen += answer.usage.cached_tokens

    def observe_handoff(self, reason: str) -> None:
        self.handoffs.labels(reason).inc()

    def observe_ingest(self, status: str, chunks: int) -> None:
        """One file through the pipeline: added, updated, unchanged or failed."""
        self.ingested.labels(status).inc()
        if status in ("added", "updated"):
            self.ingested_chunks.inc(chunks)


async def count_requests(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Middleware: requests and latency per route template (never the raw path)."""
    started = time.perf_counter()
    response = await call_next(request)
    metrics: Metrics = request.app.state.http.metrics
    route = request.scope.get("route")
    name = getattr(route, "path", None) or "unmatched"
    metrics.requests.labels(name, request.method, str(response.status_code)).inc()
    metrics.latency.labels(name).observe(time.perf_counter() - started)
    return response


router = APIRouter(tags=["ops"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (text format).",
    response_class=Response,
    response_description="Prometheus text exposition format.",
    responses={200: {"content": {CONTENT_TYPE: {"example": METRICS_EXAMPLE}}}},
    dependencies=[Depends(scraper)],
)
async def scrape(request: Request) -> Response:
    """For Prometheus to scrape: request counts and latencies per route, retrieval
    time, time to first token, tokens in and out, engine queue depth, declined answers,
    citations per answer, prefix-cache hits, ingest counts. Needs a key with the `metrics`
    (or `admin`) scope while auth is required, unless `server.public_metrics` is on (the
    counts cover every group's documents); labels never carry question or document text."""
    metrics: Metrics = request.app.state.http.metrics
    body = await asyncio.to_thread(generate_latest, metrics.registry)
    return Response(body, media_type=CONTENT_TYPE)

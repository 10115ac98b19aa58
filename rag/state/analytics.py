"""The helpdesk report: questions per day, answered vs declined, the most frequent unanswered
questions (clustered by embedding similarity), thumbs-down by cited document, latency.

Pure computation over :class:`FeedbackStore` rows; ``render_html`` draws an inline SVG chart
(no script, nothing fetched), so the page can be opened anywhere.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from rag.state.feedback import FeedbackStore
from rag.state.handoff import HandoffStore

Embed = Callable[[Sequence[str]], list[list[float]]]
Covered = Callable[[str], str | None]
"""A question -> the id of the curated answer that answers it (None: none does)."""


@dataclass(frozen=True, slots=True)
class DayStat:
    day: str
    questions: int
    declined: int

    @property
    def answer_rate(self) -> float:
        return (self.questions - self.declined) / self.questions if self.questions else 0.0


@dataclass(frozen=True, slots=True)
class Cluster:
    example: str
    count: int
    questions: list[str]
    curated: str | None = None
    """The curated answer that now answers it (its id), when one matches the example."""


@dataclass(frozen=True, slots=True)
class DocVotes:
    doc_id: str
    down: int
    up: int
    comments: list[str]
    title: str = ""
    """The document's title from the manifest ("" when it is no longer indexed)."""


@dataclass(frozen=True, slots=True)
class Report:
    days: int
    questions: int
    declined: int
    up: int
    down: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    per_day: list[DayStat] = field(default_factory=list)
    unanswered: list[Cluster] = field(default_factory=list)
    downvoted_docs: list[DocVotes] = field(default_factory=list)
    origins: dict[str, int] = field(default_factory=dict)
    """Answers by where they came from: sources (made now), cache, curated."""
    handoffs: dict[str, int] = field(default_factory=dict)
    """Hand-offs to a person by reason (declined, unsupported, thumbs_down, other)."""
    handoff_status: dict[str, int] = field(default_factory=dict)
    """The same hand-offs by state: delivered, pending, failed."""

    @property
    def answer_rate(self) -> float:
        return (self.questions - self.declined) / self.questions if self.questions else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["answer_rate"] = round(self.answer_rate, 4)
        for day, stat in zip(data["per_day"], self.per_day, strict=True):
            day["answer_rate"] = round(stat.answer_rate, 4)
        return data


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def cluster_questions(
    questions: Sequence[str], embed: Embed, *, threshold: float = 0.55
) -> list[Cluster]:
    """Greedy leader clustering on normalized embeddings: a question joins the first cluster
    whose leader it resembles (cosine >= threshold; with the default USE multilingual v3,
    paraphrases score about 0.64-0.82, a question and its Chinese translation ~0.75, and
    unrelated helpdesk questions 0.2-0.44; with all-MiniLM-L6-v2 about 0.6-0.9 and below
    0.3). Largest clusters first."""
    if not questions:
        return []
    vectors = embed(list(questions))
    leaders: list[tuple[list[float], list[str]]] = []
    for text, vec in zip(questions, vectors, strict=True):
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        unit = [v / norm for v in vec]
        for leader, members in leaders:
            if sum(a * b for a, b in zip(leader, unit, strict=True)) >= threshold:
                members.append(text)
                break
        else:
            leaders.append((unit, [text]))
    clusters = [Cluster(Counter(m).most_common(1)[0][0], len(m), m) for _, m in leaders]
    return sorted(clusters, key=lambda c: (-c.count, c.example))


def build_report(
    store: FeedbackStore,
    *,
    days: int = 30,
    embed: Embed | None = None,
    now: float | None = None,
    top: int = 10,
    titles: Mapping[str, str] | None = None,
    handoffs: HandoffStore | None = None,
    covered: Covered | None = None,
) -> Report:
    """The report over the last ``days``; ``titles`` (doc id -> title, from the manifest)
    names the thumbs-down documents, so a reader need not look ids up; ``handoffs`` adds the
    hand-offs to a person; ``covered`` marks the unanswered clusters a curated answer now
    answers."""
    now = time.time() if now is None else now
    since = now - days * 86400
    answers = store.answers(since)
    feedback = store.all_feedback(since)
    per_day: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for a in answers:
        day = dt.datetime.fromtimestamp(a.created_at, dt.UTC).date().isoformat()
        per_day[day][0] += 1
        per_day[day][1] += int(a.declined)
    unanswered_questions = [a.question for a in answers if a.declined and a.question]
    clusters = cluster_questions(unanswered_questions, embed) if embed else []
    if covered is not None:
        clusters[:top] = [replace(c, curated=covered(c.example)) for c in clusters[:top]]
    counts = handoffs.counts(since) if handoffs is not None else None
    by_answer = {a.answer_id: a for a in answers}
    votes: dict[str, list[Any]] = defaultdict(lambda: [0, 0, []])
    for f in feedback:
        answer = by_answer.get(f.answer_id)
        for doc in answer.doc_ids if answer else ():
            entry = votes[doc]
            entry[0 if f.rating == "down" else 1] += 1
            if f.rating == "down" and f.comment:
                entry[2].append(f.comment)
    names = titles or {}
    docs = [DocVotes(d, v[0], v[1], v[2], names.get(d, "")) for d, v in votes.items() if v[0]]
    latencies = [a.latency_ms for a in answers if not a.declined and a.latency_ms > 0]
    return Report(
        days=days,
        questions=len(answers),
        declined=sum(a.declined for a in answers),
        up=sum(f.rating == "up" for f in feedback),
        down=sum(f.rating == "down" for f in feedback),
        latency_p50_ms=statistics.median(latencies) if latencies else None,
        latency_p95_ms=percentile(latencies, 95),
        per_day=[DayStat(d, q, n) for d, (q, n) in sorted(per_day.items())],
        unanswered=clusters[:top],
        downvoted_docs=sorted(docs, key=lambda d: (-d.down, d.doc_id))[:top],
        origins=dict(Counter(a.origin for a in answers if not a.declined)),
        handoffs=counts.by_reason if counts else {},
        handoff_status=counts.by_status if counts else {},
    )


def _chart(report: Report) -> str:
    width, height, pad = 720, 220, 30
    days = report.per_day
    if not days:
        return "<p>No questions in this period.</p>"
    peak = max(d.questions for d in days) or 1
    step = (width - 2 * pad) / len(days)
    bars, points = [], []
    for i, d in enumerate(days):
        x = pad + i * step
        h = (height - 2 * pad) * d.questions / peak
        bars.append(
            f'<rect x="{x + step * 0.1:.1f}" y="{height - pad - h:.1f}" width="{step * 0.8:.1f}"'
            f' height="{h:.1f}" fill="#9db7e0"><title>{d.day}: {d.questions} questions'
            f"</title></rect>"
        )
        y = height - pad - (height - 2 * pad) * d.answer_rate
        points.append(f"{x + step / 2:.1f},{y:.1f}")
    line = f'<polyline points="{" ".join(points)}" fill="none" stroke="#1f7a3a" stroke-width="2"/>'
    labels = (
        f'<text x="{pad}" y="{height - 8}" font-size="11">{html.escape(days[0].day)}</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">'
        f"{html.escape(days[-1].day)}</text>"
        f'<text x="{pad}" y="14" font-size="11">bars: questions per day (max {peak}); '
        "line: share answered (0-100%)</text>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="Questions per day and answer rate">'
        f"{''.join(bars)}{line}{labels}</svg>"
    )


def render_html(report: Report) -> str:
    def row(*cells: object) -> str:
        return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"

    p50 = f"{report.latency_p50_ms:.0f} ms" if report.latency_p50_ms is not None else "n/a"
    p95 = f"{report.latency_p95_ms:.0f} ms" if report.latency_p95_ms is not None else "n/a"
    unanswered = "".join(
        row(
            c.count,
            c.example,
            "; ".join(sorted(set(c.questions))[:5]),
            f"yes ({c.curated})" if c.curated else "no",
        )
        for c in report.unanswered
    )
    origins = ", ".join(f"{k} {v}" for k, v in sorted(report.origins.items())) or "none"
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(report.handoffs.items())) or "none"
    states = ", ".join(f"{k} {v}" for k, v in sorted(report.handoff_status.items()))
    docs = "".join(
        row(d.title or "(no longer indexed)", d.doc_id, d.down, d.up, "; ".join(d.comments[:3]))
        for d in report.downvoted_docs
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Helpdesk report</title><style>body{{font:14px system-ui,sans-serif;margin:24px;}}
table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{border:1px solid #ccc;padding:4px 8px;
text-align:left}}</style></head><body>
<h1>Helpdesk report, last {report.days} days</h1>
<p>{report.questions} questions, {report.answer_rate:.0%} answered, {report.declined} declined;
feedback {report.up} up / {report.down} down; latency p50 {p50}, p95 {p95}.</p>
<p>Answers by origin: {html.escape(origins)}. Hand-offs to a person: {html.escape(reasons)}
{f"({html.escape(states)})" if states else ""}.</p>
{_chart(report)}
<h2>Most frequent unanswered questions</h2>
<table><tr><th>count</th><th>example</th><th>variants</th><th>curated answer</th></tr>
{unanswered}</table>
<h2>Thumbs-down by cited document</h2>
<table><tr><th>title</th><th>doc_id</th><th>down</th><th>up</th><th>comments</th></tr>{docs}</table>
</body></html>
"""

"""The documents API on the real app: upload into the ingest pipeline (searchable at once),
list and inspect only what the caller may read, delete with the ingest scope; analytics for
admins only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.asgi import ready_client
from tests.conftest import KB_DIR

pytestmark = pytest.mark.slow

HR_TEXT = "Relocation allowance code ZEBRA-4471 covers moving costs up to 9,000 euros.\n" * 3


@pytest.fixture(scope="module")
async def api(make_settings: Any, smol_engine: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    from serving.app import create_app

    settings = make_settings(
        auth={"required": True, "rate_per_minute": 0},
        ingest={"group_rules": [{"pattern": "*payroll*", "groups": ["finance"]}]},
    )
    app = create_app(settings, engine=smol_engine)
    async with ready_client(app) as client:
        yield client, app.state.rag


def key(state: Any, scopes: list[str], groups: list[str]) -> dict[str, str]:
    _, secret = state.keys.create("t", scopes, groups)
    return {"Authorization": f"Bearer {secret}"}


async def test_upload_list_search_delete(api: tuple[httpx.AsyncClient, Any]) -> None:
    client, state = api
    reader = key(state, ["ask"], ["everyone"])
    loader = key(state, ["ask", "ingest"], ["everyone", "hr"])
    faq = (KB_DIR / "faq-printing.txt").read_bytes()
    files = [
        ("files", ("faq-printing.txt", faq, "text/plain")),
        ("files", ("payload.exe", b"MZ\x90\x00", "application/octet-stream")),
    ]
    assert (await client.post("/v1/documents", files=files, headers=reader)).status_code == 403
    refused = await client.post(
        "/v1/documents", files=files, data={"groups": "finance"}, headers=loader
    )
    assert refused.status_code == 403 and "finance" in refused.json()["error"]["message"]

    up = await client.post("/v1/documents", files=files, headers=loader)
    assert up.status_code == 200, up.text
    by_name = {r["filename"]: r for r in up.json()["results"]}
    assert by_name["faq-printing.txt"]["status"] == "added"
    assert by_name["payload.exe"]["status"] == "failed" and by_name["payload.exe"]["error"]
    hr_files = [("files", ("../../relocation.md", HR_TEXT.encode(), "text/markdown"))]
    hr = await client.post("/v1/documents", files=hr_files, data={"groups": "hr"}, headers=loader)
    [hr_result] = hr.json()["results"]
    assert hr_result["status"] == "added"
    # A name with folders is made plain, tagged so that it cannot fold into another name.
    assert hr_result["filename"].startswith("relocation-") and hr_result["filename"].endswith(".md")
    hr_id = hr_result["doc_id"]

    scraper = key(state, ["metrics"], ["everyone"])
    scraped = await client.get("/metrics", headers=scraper)
    assert scraped.status_code == 200, scraped.text
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    by_status = {
        s.labels["status"]: s.value
        for s in families["kb_ingest_documents"].samples
        if s.name == "kb_ingest_documents_total"
    }
    assert by_status == {"added": 2.0, "failed": 1.0}  # the 403s ingested nothing
    chunks = families["kb_ingest_chunks"].samples[0].value
    assert chunks == by_name["faq-printing.txt"]["chunks"] + hr_result["chunks"]
    assert families["kb_index_documents"].samples[0].value == 2

    seen = (await client.get("/v1/documents", headers=reader)).json()
    assert seen["total"] == 1 and seen["documents"][0]["title"]
    assert (await client.get("/v1/documents", headers=loader)).json()["total"] == 2
    assert (await client.get(f"/v1/documents/{hr_id}", headers=reader)).status_code == 404
    meta = (await client.get(f"/v1/documents/{hr_id}", headers=loader)).json()
    assert meta["groups"] == ["hr"] and meta["chunks"] >= 1

    query = {"query": "ZEBRA-4471 relocation allowance", "mode": "keyword"}
    hits = (await client.post("/v1/retrieve", json=query, headers=loader)).json()["hits"]
    assert hits and hits[0]["doc_id"] == hr_id  # the keyword index followed the upload
    hidden = (await client.post("/v1/retrieve", json=query, headers=reader)).json()["hits"]
    assert all(h["doc_id"] != hr_id for h in hidden)

    assert (await client.delete(f"/v1/documents/{hr_id}", headers=reader)).status_code == 403
    gone = await client.delete(f"/v1/documents/{hr_id}", headers=loader)
    assert gone.status_code == 200 and gone.json()["chunks"] >= 1
    assert (await client.get(f"/v1/documents/{hr_id}", headers=loader)).status_code == 404
    after = (await client.post("/v1/retrieve", json=query, headers=loader)).json()["hits"]
    assert all(h["doc_id"] != hr_id for h in after)


async def test_analytics_is_for_admins(api: tuple[httpx.AsyncClient, Any]) -> None:
    client, state = api
    asker = key(state, ["ask"], ["everyone"])
    loader = key(state, ["ingest"], ["everyone"])  # (unchanged if the test above added it)
    faq = [("files", ("faq-printing.txt", (KB_DIR / "faq-printing.txt").read_bytes()))]
    assert (await client.post("/v1/documents", files=faq, headers=loader)).status_code == 200
    await client.post(
        "/v1/ask", json={"question": "Where is the shared print queue?"}, headers=asker
    )
    [record] = [a for a in state.feedback.answers() if a.subject.startswith("key:")][-1:]
    assert record.top_score is not None and 0 < record.top_score <= 1  # the retrieval score
    assert (await client.get("/v1/analytics", headers=asker)).status_code == 403
    admin = key(state, ["admin"], ["everyone"])
    report = await client.get("/v1/analytics?days=7", headers=admin)
    assert report.status_code == 200, report.text
    assert report.json()["questions"] >= 1 and "answer_rate" in report.json()
    page = await client.get("/v1/analytics?days=7&format=html", headers=admin)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<svg" in page.text and "<script" not in page.text
    assert (await client.get("/v1/analytics?format=pdf", headers=admin)).status_code == 422


async def test_metrics_need_a_metrics_key_while_auth_is_required(
    api: tuple[httpx.AsyncClient, Any], make_settings: Any, smol_engine: Any
) -> None:
    """Issue 19: /metrics answered without a key, and its counts (documents, chunks, uploads)
    cover every group's documents. Now: a key with the metrics or admin scope, or
    ``server.public_metrics: true``."""
    client, state = api
    assert (await client.get("/metrics")).status_code == 401
    asker = await client.get("/metrics", headers=key(state, ["ask", "ingest"], ["hr"]))
    assert asker.status_code == 403 and "metrics" in asker.json()["error"]["message"]
    for scopes in (["metrics"], ["admin"]):
        got = await client.get("/metrics", headers=key(state, scopes, ["everyone"]))
        assert got.status_code == 200 and "kb_index_documents" in got.text, scopes

    from serving.app import create_app

    public = make_settings(auth={"required": True}, server={"public_metrics": True})
    app = create_app(public, engine=smol_engine)  # no lifespan: only /metrics is asked
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as open_client:
        assert (await open_client.get("/metrics")).status_code == 200
    app.state.rag.db.close()


POLICY_HR = "Severance for directors is code OSPREY-88, two months per year.\n" * 3
POLICY_FAKE = "Severance is zero for everyone, says the new policy.\n" * 3


async def test_an_upload_never_replaces_or_reveals_a_restricted_document(
    api: tuple[httpx.AsyncClient, Any],
) -> None:
    """Issue 19, finding 2: an everyone-scope ingest key uploading ``policy.txt`` over HR's
    ``policy.txt`` got ``updated``, and HR's document then held the attacker's text."""
    client, state = api
    hr = key(state, ["ask", "ingest"], ["hr"])
    outsider = key(state, ["ask", "ingest"], ["everyone"])
    first = await client.post(
        "/v1/documents",
        files=[("files", ("policy.txt", POLICY_HR.encode(), "text/plain"))],
        data={"groups": "hr"},
        headers=hr,
    )
    [mine] = first.json()["results"]
    assert mine["status"] == "added", first.text
    for groups in ({}, {"groups": "everyone"}):  # rules' default, and explicit groups
        attack = await client.post(
            "/v1/documents",
            files=[("files", ("policy.txt", POLICY_FAKE.encode(), "text/plain"))],
            data=groups,
            headers=outsider,
        )
        [theirs] = attack.json()["results"]
        # No oracle: the same outcome as for a name nobody used; another document.
        assert theirs["status"] in ("added", "unchanged") and theirs["doc_id"] != mine["doc_id"]
    kept = (await client.get(f"/v1/documents/{mine['doc_id']}/source", headers=hr)).json()
    assert "OSPREY-88" in kept["passages"][0]["text"]
    meta = (await client.get(f"/v1/documents/{mine['doc_id']}", headers=hr)).json()
    assert meta["groups"] == ["hr"]
    blind = await client.get(f"/v1/documents/{mine['doc_id']}/source", headers=outsider)
    assert blind.status_code == 404


async def test_distinct_upload_names_never_fold_into_one(
    api: tuple[httpx.AsyncClient, Any],
) -> None:
    client, state = api
    loader = key(state, ["ingest"], ["everyone"])
    results = []
    for n, name in enumerate(["a\\b.txt", "/x/b.txt", "b.txt"]):
        body = f"Distinct note number {n} about the b file, code FOLD-{n}.\n".encode()
        up = await client.post(
            "/v1/documents", files=[("files", (name, body, "text/plain"))], headers=loader
        )
        [result] = up.json()["results"]
        results.append(result)
    assert [r["status"] for r in results] == ["added"] * 3
    assert len({r["doc_id"] for r in results}) == 3
    assert len({r["filename"] for r in results}) == 3


async def test_ingest_rules_never_put_an_upload_in_the_uploaders_foreign_groups(
    api: tuple[httpx.AsyncClient, Any],
) -> None:
    """Issue 19, finding 7: without explicit groups a rule (``*payroll*`` -> finance) put an
    everyone key's upload into ``finance``, a group the uploader is not in."""
    client, state = api
    outsider = key(state, ["ingest"], ["everyone"])
    files = [("files", ("payroll-notes.txt", b"Payroll runs on the 25th.\n", "text/plain"))]
    refused = await client.post("/v1/documents", files=files, headers=outsider)
    assert refused.status_code == 403
    assert "finance" in refused.json()["error"]["message"]
    assert "groups" in refused.json()["error"]["message"]
    finance = key(state, ["ask", "ingest"], ["finance"])
    ok = await client.post("/v1/documents", files=files, headers=finance)
    [result] = ok.json()["results"]
    assert result["status"] == "added"
    meta = (await client.get(f"/v1/documents/{result['doc_id']}", headers=finance)).json()
    assert meta["groups"] == ["finance"]


async def test_the_body_cap_counts_bytes_received_before_auth(
    api: tuple[httpx.AsyncClient, Any],
) -> None:
    """Issue 19, finding 4: the limit read only ``Content-Length``; a chunked body with no
    key was read (and parsed) whole before the 401. Now the first bytes over the cap end the
    request with a 413: the rest is never pulled from the client."""
    client, state = api
    limit = state.settings.auth.max_body_kb * 1024
    piece = b"x" * 65536
    for path in ("/v1/ask", "/v1/retrieve", "/v1/chat/completions", "/v1/feedback"):
        pulled = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal pulled
            for _ in range(64):  # 4 MiB in all, never declared
                pulled += len(piece)
                yield piece

        resp = await client.post(path, content=body(), headers={"Content-Type": "application/json"})
        assert resp.status_code == 413, (path, resp.status_code, resp.text)
        assert resp.json()["error"]["code"] == "payload_too_large"
        assert pulled <= limit + 2 * len(piece), (path, pulled)
    declared = await client.post(
        "/v1/ask", content=b"{}" + b" " * limit, headers={"Content-Type": "application/json"}
    )
    assert declared.status_code == 413


async def test_a_request_id_is_echoed_only_when_short_and_plain(
    api: tuple[httpx.AsyncClient, Any],
) -> None:
    client, _ = api
    assert (await client.get("/healthz", headers={"X-Request-ID": "abc-123"})).headers[
        "x-request-id"
    ] == "abc-123"
    for sent in ("x" * 200_000, "evil\x1b[31mred", "a b"):
        got = (await client.get("/healthz", headers={"X-Request-ID": sent})).headers
        assert got["x-request-id"] != sent and len(got["x-request-id"]) == 16


async def test_a_failed_upload_leaves_no_file_behind(api: tuple[httpx.AsyncClient, Any]) -> None:
    client, state = api
    loader = key(state, ["ingest"], ["everyone"])
    files = [("files", ("broken.pdf", b"%PDF-1.4 not really a pdf", "application/pdf"))]
    up = await client.post("/v1/documents", files=files, headers=loader)
    [result] = up.json()["results"]
    assert result["status"] == "failed" and result["error"]
    uploads = state.settings.paths.data_dir / "uploads"
    assert not list(uploads.rglob("broken.pdf*"))


async def test_callers_see_document_paths_never_server_paths(
    api: tuple[httpx.AsyncClient, Any],
) -> None:
    """Issue 27, finding 7: ``/v1/documents`` showed the absolute server path of an upload,
    and its citations too; every view now shows the same path, never the server's."""
    client, state = api
    loader = key(state, ["ask", "ingest"], ["everyone"])
    text = b"The badge printer code is HERON-5520; ask reception for a badge.\n" * 3
    files = [("files", ("badges.md", text, "text/markdown"))]
    up = await client.post("/v1/documents", files=files, headers=loader)
    [result] = up.json()["results"]
    assert result["status"] in {"added", "updated"}, up.text
    doc_id = result["doc_id"]
    meta = await client.get(f"/v1/documents/{doc_id}", headers=loader)
    listed = await client.get("/v1/documents?limit=100", headers=loader)
    query = {"query": "HERON-5520 badge printer", "mode": "keyword"}
    hits = (await client.post("/v1/retrieve", json=query, headers=loader)).json()["hits"]
    source = await client.get(f"/v1/documents/{doc_id}/source", headers=loader)
    assert meta.json()["source"] == "badges.md"
    assert hits[0]["doc_id"] == doc_id and hits[0]["source"] == "badges.md"
    assert source.json()["source"] == "badges.md"
    server = str(state.settings.paths.data_dir)
    for resp in (meta, listed, source):
        assert server not in resp.text, resp.text

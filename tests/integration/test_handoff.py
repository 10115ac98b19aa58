"""Hand-off to a person, end to end: the real app hands declined and thumbed-down answers to
a real webhook receiver (HMAC checked) and a real SMTP server (STARTTLS, login), both as
processes; a helpdesk that is down gets the hand-off when it is back, and a `rag-serve`
process killed with SIGKILL loses nothing and sends nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.asgi import ready_client
from tests.e2e.serverproc import start_server
from tests.handoff_receivers import SMTP_USER, Receivers, handoff_env, receivers
from tests.procs import stop_group
from tests.servers import free_port

pytestmark = pytest.mark.slow

DECLINED = "What is the capital of Mongolia?"
ANSWERED = "What is the guest Wi-Fi password?"


@pytest.fixture(scope="module")
def helpdesk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receivers]:
    with receivers(tmp_path_factory.mktemp("helpdesk"), free_port(), free_port()) as made:
        yield made


@pytest.fixture(scope="module")
def secrets_env(helpdesk: Receivers) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in helpdesk.env().items():
            mp.setenv(name, value)
        yield


def handoff_settings(sample_kb: Any, tmp: Path, handoff: dict[str, Any]) -> Any:
    from rag.config import HandoffSettings

    return sample_kb.model_copy(
        update={
            "handoff": HandoffSettings.model_validate(handoff),
            "answer": sample_kb.answer.model_copy(update={"mode": "extractive"}),
            "state": sample_kb.state.model_copy(
                update={"url": f"sqlite:///{tmp / 'state.sqlite3'}"}
            ),
        }
    )


@pytest.fixture(scope="module")
async def client(
    sample_kb: Any,
    smol_engine: Any,
    helpdesk: Receivers,
    secrets_env: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[httpx.AsyncClient]:
    from serving.app import create_app

    tmp = tmp_path_factory.mktemp("handoff-app")
    app = create_app(handoff_settings(sample_kb, tmp, helpdesk.settings()), engine=smol_engine)
    async with ready_client(app) as c:
        yield c


async def ask(client: httpx.AsyncClient, question: str, **extra: Any) -> dict[str, Any]:
    resp = await client.post("/v1/ask", json={"question": question, **extra})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def post_for(helpdesk: Receivers, handoff_id: str) -> list[dict[str, Any]]:
    return [p for p in helpdesk.posts() if p["key"] == handoff_id]


def mails_for(helpdesk: Receivers, handoff_id: str) -> list[Any]:
    return [m for m in helpdesk.mails() if m[0]["X-Rag-Handoff-Id"] == handoff_id]


async def test_a_declined_answer_reaches_the_helpdesk_signed_by_webhook_and_by_mail(
    client: httpx.AsyncClient, helpdesk: Receivers
) -> None:
    first = await ask(client, "Who approves travel to Mars?")
    answer = await ask(client, DECLINED, conversation_id=first["conversation_id"])
    assert answer["declined"]
    resp = await client.post(
        "/v1/handoff",
        json={
            "answer_id": answer["answer_id"],
            "conversation_id": answer["conversation_id"],
            "reason": "declined",
            "comment": "Needed for a visa form",
            "contact": "alice@example.com",
        },
    )
    assert resp.status_code == 200, resp.text
    made = resp.json()
    assert made["status"] == "delivered"
    assert made["ticket_id"].startswith("HD-")
    assert made["ticket_id"] in made["message"]
    assert {c["channel"]: c["status"] for c in made["channels"]} == {
        "email": "delivered",
        "webhook": "delivered",
    }

    [post] = post_for(helpdesk, made["handoff_id"])
    assert post["valid"] and not post["repeat"]
    ticket = post["body"]
    assert ticket["question"] == DECLINED
    assert ticket["reason"] == "declined"
    assert ticket["comment"] == "Needed for a visa form"
    assert ticket["contact"] == "alice@example.com"
    assert [t["role"] for t in ticket["transcript"]] == ["user", "assistant"] * 2
    assert ticket["transcript"][0]["text"] == "Who approves travel to Mars?"
    assert ticket["transcript"][2]["text"] == DECLINED
    assert ticket["caller"]["groups"] == ["everyone"]
    assert ticket["answer_id"] == answer["answer_id"]

    [(mail, how)] = mails_for(helpdesk, made["handoff_id"])
    assert how["tls"] and how["login"] == SMTP_USER
    assert how["to"] == ["helpdesk@example.com"]
    assert mail["Message-ID"] == f"<{made['handoff_id']}@rag-handoff>"
    assert mail["Reply-To"] == "alice@example.com"
    assert DECLINED in mail["Subject"]
    text = mail.get_content()
    assert f"Question: {DECLINED}" in text and "Who approves travel to Mars?" in text

    status = await client.get(f"/v1/handoff/{made['handoff_id']}")
    assert status.json()["ticket_id"] == made["ticket_id"]


async def test_a_thumbed_down_answer_carries_its_cited_documents_and_is_handed_off_once(
    client: httpx.AsyncClient, helpdesk: Receivers
) -> None:
    answer = await ask(client, ANSWERED)
    assert not answer["declined"] and answer["citations"]
    rated = await client.post(
        "/v1/feedback", json={"answer_id": answer["answer_id"], "rating": "down"}
    )
    assert rated.status_code == 200
    body = {"answer_id": answer["answer_id"], "reason": "thumbs_down"}
    made = (await client.post("/v1/handoff", json=body)).json()
    again = (await client.post("/v1/handoff", json=body)).json()
    assert again["handoff_id"] == made["handoff_id"]
    assert again["ticket_id"] == made["ticket_id"]

    [post] = post_for(helpdesk, made["handoff_id"])
    titles = {d["title"] for d in post["body"]["documents"]}
    cited = {c["title"] for c in answer["citations"]}
    assert titles == cited
    assert all(d["source"] for d in post["body"]["documents"])
    assert len(mails_for(helpdesk, made["handoff_id"])) == 1


async def test_bad_requests_say_what_to_send(client: httpx.AsyncClient) -> None:
    nothing = await client.post("/v1/handoff", json={"reason": "other"})
    assert nothing.status_code == 422
    assert "answer_id" in nothing.json()["error"]["message"]
    unknown = await client.post("/v1/handoff", json={"answer_id": "0" * 32})
    assert unknown.status_code == 404
    missing = await client.get("/v1/handoff/H-NOTHING")
    assert missing.status_code == 404


async def test_a_helpdesk_that_is_down_gets_the_handoff_when_it_is_back(
    sample_kb: Any,
    smol_engine: Any,
    secrets_env: None,
    tmp_path: Path,
) -> None:
    from serving.app import create_app

    with receivers(tmp_path, free_port(), free_port(), up=False) as down:
        settings = handoff_settings(sample_kb, tmp_path, down.settings())
        app = create_app(settings, engine=smol_engine)
        async with ready_client(app) as c:
            resp = await c.post("/v1/handoff", json={"question": "Can someone reset my badge?"})
            made = resp.json()
            assert made["status"] == "pending" and made["ticket_id"] is None
            assert "Queued" in made["message"]
            assert all(
                ch["attempts"] >= 1 and "unreachable" in ch["last_error"] for ch in made["channels"]
            )
            await asyncio.sleep(1.5)  # a few retries, with backoff, while it is down
            tries = (await c.get(f"/v1/handoff/{made['handoff_id']}")).json()["channels"]
            assert all(ch["attempts"] >= 2 for ch in tries)

            down.start()
            deadline = time.monotonic() + 20
            while True:
                now = (await c.get(f"/v1/handoff/{made['handoff_id']}")).json()
                if now["status"] == "delivered" and all(
                    ch["status"] == "delivered" for ch in now["channels"]
                ):
                    break
                assert time.monotonic() < deadline, now
                await asyncio.sleep(0.2)
            assert now["ticket_id"].startswith("HD-")
            metrics = (await c.get("/metrics")).text
            assert 'kb_handoffs{status="delivered"} 1.0' in metrics
            assert 'kb_handoff_delivery_tries_total{result="failed"}' in metrics
        [post] = down.posts()
        assert post["body"]["question"] == "Can someone reset my badge?"
        assert len(down.mails()) == 1


def wait_for(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/healthz").status_code == 200:
                return
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def test_handoffs_survive_kill_9_of_the_server_and_are_sent_once(
    sample_kb: Any, tmp_path: Path
) -> None:
    """Three hand-offs queued while the helpdesk is down; the server is killed with SIGKILL;
    the helpdesk comes back; a new server process delivers each exactly once."""
    with receivers(tmp_path, free_port(), free_port(), up=False) as helpdesk:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **helpdesk.env(),
            **handoff_env(helpdesk, wait_s="0.5"),
            "RAG_LLM__BACKEND": "openai",  # no model: hand-offs need none
            "RAG_LLM__BASE_URL": "http://127.0.0.1:9/v1",
            "RAG_LLM__MODEL": "gpt-oss-120b",
        }
        proc = start_server(sample_kb.store.path, tmp_path, port, env)
        try:
            wait_for(base, proc, tmp_path / "server.log")
            made = [
                httpx.post(
                    f"{base}/v1/handoff", json={"question": f"Question {n} for a person"}
                ).json()
                for n in range(3)
            ]
            assert [m["status"] for m in made] == ["pending"] * 3
            os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            stop_group(proc, grace_s=5)
        ids = {m["handoff_id"] for m in made}

        helpdesk.start()
        proc = start_server(sample_kb.store.path, tmp_path, port, env)
        try:
            wait_for(base, proc, tmp_path / "server.log")
            deadline = time.monotonic() + 30
            while len({p["key"] for p in helpdesk.posts()}) < 3 or len(helpdesk.mails()) < 3:
                assert time.monotonic() < deadline, (helpdesk.posts(), helpdesk.mails())
                time.sleep(0.2)
            time.sleep(1.0)  # anything sent twice would arrive meanwhile
            states = [httpx.get(f"{base}/v1/handoff/{i}").json()["status"] for i in ids]
        finally:
            stop_group(proc, signal.SIGINT)
        posts = helpdesk.posts()
        assert sorted(p["key"] for p in posts) == sorted(ids)
        assert not any(p["repeat"] for p in posts)
        assert sorted(m["X-Rag-Handoff-Id"] for m, _ in helpdesk.mails()) == sorted(ids)
        assert states == ["delivered"] * 3
        assert json.dumps(posts)  # the records parse: nothing half-written

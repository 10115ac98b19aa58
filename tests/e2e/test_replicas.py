"""Several replicas as deployed (issue 25): a real PostgreSQL (the state), a real ``chroma run``
(the vectors), two ``rag-serve`` processes with their own folders, and haproxy in front with
the repository's own configuration (``examples/deploy/haproxy.cfg``, its Docker-DNS server
line replaced by the two replicas' addresses).

The replicas share nothing but the two servers: a conversation, a key's revocation and a
rate limit must hold across them, an ingest made by the CLI (a third process, its own
folders) must reach both, killing one mid-answer must fail only its own stream, and a
restart of both must lose nothing.

The replicas answer through one vLLM server process (``llm.backend: openai``, the session's
SmolLM2 server from ``tests/vllm_servers.py``), as replicas in front of a GPU server do: what
is under test is the state they share, and a replica then starts (and restarts) in seconds
instead of loading its own engine (about 80 s of the suite on two cores). The in-process
engine is under test everywhere else.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.state.apikeys import KeyStore
from rag.state.db import StateDB
from tests.chroma_server import ChromaServer
from tests.conftest import ASSETS, KB_DIR, REPO
from tests.e2e.serverproc import start_server
from tests.integration.remote_servers import VllmServer
from tests.postgres_server import PostgresServer
from tests.procs import OWN_GROUP, stop_group
from tests.servers import free_port, wait_ready
from tests.vllm_servers import SMOL_NAME

pytestmark = pytest.mark.slow

HAPROXY_CFG = REPO / "examples" / "deploy" / "haproxy.cfg"
BURST = 40  # each caller's burst; the rate (1 a minute) refills nothing during the test
VPN = "What is the name of the company VPN client?"


@dataclass
class Replica:
    name: str
    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Deployment:
    env: dict[str, str]
    replicas: list[Replica]
    lb: str
    state_url: str
    ingest_folder: Path

    def start(self) -> None:
        """Start the replicas that are not running; wait until each is ready."""
        starting = [r for r in self.replicas if r.proc is None]
        for r in starting:
            r.proc = start_server(r.folder / "store", r.folder, r.port, self.env)
        for r in starting:
            assert r.proc is not None
            wait_ready(r.proc, r.base, r.folder / "server.log")

    def stop(self, sig: signal.Signals = signal.SIGINT) -> None:
        for r in self.replicas:
            if r.proc is not None:
                stop_group(r.proc, sig)
                r.proc = None

    def ingest(self, *args: str, machine: Path | None = None) -> subprocess.CompletedProcess[str]:
        """The real CLI on a machine of its own (its own store and BM25 folders; the
        manifest is in the shared state): the ingest machine, or another ``machine``."""
        folder = machine or self.ingest_folder
        return subprocess.run(
            [sys.executable, "-m", "ingest.cli", *args, "--json"],
            capture_output=True,
            text=True,
            env={
                **self.env,
                "RAG_STORE__PATH": str(folder / "store"),
                "RAG_PATHS__DATA_DIR": str(folder),
            },
            cwd=REPO,
            timeout=300,
            check=False,
        )

    def key(self, name: str) -> tuple[str, str]:
        db = StateDB(self.state_url)
        try:
            key, secret = KeyStore(db).create(name, ["ask"], ["everyone"])
        finally:
            db.close()
        return key.key_id, secret


def haproxy_config(port: int, replicas: list[Replica], folder: Path) -> Path:
    """The repository's haproxy.cfg on 127.0.0.1, with the replicas as static servers."""
    text = HAPROXY_CFG.read_text(encoding="utf-8")
    text = text.replace("bind *:8000", f"bind 127.0.0.1:{port}")
    text = re.sub(r"\nresolvers docker\n(    .*\n)+", "\n", text)
    servers = "".join(f"    server {r.name} 127.0.0.1:{r.port} check\n" for r in replicas)
    text, replaced = re.subn(r"    server-template .*\n", servers, text)
    assert replaced == 1, "examples/deploy/haproxy.cfg lost its server-template line"
    path = folder / "haproxy.cfg"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def deployment(
    pg_server: PostgresServer,
    chroma_server: ChromaServer,
    smol_server: VllmServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("replicas")
    state_url = pg_server.create_database()
    env = {
        **os.environ,
        "RAG_PROFILE": "test",
        "RAG_PATHS__ASSETS_DIR": str(ASSETS),
        "RAG_STORE__MODE": "http",
        "RAG_STORE__HOST": chroma_server.host,
        "RAG_STORE__PORT": str(chroma_server.port),
        "RAG_STORE__DATABASE": f"replicas_{uuid.uuid4().hex[:8]}",
        "RAG_STATE__URL": state_url,
        "RAG_STATE__POLL_INTERVAL_S": "0.5",
        "RAG_AUTH__RATE_PER_MINUTE": "1",
        "RAG_AUTH__BURST": str(BURST),
        "RAG_LLM__MAX_TOKENS": "160",
        "RAG_LLM__BACKEND": "openai",
        "RAG_LLM__BASE_URL": smol_server.base_url,
        "RAG_LLM__MODEL": SMOL_NAME,
    }
    replicas = [Replica(f"rag{i}", free_port(), root / f"rag{i}") for i in (1, 2)]
    for r in replicas:
        r.folder.mkdir()
    ingest_folder = root / "ingest"
    ingest_folder.mkdir()
    lb_port = free_port()
    deploy = Deployment(env, replicas, f"http://127.0.0.1:{lb_port}", state_url, ingest_folder)
    added = deploy.ingest("add", str(KB_DIR))
    assert added.returncode == 0, added.stdout + added.stderr
    lb_log = (root / "haproxy.log").open("wb")
    lb = subprocess.Popen(
        ["haproxy", "-db", "-f", str(haproxy_config(lb_port, replicas, root))],
        stdout=lb_log,
        stderr=subprocess.STDOUT,
        **OWN_GROUP,
    )
    try:
        deploy.start()
        wait_balanced(deploy)
        yield deploy
    finally:
        deploy.stop()
        stop_group(lb)
        lb_log.close()


def wait_balanced(deploy: Deployment, seconds: float = 30) -> None:
    """Until haproxy's health checks have both replicas up (each answers through it)."""
    deadline = time.monotonic() + seconds
    seen: set[str] = set()
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            seen.add(httpx.get(f"{deploy.lb}/readyz", timeout=5).headers.get("x-replica", ""))
        if {r.name for r in deploy.replicas} <= seen:
            return
        time.sleep(0.2)
    pytest.fail(f"haproxy did not balance over both replicas (saw {sorted(seen)})")


def ask(base: str, question: str, **extra: Any) -> httpx.Response:
    return httpx.post(f"{base}/v1/ask", json={"question": question, **extra}, timeout=180)


def retrieve(base: str, query: str, key: str, mode: str = "keyword") -> httpx.Response:
    return httpx.post(
        f"{base}/v1/retrieve",
        json={"query": query, "k": 3, "mode": mode},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_a_conversation_started_on_one_replica_continues_on_the_other(
    deployment: Deployment,
) -> None:
    one, two = deployment.replicas
    first = ask(one.base, VPN)
    assert first.status_code == 200, first.text
    issued = first.json()["conversation_id"]
    # Anonymous callers continue only ids the service holds: another replica that did not
    # know this one would issue a new id (issue 19's rule), so keeping it proves it is shared.
    follow = ask(two.base, "After how many hours does it disconnect?", conversation_id=issued)
    assert follow.status_code == 200, follow.text
    assert follow.json()["conversation_id"] == issued
    assert any(c["source"].endswith("it-wifi-and-vpn.md") for c in follow.json()["citations"])
    unknown = ask(two.base, VPN, conversation_id="made-up-by-a-visitor")
    assert unknown.json()["conversation_id"] != "made-up-by-a-visitor"


def test_a_revoked_key_is_refused_by_both_at_once(deployment: Deployment) -> None:
    key_id, secret = deployment.key("revoke-me")
    for r in deployment.replicas:
        assert retrieve(r.base, "VPN", secret).status_code == 200
    revoked = deployment.ingest("keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    for r in deployment.replicas:
        refused = retrieve(r.base, "VPN", secret)
        assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]


def test_the_rate_limit_holds_across_both_replicas(deployment: Deployment) -> None:
    _, secret = deployment.key("limited")
    served: dict[str, int] = {}
    for _ in range(BURST):
        resp = retrieve(deployment.lb, "VPN", secret)
        assert resp.status_code == 200, resp.text
        served[resp.headers["x-replica"]] = served.get(resp.headers["x-replica"], 0) + 1
    assert set(served) == {"rag1", "rag2"}  # both replicas spent from the one bucket
    for r in deployment.replicas:
        refused = retrieve(r.base, "VPN", secret)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1


def test_a_document_ingested_while_they_run_is_found_by_both(
    deployment: Deployment, tmp_path: Path
) -> None:
    doc = tmp_path / "drills.md"
    doc.write_text(
        "# Fire drills\n\nThe quarterly fire drill assembles at the Zephyrine car park, "
        "behind building C. Wardens wear orange vests.\n",
        encoding="utf-8",
    )
    _, secret = deployment.key("poller")
    added = deployment.ingest("add", str(doc))
    assert added.returncode == 0, added.stdout + added.stderr
    done_at = time.monotonic()
    found_after: dict[str, float] = {}
    found_at: dict[str, float] = {}
    last: Any = None
    polls = 0
    while len(found_after) < 2 and time.monotonic() - done_at < 30:
        for r in deployment.replicas:
            if r.name in found_after:
                continue
            polls += 1
            if polls % (BURST - 2) == 0:
                _, secret = deployment.key("poller")
            last = retrieve(r.base, "Zephyrine car park", secret).json()
            if any(h["source"].endswith("drills.md") for h in last["hits"]):
                found_after[r.name] = time.monotonic() - done_at
                found_at[r.name] = time.time()
        time.sleep(0.1)
    assert set(found_after) == {"rag1", "rag2"}, f"not found by all: {found_after} {last}"
    # From the ingest's commit (the version's time in the shared state) to each replica's
    # first answer that has the document: the poll interval (0.5 s here) plus the catch-up.
    db = StateDB(deployment.state_url)
    try:
        with db.read() as tx:
            [(changed_at,)] = tx.rows("SELECT MAX(changed_at) FROM index_versions")
    finally:
        db.close()
    delays = {name: seen - changed_at for name, seen in found_at.items()}
    print(f"\ncross-replica visibility of an ingest (keyword search), seconds: {delays}")
    assert max(delays.values()) < 10
    for r in deployment.replicas:  # each replica counts its catch-ups (no key: test profile)
        metrics = httpx.get(f"{r.base}/metrics", timeout=10).text
        assert re.search(r"^kb_index_catch_ups_total [1-9]", metrics, re.M), metrics[-500:]
    for r in deployment.replicas:  # dense search reads the Chroma server itself
        hits = retrieve(r.base, "Where do we gather during a fire drill?", secret, "dense")
        assert any(h["source"].endswith("drills.md") for h in hits.json()["hits"])


class Keys:
    """A caller's key, replaced by a new one before the rate limit (``BURST``) runs out."""

    def __init__(self, deployment: Deployment, name: str) -> None:
        self._deployment, self._name, self._used, self._secret = deployment, name, 0, ""

    def __str__(self) -> str:
        if self._used % (BURST - 5) == 0:
            _, self._secret = self._deployment.key(self._name)
        self._used += 1
        return self._secret


def listed(base: str, key: object) -> dict[str, Any]:
    page = httpx.get(
        f"{base}/v1/documents",
        params={"limit": 500},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert page.status_code == 200, page.text
    result: dict[str, Any] = page.json()
    return result


def wait_for(check: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_any_machine_ingests_and_every_replica_lists_the_same_documents(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The manifest is in the shared state: what one ingest machine added, another lists and
    deletes, and both replicas' ``/v1/documents`` show it (before, each listed its own)."""
    secret = Keys(deployment, "lister")
    on_ingest = [json.loads(x) for x in deployment.ingest("list").stdout.splitlines()]
    second = tmp_path / "second-ingest-machine"
    second.mkdir()
    on_second = [
        json.loads(x) for x in deployment.ingest("list", machine=second).stdout.splitlines()
    ]
    assert on_second == on_ingest and len(on_ingest) >= 10
    for r in deployment.replicas:
        assert listed(r.base, secret)["total"] == len(on_ingest)

    doc = tmp_path / "lockers.md"
    doc.write_text(
        "# Lockers\n\nDay lockers on floor 3 open with the Quillfeather badge.\n", encoding="utf-8"
    )
    added = deployment.ingest("add", str(doc), machine=second)
    assert added.returncode == 0, added.stdout + added.stderr
    [event] = [json.loads(x) for x in added.stdout.splitlines() if '"event": "file"' in x]
    for r in deployment.replicas:
        page = listed(r.base, secret)
        assert page["total"] == len(on_ingest) + 1
        assert event["doc_id"] in {d["doc_id"] for d in page["documents"]}

    def found(r: Replica) -> bool:
        hits = retrieve(r.base, "Quillfeather badge", str(secret)).json()["hits"]
        return any(h["source"].endswith("lockers.md") for h in hits)

    assert all(wait_for(lambda r=r: found(r)) for r in deployment.replicas)
    # Deleted from the first ingest machine, which never saw the file added.
    gone = deployment.ingest("delete", event["doc_id"])
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert all(wait_for(lambda r=r: not found(r)) for r in deployment.replicas)
    for r in deployment.replicas:
        assert listed(r.base, secret)["total"] == len(on_ingest)


def test_a_reindex_on_any_machine_is_followed_by_every_replica(
    deployment: Deployment, tmp_path: Path
) -> None:
    """``rag-ingest reindex`` fills a new collection, switches the shared pointer and raises
    the store's version: each replica moves to the new collection without a restart (the
    old collection's manifest rows are gone, so a replica left behind would list none)."""
    secret = Keys(deployment, "reindexer")
    before = listed(deployment.replicas[0].base, secret)["total"]
    third = tmp_path / "third-ingest-machine"
    third.mkdir()
    done = deployment.ingest("reindex", machine=third)
    assert done.returncode == 0, done.stdout + done.stderr
    switched = json.loads(done.stdout.splitlines()[-1])
    assert switched["event"] == "switched" and switched["active"] != switched["previous"]
    for r in deployment.replicas:
        assert wait_for(lambda r=r: listed(r.base, secret)["total"] == before), r.name
        hits = retrieve(r.base, "Where do I connect to the VPN?", str(secret), "hybrid").json()
        assert hits["hits"], f"{r.name} finds nothing after the switch"
    stats = json.loads(deployment.ingest("stats").stdout.splitlines()[-1])
    assert stats["collection"] == switched["active"]


def test_a_second_writer_is_told_who_is_writing(deployment: Deployment) -> None:
    from rag.config import load_settings
    from rag.services import store_scope
    from rag.state.shared import WriterLock

    settings = load_settings(
        "test",
        environ={k: v for k, v in deployment.env.items() if k.startswith("RAG_STORE__")},
    )
    db = StateDB(deployment.state_url)
    lock = WriterLock(db, store_scope(settings), "rag-ingest on backup-host (pid 7)")
    lock.acquire()
    try:
        busy = deployment.ingest("add", str(KB_DIR / "it-wifi-and-vpn.md"))
        assert busy.returncode != 0
        event = json.loads(busy.stdout.splitlines()[-1])
        assert event["error"] == "index_busy"
        assert "rag-ingest on backup-host (pid 7)" in event["message"]
    finally:
        lock.release()
        db.close()


def test_restarting_both_loses_no_conversation_key_or_feedback(deployment: Deployment) -> None:
    one, two = deployment.replicas
    _, secret = deployment.key("survivor")
    auth = {"Authorization": f"Bearer {secret}"}
    first = httpx.post(f"{one.base}/v1/ask", json={"question": VPN}, headers=auth, timeout=180)
    assert first.status_code == 200, first.text
    answer_id = first.json()["answer_id"]
    anonymous = ask(two.base, VPN).json()["conversation_id"]
    deployment.stop()
    deployment.start()
    assert retrieve(two.base, "VPN", secret).status_code == 200  # the key
    rated = httpx.post(
        f"{two.base}/v1/feedback",
        json={"answer_id": answer_id, "rating": "up"},
        headers=auth,
        timeout=30,
    )
    assert rated.status_code == 200, rated.text  # the answer record
    follow = ask(one.base, "After how many hours does it disconnect?", conversation_id=anonymous)
    assert follow.json()["conversation_id"] == anonymous  # the conversation


def test_killing_one_replica_mid_answer_fails_only_its_own_stream(
    deployment: Deployment,
) -> None:
    wait_balanced(deployment)  # haproxy's health checks see both (after the restart above)
    by_name = {r.name: r for r in deployment.replicas}
    body = {"question": VPN, "stream": True}
    with httpx.Client(timeout=180) as client, contextlib.ExitStack() as streams:
        # One open answer on each replica. Round robin alternates, but a health check that
        # lands while the loaded CI machine is slow can take a replica out for a moment
        # (inter 2s, rise 1): a stream that lands on a replica already covered is closed and
        # another is opened a little later.
        by_replica: dict[str, httpx.Response] = {}
        for _ in range(20):
            request = client.build_request("POST", f"{deployment.lb}/v1/ask", json=body)
            opened = client.send(request, stream=True)
            if opened.headers["x-replica"] in by_replica:
                opened.close()
                time.sleep(0.5)
                continue
            streams.callback(opened.close)
            by_replica[opened.headers["x-replica"]] = opened
            if len(by_replica) == 2:
                break
        assert set(by_replica) == {"rag1", "rag2"}
        doomed, survivor = by_replica["rag1"], by_replica["rag2"]
        doomed_lines = doomed.iter_lines()
        assert next(line for line in doomed_lines if line.startswith("event:"))
        victim = by_name[doomed.headers["x-replica"]]
        assert victim.proc is not None
        stop_group(victim.proc, signal.SIGKILL)  # mid-answer: its first event is out
        victim.proc = None
        events: list[str] = []
        try:
            events.extend(line for line in doomed_lines if line.startswith("event:"))
        except httpx.TransportError:
            events.append("cut")  # haproxy closes the client's connection mid-body
        assert events and "event: done" not in events, events
        survived = [line for line in survivor.iter_lines() if line.startswith("event:")]
        assert survived[-1] == "event: done"
    # The load balancer sends new questions to the replica that is left.
    for _ in range(3):
        resp = ask(deployment.lb, VPN)
        assert resp.status_code == 200 and resp.headers["x-replica"] != victim.name

"""The hand-off tests' receivers as real processes: the webhook (tests/webhook_receiver.py)
and an SMTP server with STARTTLS and a login (tests/smtp_server.py), each startable on a
chosen port, stoppable, and startable again (a helpdesk that is down, then back)."""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.procs import OWN_GROUP, stop_group

WEBHOOK_SECRET = "handoff-test-secret-0123456789abcdef"
SMTP_USER = "helpdesk-bot"
SMTP_PASSWORD = "smtp-test-password-42"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost (and its key), valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class Receivers:
    """Both receivers' ports and records; :meth:`start` and :meth:`stop` bring them up and
    down (their records survive)."""

    root: Path
    webhook_port: int
    smtp_port: int
    cert: Path = field(init=False)
    key: Path = field(init=False)
    _procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cert, self.key = self_signed(self.root)
        (self.root / "mail").mkdir(exist_ok=True)
        self.log.touch()

    @property
    def log(self) -> Path:
        return self.root / "webhook.jsonl"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/hooks/helpdesk"

    def settings(self) -> dict[str, Any]:
        """The ``handoff`` section that sends to these receivers (fast retries for tests)."""
        return {
            "webhook": {"url": self.webhook_url},
            "email": {
                "to": ["helpdesk@example.com"],
                "sender": "assistant@example.com",
                "host": "127.0.0.1",
                "port": self.smtp_port,
                "ca_file": str(self.cert),
                "timeout_s": 5,
            },
            "poll_interval_s": 0.2,
            "retry_base_s": 0.3,
            "retry_max_s": 1.0,
            "lease_extra_s": 1.0,
            "wait_s": 5,
        }

    def env(self) -> dict[str, str]:
        return {
            "KB_HANDOFF_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "KB_HANDOFF_SMTP_USER": SMTP_USER,
            "KB_HANDOFF_SMTP_PASSWORD": SMTP_PASSWORD,
        }

    def start(self) -> None:
        tests = REPO / "tests"
        mail = str(self.root / "mail")
        commands = [
            [str(tests / "webhook_receiver.py"), str(self.webhook_port), WEBHOOK_SECRET],
            [str(tests / "smtp_server.py"), str(self.smtp_port), str(self.cert), str(self.key)],
        ]
        commands[0].append(str(self.log))
        commands[1].extend([SMTP_USER, SMTP_PASSWORD, mail])
        for command in commands:
            proc = subprocess.Popen(
                [sys.executable, *command], stdout=subprocess.PIPE, text=True, **OWN_GROUP
            )
            self._procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        while self._procs:
            stop_group(self._procs.pop(), grace_s=10)

    def posts(self) -> list[dict[str, Any]]:
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    def mails(self) -> list[tuple[EmailMessage, dict[str, Any]]]:
        found = []
        for eml in sorted((self.root / "mail").glob("*.eml"), key=lambda p: int(p.stem)):
            parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            meta = json.loads(eml.with_suffix(".json").read_text(encoding="utf-8"))
            found.append((parsed, meta))
        return found


def handoff_env(helpdesk: Receivers, **extra: str) -> dict[str, str]:
    """``helpdesk.settings()`` as ``RAG_HANDOFF__...`` variables for a server process."""
    handoff = helpdesk.settings()
    return {
        "RAG_HANDOFF__WEBHOOK__URL": helpdesk.webhook_url,
        "RAG_HANDOFF__EMAIL__TO": "[helpdesk@example.com]",
        "RAG_HANDOFF__EMAIL__HOST": "127.0.0.1",
        "RAG_HANDOFF__EMAIL__PORT": str(helpdesk.smtp_port),
        "RAG_HANDOFF__EMAIL__CA_FILE": str(helpdesk.cert),
        "RAG_HANDOFF__RETRY_BASE_S": str(handoff["retry_base_s"]),
        "RAG_HANDOFF__RETRY_MAX_S": str(handoff["retry_max_s"]),
        "RAG_HANDOFF__POLL_INTERVAL_S": str(handoff["poll_interval_s"]),
        "RAG_HANDOFF__LEASE_EXTRA_S": str(handoff["lease_extra_s"]),
        "RAG_HANDOFF__WEBHOOK__TIMEOUT_S": "5",
        "RAG_HANDOFF__EMAIL__TIMEOUT_S": "5",
        **{f"RAG_HANDOFF__{k.upper()}": v for k, v in extra.items()},
    }


@contextlib.contextmanager
def receivers(
    root: Path, webhook_port: int, smtp_port: int, *, up: bool = True
) -> Iterator[Receivers]:
    """Receivers on the given ports (started unless ``up`` is False), stopped at the end."""
    made = Receivers(root, webhook_port, smtp_port)
    try:
        if up:
            made.start()
        yield made
    finally:
        made.stop()

"""The e-mail channel (the standard library's ``smtplib``): the ticket as a plain-text
message over SMTP, upgraded with STARTTLS before anything else is said (and before the
login), with the hand-off id as its ``Message-ID`` so a mailbox or ticketing system that
receives a repeat recognises it."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from rag.config import EmailSettings
from rag.errors import DeliveryError
from rag.handoff.ticket import ticket_text
from rag.state.handoff import Handoff

SUBJECT_CHARS = 80


def message_for(handoff: Handoff, sender: str, to: list[str]) -> EmailMessage:
    payload = handoff.payload
    question = " ".join(str(payload.get("question", "")).split())
    if len(question) > SUBJECT_CHARS:
        question = question[: SUBJECT_CHARS - 1] + "…"
    msg = EmailMessage()
    msg["Subject"] = f"[Hand-off {handoff.handoff_id}] {question}"
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(handoff.created_at, usegmt=True)
    msg["Message-ID"] = f"<{handoff.handoff_id}@rag-handoff>"  # the same on every try
    msg["X-Rag-Handoff-Id"] = handoff.handoff_id
    contact = str(payload.get("contact") or "")
    if "@" in contact and "\n" not in contact and "\r" not in contact:
        msg["Reply-To"] = contact
    msg.set_content(ticket_text(payload))
    return msg


class EmailChannel:
    name = "email"

    def __init__(self, cfg: EmailSettings, username: str | None, password: str | None) -> None:
        if not cfg.to:
            raise ValueError("an e-mail channel needs handoff.email.to")
        self._cfg = cfg
        self.timeout_s = cfg.timeout_s
        self._username = username
        self._password = password

    def send(self, handoff: Handoff) -> str | None:
        cfg = self._cfg
        msg = message_for(handoff, cfg.sender, list(cfg.to))
        where = f"{cfg.host}:{cfg.port}"
        try:
            with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
                smtp.ehlo()
                if cfg.starttls:
                    if not smtp.has_extn("starttls"):
                        raise DeliveryError(
                            f"the SMTP server {where} does not offer STARTTLS; enable it there, "
                            "or set handoff.email.starttls: false for a server on this machine"
                        )
                    context = ssl.create_default_context(
                        cafile=str(cfg.ca_file) if cfg.ca_file else None
                    )
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if self._username:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"the SMTP server {where} refused the login ({exc.smtp_code}); check "
                f"{cfg.username_env} and {cfg.password_env}"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"the SMTP server {where} answered {exc.smtp_code}") from exc
        except ssl.SSLError as exc:
            raise DeliveryError(
                f"TLS with the SMTP server {where} failed ({exc.reason}); handoff.email.ca_file "
                "names the CA to trust"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"the SMTP server {where} is unreachable ({type(exc).__name__})"
            ) from exc
        return None

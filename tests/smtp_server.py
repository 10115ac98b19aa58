"""A real SMTP server process (aiosmtpd) for the hand-off tests: STARTTLS with the given
certificate, and AUTH (PLAIN/LOGIN) with one user, allowed only after STARTTLS; each message
received is written to FOLDER as ``<ns>.eml`` (its arrival time), with how it came in
``<ns>.json`` (TLS or not, the login).

``python tests/smtp_server.py PORT CERT KEY USER PASSWORD FOLDER``; prints ``ready``.
"""

from __future__ import annotations

import json
import signal
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def main() -> None:
    port, cert, key, user, password, folder = sys.argv[1:7]
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (
            data.login.decode() == user and data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            n = time.time_ns()  # unique across restarts of this server
            meta = {
                "tls": session.ssl is not None,
                "login": session.auth_data.decode() if session.auth_data else "",
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
            }
            (out / f"{n}.json").write_text(json.dumps(meta), encoding="utf-8")
            # The .eml last, through a rename: a reader that sees it finds both whole.
            (out / f"{n}.tmp").write_bytes(envelope.original_content or envelope.content)
            (out / f"{n}.tmp").rename(out / f"{n}.eml")
            return "250 Message accepted for delivery"

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=int(port),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()

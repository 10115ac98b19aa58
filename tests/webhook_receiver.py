"""A ticketing system's inbound webhook, as a real HTTP server process for the hand-off tests.

``python tests/webhook_receiver.py PORT SECRET LOG``: checks each POST's HMAC signature
(``X-Rag-Signature`` over ``<X-Rag-Timestamp>.<body>``) and its timestamp, records it as one
JSON line in LOG (the idempotency key, whether the signature held, the body), and answers
``{"ticket_id": "HD-<n>"}``; a repeated ``Idempotency-Key`` gets its first ticket back and is
recorded with ``repeat: true``. A bad signature gets 401. Prints ``ready`` once listening.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Lock


def main() -> None:
    port, secret, log = int(sys.argv[1]), sys.argv[2].encode(), Path(sys.argv[3])
    tickets: dict[str, str] = {}
    # Tickets already given survive a restart of the receiver (it reads its log).
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry.get("ticket"):
                tickets.setdefault(entry["key"], entry["ticket"])
    lock = Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            stamp = self.headers.get("X-Rag-Timestamp", "")
            given = self.headers.get("X-Rag-Signature", "")
            mac = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
            valid = hmac.compare_digest(given, "sha256=" + mac) and fresh
            key = self.headers.get("Idempotency-Key", "")
            with lock:
                repeat = key in tickets
                ticket = tickets.get(key) or f"HD-{1000 + len(tickets) + 1}"
                if valid:
                    tickets[key] = ticket
                entry = {
                    "key": key,
                    "valid": valid,
                    "repeat": repeat,
                    "ticket": ticket if valid else None,
                    "body": json.loads(body) if valid else None,
                }
                with log.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(entry, ensure_ascii=False) + "\n")
            reply = json.dumps({"ticket_id": ticket} if valid else {"error": "bad signature"})
            self.send_response(200 if valid else 401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

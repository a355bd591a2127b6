"""A tiny Dockyard webhook receiver that verifies signatures (Python standard library only).

Run it, then subscribe its URL (an admin must allow a private address for a local test):

    WEBHOOK_SECRET=whsec_... python webhook_receiver.py 9000

How a delivery is verified (the Standard Webhooks scheme, https://www.standardwebhooks.com):

1. The signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}``, the two first from
   the request headers of the same names, the body exactly as received (do not re-encode it).
2. The key is the secret without its ``whsec_`` prefix, base64-decoded.
3. The signature is ``base64(HMAC-SHA256(key, signed content))``; ``webhook-signature`` holds
   one or more space-separated ``v1,<signature>`` entries: accept if any one matches,
   comparing in constant time.
4. Refuse a timestamp more than five minutes from now (a replayed request), and treat a
   ``webhook-id`` you have already handled as a repeat: delivery is at least once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

TOLERANCE_S = 300


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> bool:
    """Whether ``body`` with these headers was signed with ``secret`` within the tolerance."""
    try:
        message_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        signatures = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


class Receiver(BaseHTTPRequestHandler):
    """Answers 204 to a verified delivery (and prints it), 401 to anything else."""

    secret = os.environ.get("WEBHOOK_SECRET", "")
    seen: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        if not verify(self.secret, headers, body):
            self.send_response(401)
            self.end_headers()
            return
        if headers["webhook-id"] not in self.seen:  # a retry of a delivery already handled
            self.seen.add(headers["webhook-id"])
            event = json.loads(body)
            status = event["data"].get("status") or event["data"].get("state", "")
            print(f"{event['time']} {event['type']} {event.get('subject')} {status}", flush=True)
        self.send_response(204)  # any 2xx acknowledges; anything else is retried
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: only the events are printed."""


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()

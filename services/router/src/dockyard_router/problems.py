"""The router's problem documents (RFC 9457), built here only: pure, no I/O.

Every answer the router makes itself is one: the data plane's (a path that serves nothing,
an upstream that failed, a request it will not pass on) written as a whole HTTP/1.1
response by :func:`problem_response`, and the ops pages' served by its internal app with
:func:`problem_body`. The type is ``https://dockyard.dev/problems/<slug>``, the title the
status's reason phrase, as the API's problems are.
"""

from __future__ import annotations

import json

__all__ = ["MEDIA_TYPE", "PROBLEM_BASE", "REASONS", "problem_body", "problem_response"]

MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://dockyard.dev/problems/"

REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    410: "Gone",
    422: "Unprocessable Content",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}
"""The statuses the router answers with itself, and their reason phrases."""


def problem_body(status: int, slug: str, detail: str) -> bytes:
    """The JSON of a problem document."""
    return json.dumps(
        {
            "type": PROBLEM_BASE + slug,
            "title": REASONS[status],
            "status": status,
            "detail": detail,
        }
    ).encode()


def problem_response(
    status: int, slug: str, detail: str, *, keep_alive: bool, headers: bytes = b""
) -> bytes:
    """A whole HTTP/1.1 response carrying a problem; ``headers`` are more header lines,
    each ending with CRLF (``Retry-After: 1\\r\\n``)."""
    body = problem_body(status, slug, detail)
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%sConnection: %s\r\n\r\n%s"
        % (
            status,
            REASONS[status].encode(),
            MEDIA_TYPE.encode(),
            len(body),
            headers,
            b"keep-alive" if keep_alive else b"close",
            body,
        )
    )

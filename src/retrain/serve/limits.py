"""A bound on the requests in progress, so a flood cannot starve the others.

Past ``max_concurrent_requests`` a request is answered 503 with ``Retry-After`` at once,
before its body is read: a server that accepted everything would hold every body in memory
and answer everyone late.  The probes (``/ping``, ``/health``, ``/version``, ``/metrics``)
are never refused, so a load balancer and Prometheus still see a busy server as alive.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBES = frozenset({"/ping", "/health", "/version", "/metrics"})
RETRY_AFTER_S = 1


class ConcurrencyLimit:
    """ASGI middleware: at most ``limit`` non-probe HTTP requests in progress at once."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in PROBES:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            self.refused += 1
            await _busy(send, self.limit)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


async def _busy(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "field": "server",
                "message": f"{limit} requests are in progress (max_concurrent_requests); "
                "retry shortly",
                "status": 503,
            }
        },
        separators=(",", ":"),
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_S).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

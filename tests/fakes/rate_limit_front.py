"""Test double: a loopback front for the sandbox's pebble that rate-limits new orders.

Built on :class:`tests.fakes.ari_front.AriFront` (same proxying: pebble builds every URL on
the front). Every ``newOrder`` POST is answered ``429 rateLimited`` with the configured
``Retry-After`` instead of reaching pebble; everything else is forwarded.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.fakes.ari_front import AriFront


class RateLimitingFront(AriFront):
    """``retry_after``: the header value sent (seconds); ``new_orders``: POSTs refused."""

    retry_after = "299"
    new_orders = 0

    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        if method == "POST" and self._new_order_path and req.path == self._new_order_path:
            length = int(req.headers.get("Content-Length") or 0)
            req.rfile.read(length)
            with self._lock:
                self.new_orders += 1
            body = json.dumps(
                {
                    "type": "urn:ietf:params:acme:error:rateLimited",
                    "detail": "too many new orders recently (fake front)",
                }
            ).encode()
            headers = [
                ("Content-Type", "application/problem+json"),
                ("Retry-After", self.retry_after),
                ("Replay-Nonce", self._fresh_nonce(req)),  # RFC 8555 6.5: errors carry one
            ]
            self._reply(req, 429, headers, body)
            return
        super()._handle(req, method)

    def _fresh_nonce(self, req: BaseHTTPRequestHandler) -> str:
        """A nonce pebble will accept (fetched from its newNonce through the front)."""
        _status, _headers, data = self._forward(req, "GET", self.directory_path, b"")
        nonce_path = urlsplit(json.loads(data)["newNonce"]).path
        _status, headers, _data = self._forward(req, "HEAD", nonce_path, b"")
        return next(v for k, v in headers if k.lower() == "replay-nonce")

"""Test double: a loopback ACME front that gives pebble ACME Renewal Information (RFC 9773).

pebble 2.4 has no ``renewalInfo``. ``AriFront`` is an HTTPS reverse proxy on 127.0.0.1 in
front of the sandbox's pebble:

* every request is forwarded to pebble with the front's ``Host`` header, so pebble builds all
  its URLs (directory, orders, ``Location``) on the front and checks JWS ``url`` values
  against the front's address, exactly as if the front were the CA;
* the directory gets a ``renewalInfo`` URL on the front;
* ``GET <renewalInfo>/<certID>`` answers the RFC 9773 JSON body
  ``{"suggestedWindow": {"start": ..., "end": ...}, "explanationURL": ...}`` with a
  ``Retry-After`` header, from a window set per certificate id (or a default window), or an
  HTTP error when told to fail;
* every ``newOrder`` JWS payload (base64url JSON) is decoded and recorded, so a test can check
  the ``replaces`` field a client sent.

It serves with the sandbox's listener certificate (127.0.0.1), which clients already trust
through the sandbox CA bundle.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

RENEWAL_INFO_PATH = "/renewalInfo/"
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WindowAnswer:
    """What the front answers for one certificate id."""

    start: dt.datetime | None = None
    end: dt.datetime | None = None
    retry_after: int | None = 21600
    status: int = 200  # anything else: an error answer
    explanation_url: str | None = None


class AriFront:
    """The proxy; use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self, directory_url: str, ca_bundle: Path, cert: Path, key: Path) -> None:
        upstream = urlsplit(directory_url)
        self.upstream_host = upstream.hostname or "127.0.0.1"
        self.upstream_port = upstream.port or 443
        self.directory_path = upstream.path or "/dir"
        self._upstream_ctx = ssl.create_default_context(cafile=str(ca_bundle))
        self._server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_ctx.load_cert_chain(str(cert), str(key))
        self.windows: dict[str, WindowAnswer] = {}
        self.default: WindowAnswer | None = None  # None: 404 for unknown certificate ids
        self.orders: list[dict[str, Any]] = []
        self.renewal_info_requests: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._new_order_path: str | None = None

    @classmethod
    def for_sandbox(cls, sandbox: Any) -> AriFront:
        """A front for a running sandbox (``acmeflow.sandbox.SandboxInfo``)."""
        tls = Path(sandbox.home) / "tls"
        return cls(
            sandbox.directory_url,
            Path(sandbox.ca_bundle),
            tls / "listener.pem",
            tls / "listener.key",
        )

    # -- configuration -----------------------------------------------------------------------

    def set_window(
        self,
        cert_id: str | None,
        start: dt.datetime,
        end: dt.datetime,
        *,
        retry_after: int | None = 21600,
        explanation_url: str | None = None,
    ) -> None:
        """Serve this suggested window for ``cert_id`` (``None``: every certificate)."""
        answer = WindowAnswer(start, end, retry_after, 200, explanation_url)
        with self._lock:
            if cert_id is None:
                self.default = answer
            else:
                self.windows[cert_id] = answer

    def set_error(
        self, cert_id: str | None, status: int, *, retry_after: int | None = None
    ) -> None:
        """Answer ``renewalInfo`` for ``cert_id`` (``None``: every certificate) with an error."""
        answer = WindowAnswer(status=status, retry_after=retry_after)
        with self._lock:
            if cert_id is None:
                self.default = answer
            else:
                self.windows[cert_id] = answer

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT`` of the front."""
        assert self._server is not None, "the front is not started"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def directory_url(self) -> str:
        """The directory URL clients use instead of pebble's."""
        return self.base_url + self.directory_path

    @property
    def replaces_sent(self) -> list[str | None]:
        """The ``replaces`` value of every recorded newOrder (``None`` when absent)."""
        with self._lock:
            return [o.get("replaces") for o in self.orders]

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> AriFront:
        """Listen on a free loopback port and serve in a background thread."""
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_GET(self) -> None:
                front._handle(self, "GET")

            def do_HEAD(self) -> None:
                front._handle(self, "HEAD")

            def do_POST(self) -> None:
                front._handle(self, "POST")

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = self._server_ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True, name="ari-front")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> AriFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling ----------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        path = req.path
        if method == "GET" and path.startswith(RENEWAL_INFO_PATH):
            self._renewal_info(req, path[len(RENEWAL_INFO_PATH) :])
            return
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        status, headers, data = self._forward(req, method, path, body)
        # record the orders the CA created, not the ones it refused (e.g. badNonce)
        new_order = method == "POST" and path == self._new_order_path
        if new_order and self._new_order_path and status == 201:
            self._record_order(body)
        if method == "GET" and path == self.directory_path and status == 200:
            directory = json.loads(data)
            directory["renewalInfo"] = self.base_url + RENEWAL_INFO_PATH.rstrip("/")
            self._new_order_path = urlsplit(directory.get("newOrder", "")).path or None
            data = json.dumps(directory, indent=2).encode()
        self._reply(req, status, headers, data, head=method == "HEAD")

    def _forward(
        self, req: BaseHTTPRequestHandler, method: str, path: str, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPSConnection(
            self.upstream_host, self.upstream_port, context=self._upstream_ctx, timeout=60
        )
        try:
            headers = {k: v for k, v in req.headers.items() if k.lower() not in _HOP_HEADERS}
            # pebble builds its URLs (and checks JWS urls) from Host: make it the front's
            headers["Host"] = req.headers.get("Host") or urlsplit(self.base_url).netloc
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, list(response.getheaders()), data
        finally:
            conn.close()

    def _reply(
        self,
        req: BaseHTTPRequestHandler,
        status: int,
        headers: list[tuple[str, str]],
        data: bytes,
        *,
        head: bool = False,
    ) -> None:
        req.send_response(status)
        for key, value in headers:
            if key.lower() not in _HOP_HEADERS:
                req.send_header(key, value)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if not head:
            req.wfile.write(data)

    def _record_order(self, body: bytes) -> None:
        try:
            jws = json.loads(body)
            payload = json.loads(_b64url_decode(jws["payload"]))
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self.orders.append(payload)

    def _renewal_info(self, req: BaseHTTPRequestHandler, cert_id: str) -> None:
        with self._lock:
            self.renewal_info_requests.append(cert_id)
            answer = self.windows.get(cert_id, self.default)
        headers: list[tuple[str, str]] = []
        if answer is None:
            data = json.dumps(
                {"type": "urn:ietf:params:acme:error:malformed", "detail": "unknown certificate"}
            ).encode()
            headers.append(("Content-Type", "application/problem+json"))
            self._reply(req, 404, headers, data)
            return
        if answer.retry_after is not None:
            headers.append(("Retry-After", str(answer.retry_after)))
        if answer.status != 200 or answer.start is None or answer.end is None:
            headers.append(("Content-Type", "application/problem+json"))
            data = json.dumps(
                {"type": "urn:ietf:params:acme:error:serverInternal", "detail": "ARI unavailable"}
            ).encode()
            self._reply(req, answer.status if answer.status != 200 else 500, headers, data)
            return
        body: dict[str, Any] = {
            "suggestedWindow": {"start": _rfc3339(answer.start), "end": _rfc3339(answer.end)}
        }
        if answer.explanation_url:
            body["explanationURL"] = answer.explanation_url
        headers.append(("Content-Type", "application/json"))
        self._reply(req, 200, headers, json.dumps(body).encode())

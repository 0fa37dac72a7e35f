"""A recording proxy in front of the sandbox's pebble: counts, at the CA side, the orders in
flight at once (from the new-order response to the order turning valid or invalid).

It terminates TLS with pebble's own listener certificate and forwards every request with its
``Host`` header unchanged: pebble builds the URLs it hands out (and checks the URL in each
JWS) from that header, so clients keep talking to the proxy. Pebble's paths: new orders at
``/order-plz``, orders at ``/my-order/<id>``, finalization at ``/finalize-order/<id>``.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from acmeflow.sandbox import SandboxInfo

NEW_ORDER_PATH = "/order-plz"
ORDER_PATHS = ("/my-order/", "/finalize-order/")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass
class OrderCounter:
    """Orders the CA has open, and the most it ever had at once."""

    open: set[str] = field(default_factory=set)
    placed: int = 0
    most_at_once: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def placed_order(self, order_id: str) -> None:
        with self.lock:
            self.placed += 1
            self.open.add(order_id)
            self.most_at_once = max(self.most_at_once, len(self.open))

    def closed_order(self, order_id: str) -> None:
        with self.lock:
            self.open.discard(order_id)

    def reset(self) -> None:
        with self.lock:
            self.open.clear()
            self.placed = self.most_at_once = 0


def _order_id(url_or_path: str) -> str:
    return urlsplit(url_or_path).path.rstrip("/").rsplit("/", 1)[-1]


def _handler(upstream: tuple[str, int], counter: OrderCounter) -> type[BaseHTTPRequestHandler]:
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            connection = http.client.HTTPSConnection(*upstream, context=insecure, timeout=60)
            try:
                connection.request(self.command, self.path, body=body, headers=dict(self.headers))
                response = connection.getresponse()
                payload = response.read()
            finally:
                connection.close()
            self._count(response, payload)
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _count(self, response: http.client.HTTPResponse, payload: bytes) -> None:
            if self.command != "POST":
                return
            if self.path == NEW_ORDER_PATH and response.status == 201:
                counter.placed_order(_order_id(response.getheader("Location") or ""))
            elif self.path.startswith(ORDER_PATHS) and response.status == 200:
                status = json.loads(payload or b"{}").get("status")
                if status in ("valid", "invalid"):
                    counter.closed_order(_order_id(self.path))

        do_GET = do_HEAD = do_POST = _forward

    return Forward


@contextmanager
def order_counting_proxy(sandbox: SandboxInfo) -> Iterator[tuple[str, OrderCounter]]:
    """A proxy in front of ``sandbox``'s pebble: its directory URL and its counter."""
    pebble = urlsplit(sandbox.directory_url)
    assert pebble.hostname and pebble.port
    counter = OrderCounter()
    handler = _handler((pebble.hostname, pebble.port), counter)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_dir = Path(sandbox.home) / "tls"
    tls.load_cert_chain(tls_dir / "listener.pem", tls_dir / "listener.key")
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}{pebble.path}", counter
    finally:
        server.shutdown()
        server.server_close()

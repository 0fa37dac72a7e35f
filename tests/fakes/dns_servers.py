"""Test doubles: DNS servers on loopback UDP that misbehave the way real ones do.

* ``SilentDNS`` receives queries and never answers (a frozen or firewalled server);
* ``NxdomainResolver`` answers NXDOMAIN to every query, root included: a public resolver
  asked about a private zone.
"""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode


class _UDPServer:
    """A UDP socket on 127.0.0.1 served by a background thread; a context manager."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name=type(self).__name__)

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries += 1
            reply = self.answer(data)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def answer(self, data: bytes) -> bytes | None:
        """The reply to one query (``None``: no reply)."""
        raise NotImplementedError

    def __enter__(self) -> _UDPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class SilentDNS(_UDPServer):
    """Takes every query, answers none."""

    def answer(self, data: bytes) -> bytes | None:
        return None


class NxdomainResolver(_UDPServer):
    """Answers NXDOMAIN (recursion available) to every query."""

    def answer(self, data: bytes) -> bytes | None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query, recursion_available=True)
        response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

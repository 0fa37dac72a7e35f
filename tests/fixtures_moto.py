"""moto in server mode: a real AWS-compatible HTTP endpoint on 127.0.0.1 (ACM, Route 53, S3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from tests.support import free_port


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """The endpoint of a moto server for the module's tests."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()

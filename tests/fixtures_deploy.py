"""Fixtures of the deployment tests: a test PKI and a fake NetScaler ADC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import TestPKI
from tests.fakes.nitro import FakeNitroServer

NITRO_PASSWORD_ENV = "E2E_NITRO_PASSWORD"


@pytest.fixture(scope="session")
def pki() -> TestPKI:
    """A CA that issues test certificates (leaf + intermediate + root), for the session."""
    return TestPKI()


@pytest.fixture
def adc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNitroServer]:
    """A fake NetScaler NITRO API over TLS; its password is in ``$E2E_NITRO_PASSWORD``."""
    workdir = tmp_path / "adc"
    workdir.mkdir()
    with FakeNitroServer(tls=True, workdir=workdir) as fake:
        monkeypatch.setenv(NITRO_PASSWORD_ENV, fake.password)
        yield fake

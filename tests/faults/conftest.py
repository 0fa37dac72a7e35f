"""Fixtures of the fault suite (the shared ones come from tests/conftest.py).

After every fault test that used an acmeflow home, what the fault left is swept the way the
``sweep`` flow does it (its task functions, every age) and then nothing may remain: no staged
private key, no ``running`` history entry, no journaled TXT value, no journaled order. A test
whose fault keeps something on purpose says so with ``@pytest.mark.leaves_debris("why")``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from acmeflow.config.settings import get_settings
from tests.faults.debris import assert_swept_clean


@pytest.fixture(autouse=True)
def nothing_left_after_sweep(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Sweep after the test (its environment still set) and assert no debris remains."""
    yield
    if "home_factory" not in request.fixturenames or request.node.get_closest_marker(
        "leaves_debris"
    ):
        return
    home = os.environ.get("ACMEFLOW_HOME")
    get_settings.cache_clear()
    if not home or not (get_settings().home / "acmeflow.db").exists():
        return
    assert_swept_clean(home)

"""Shared pytest fixtures. Keep this file general: other suites add their fixtures here."""

from __future__ import annotations

import os

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from acmeflow.sandbox import (
    SandboxInfo,
    sandbox_answers,
    sandbox_down,
    sandbox_status,
    sandbox_up,
)

pytest_plugins = [
    "tests.fixtures_acmeflow",
    "tests.fixtures_postgres",
    "tests.fixtures_deploy",
    "tests.fixtures_pool",
    "tests.fixtures_moto",
]

# Homes of every sandbox started in this session; all stopped when the session ends.
_STARTED_SANDBOXES: list[Path] = []


def start_sandbox(tmp_path_factory: pytest.TempPathFactory, **opts: Any) -> SandboxInfo:
    """Start a fresh sandbox in a new tmp folder (options as for ``sandbox_up``).

    It is stopped at the end of the session; stop it earlier with ``sandbox_down(info.home)``.
    """
    home = tmp_path_factory.mktemp("sandbox")
    _STARTED_SANDBOXES.append(home)
    return sandbox_up(home, **opts)


@pytest.fixture(scope="session", autouse=True)
def _stop_sandboxes_at_session_end() -> Iterator[None]:
    yield
    for home in _STARTED_SANDBOXES:
        sandbox_down(home)


@pytest.fixture(scope="session")
def sandbox_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., SandboxInfo]:
    """``sandbox_factory(eab=True)``, ``sandbox_factory(nonce_reject=30)``, ...: one shared
    sandbox per set of options for the whole session, replaced when a test stopped it or it
    stopped answering (pebble can hang under load: the tests after it still get a CA).
    Tests that stop a sandbox should start their own with :func:`start_sandbox`."""
    started: dict[str, SandboxInfo] = {}

    def factory(**opts: Any) -> SandboxInfo:
        key = repr(sorted(opts.items()))
        known = started.get(key)
        if known is None or sandbox_status(known.home) is None or not sandbox_answers(known):
            if known is not None:
                sandbox_down(known.home)
            started[key] = start_sandbox(tmp_path_factory, **opts)
        return started[key]

    return factory


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., SandboxInfo]) -> SandboxInfo:
    """The session's default sandbox (pebble + BIND on loopback, no EAB)."""
    return sandbox_factory()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that starts the Prefect harness carries the ``prefect`` marker (so
    ``-m 'not prefect'`` really leaves Prefect out): refuse to run the suite otherwise."""
    unmarked = [
        item.nodeid
        for item in items
        if "prefect_harness" in getattr(item, "fixturenames", ())
        and item.get_closest_marker("prefect") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests using prefect_harness without @pytest.mark.prefect:\n  " + "\n  ".join(unmarked)
        )

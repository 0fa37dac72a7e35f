"""Fixtures of the pool tests: a home whose state is in a throwaway PostgreSQL database,
two ``prefect worker start`` processes on a process work pool, and helpers to trigger runs
and count what runs leave behind."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from acmeflow.config.settings import get_settings
from acmeflow.core.state.db import dispose_engines, open_database, session_scope
from acmeflow.core.state.models import (
    ChallengeJournalEntry,
    Lease,
    LogEntry,
    OrderInFlightRow,
    StagedKey,
)
from acmeflow.sandbox import SandboxInfo
from bench.pool import Worker, create_pool, start_workers, stop_workers
from tests.fixtures_acmeflow import Home
from tests.serve_process import api_env

POOL = "acmeflow-pool-test"

# pebble 2.4 can hang under many concurrent ACME requests (seen with 16 at once from two runs,
# and with the setup's 8 at once on a slow CI machine): a few at once per process keep the test
# CA, not acmeflow, out of the way, in the workers and in the test's own setup alike
PEBBLE_SAFE_CONCURRENCY = "3"


@pytest.fixture
def pg_home(
    home_factory: Callable[[SandboxInfo], Home],
    sandbox_factory: Callable[..., SandboxInfo],
    postgres_database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Home]:
    """A home on a sandbox without authorization reuse (every renewal meets DNS), its state
    and its certificates (the database store backend) in a fresh PostgreSQL database."""
    home = home_factory(sandbox_factory(authz_reuse=0))
    url = postgres_database()
    monkeypatch.setenv("ACMEFLOW_DATABASE_URL", url)
    monkeypatch.setenv("ACMEFLOW_STORE_BACKEND", "database")
    monkeypatch.setenv("ACMEFLOW_PER_CA_CONCURRENCY", PEBBLE_SAFE_CONCURRENCY)
    home.env.update(ACMEFLOW_DATABASE_URL=url, ACMEFLOW_STORE_BACKEND="database")
    get_settings.cache_clear()
    home.configure()
    yield home
    dispose_engines()


@pytest.fixture
def workers(pg_home: Home, tmp_path: Path) -> Iterator[list[Worker]]:
    """Two ``prefect worker start`` processes on a process pool, each running one flow run
    at a time, each with a home of its own (as on two machines: they share the PostgreSQL
    database, which holds the certificates too, the sealing key and the Prefect server)."""
    create_pool(POOL)
    env = {
        **api_env(),
        "ACMEFLOW_SECRET_KEY_FILE": str(get_settings().resolved_secret_key_file),
        "ACMEFLOW_PER_CA_CONCURRENCY": PEBBLE_SAFE_CONCURRENCY,
    }
    started = start_workers(POOL, 2, env, tmp_path / "workers", homes=tmp_path / "homes")
    try:
        yield started
    finally:  # a worker a test killed is already gone
        stop_workers(started)
        delete_pool_deployments()


def delete_pool_deployments() -> None:
    """Remove the deployments the test synced to the pool (a run a killed worker left
    Running would hold a deployment's concurrency slot for the tests after it)."""
    with get_client(sync_client=True) as client:
        for deployment in client.read_deployments(limit=200):
            if deployment.work_pool_name == POOL:
                client.delete_deployment(deployment.id)


def leftovers() -> dict[str, int]:
    """What a run may leave behind, counted in the state database."""
    with session_scope(open_database()) as s:
        return {
            "journaled TXT values": s.query(ChallengeJournalEntry).count(),
            "leases": s.query(Lease).count(),
            "running history entries": s.query(LogEntry).filter_by(status="running").count(),
            "orders in flight": s.query(OrderInFlightRow).count(),
            "staged keys": s.query(StagedKey).count(),
        }


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (from /proc), the deepest first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found[::-1]

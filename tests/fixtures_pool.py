"""Fixtures of the pool tests: a home whose state is in a throwaway PostgreSQL database,
two ``prefect worker start`` processes on a process work pool, and helpers to trigger runs
and count what runs leave behind."""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from sqlalchemy import update

from acmeflow.config.settings import get_settings
from acmeflow.core.state.db import dispose_engines, open_database, session_scope
from acmeflow.core.state.models import (
    Certificate,
    ChallengeJournalEntry,
    Lease,
    LogEntry,
    OrderInFlightRow,
)
from acmeflow.sandbox import SandboxInfo
from tests.fixtures_acmeflow import Home
from tests.serve_process import api_env

POOL = "acmeflow-pool-test"
WORKER_START_SECONDS = 90


@pytest.fixture
def pg_home(
    home_factory: Callable[[SandboxInfo], Home],
    sandbox_factory: Callable[..., SandboxInfo],
    postgres_database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Home]:
    """A home on a sandbox without authorization reuse (every renewal meets DNS), its state
    in a fresh PostgreSQL database."""
    home = home_factory(sandbox_factory(authz_reuse=0))
    url = postgres_database()
    monkeypatch.setenv("ACMEFLOW_DATABASE_URL", url)
    home.env["ACMEFLOW_DATABASE_URL"] = url
    get_settings.cache_clear()
    home.configure()
    yield home
    dispose_engines()


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def ran(self, run_id: UUID) -> bool:
        """Whether this worker ran the flow run ``run_id`` (a worker may try a run another
        one already took: the server aborts that submission)."""
        log = self.log.read_text()
        return (
            f"submitting flow run '{run_id}'" in log
            and f"Aborted submission of flow run '{run_id}'" not in log
        )


@pytest.fixture
def workers(pg_home: Home, tmp_path: Path) -> Iterator[list[Worker]]:
    """Two ``prefect worker start`` processes on a process pool, each running one flow run
    at a time."""
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
    env = {
        **api_env(),
        "ACMEFLOW_HOME": str(pg_home.path),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO",  # the runs each worker submits
        # pebble 2.4 can deadlock under many concurrent new-order requests (seen with 16 at
        # once from two runs): a few per worker keep the test CA, not acmeflow, out of the way
        "ACMEFLOW_PER_CA_CONCURRENCY": "3",
    }
    logs = [tmp_path / f"worker-{n}.log" for n in (1, 2)]
    processes = []
    for n, log in enumerate(logs, 1):
        with log.open("wb") as out:
            processes.append(
                subprocess.Popen(
                    [
                        str(Path(sys.executable).with_name("prefect")),
                        "worker",
                        "start",
                        "--pool",
                        POOL,
                        "--name",
                        f"worker-{n}",
                        "--limit",
                        "1",
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        deadline = time.monotonic() + WORKER_START_SECONDS
        while not all("started!" in log.read_text() for log in logs):
            assert all(p.poll() is None for p in processes), logs[0].read_text()[-2000:]
            assert time.monotonic() < deadline, "workers did not start in time"
            time.sleep(0.5)
        yield [Worker(process, log) for process, log in zip(processes, logs, strict=True)]
    finally:  # a worker a test killed is already gone
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        delete_pool_deployments()


def delete_pool_deployments() -> None:
    """Remove the deployments the test synced to the pool (a run a killed worker left
    Running would hold a deployment's concurrency slot for the tests after it)."""
    with get_client(sync_client=True) as client:
        for deployment in client.read_deployments(limit=200):
            if deployment.work_pool_name == POOL:
                client.delete_deployment(deployment.id)


def make_due(ids: list[int]) -> None:
    """Record the certificates as expiring in 10 days (inside the CA's 30-day window)."""
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=10)
    with session_scope(open_database()) as s:
        s.execute(
            update(Certificate)
            .where(Certificate.id.in_(ids))
            .values(not_after=soon, renewal_due_at=None)
        )


def trigger(deployment: str, **parameters: object) -> UUID:
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        return client.create_flow_run_from_deployment(found.id, parameters=parameters).id


def leftovers() -> dict[str, int]:
    """What a run may leave behind, counted in the state database."""
    with session_scope(open_database()) as s:
        return {
            "journaled TXT values": s.query(ChallengeJournalEntry).count(),
            "leases": s.query(Lease).count(),
            "running history entries": s.query(LogEntry).filter_by(status="running").count(),
            "orders in flight": s.query(OrderInFlightRow).count(),
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

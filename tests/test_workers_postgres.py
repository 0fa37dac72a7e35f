"""A pool as teams run it: one Prefect server, one PostgreSQL state database, two process
workers, 100 due certificates.

* The scheduled ``renew/renew-sandbox`` and an ad-hoc ``renew/ad-hoc`` of the same CA,
  triggered at once, one per worker: every certificate is renewed exactly once (one new
  serial, one successful renewal in its history), both runs end Completed, nothing is left.
* A worker killed with SIGKILL mid-run: the next run completes the rest and a sweep removes
  what the killed run left; no certificate is lost or half-written.

The certificates are issued for real on the sandbox, then made due by moving their recorded
expiry 10 days ahead (the renewal window is 30 days), so a renewed one is not due again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from sqlalchemy import select, update

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
from bench.bulk_renew import enroll_certificates, two_names
from tests.fixtures_acmeflow import Home
from tests.serve_process import api_env, wait_for_runs
from tests.test_issue_e2e import txt_values

pytestmark = [pytest.mark.sandbox, pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

COUNT = 100
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


def make_due(ids: list[int]) -> None:
    """Record the certificates as expiring in 10 days (inside the CA's 30-day window)."""
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=10)
    with session_scope(open_database()) as s:
        s.execute(
            update(Certificate)
            .where(Certificate.id.in_(ids))
            .values(not_after=soon, renewal_due_at=None)
        )


def seed_due(home: Home, prefix: str) -> tuple[list[int], dict[int, str | None]]:
    """COUNT certificates issued for real and made due; their ids and serials."""
    ids = enroll_certificates(COUNT, 0, prefix)
    assert len(ids) == COUNT
    with session_scope(open_database()) as s:
        serials = dict(s.execute(select(Certificate.id, Certificate.serial)).all())
    make_due(ids)
    home.ok("schedules", "sync", "--work-pool", POOL)
    return ids, serials


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


def history_of(cert_id: int) -> list[tuple[str, str, str | None, str | None]]:
    with session_scope(open_database()) as s:
        rows = s.scalars(select(LogEntry).where(LogEntry.certificate_id == cert_id))
        return [(r.kind, r.status, r.message, r.flow_run_id) for r in rows]


def test_two_overlapping_renew_runs_on_two_workers_renew_each_certificate_once(
    pg_home: Home, workers: list[Worker]
) -> None:
    assert os.environ["ACMEFLOW_DATABASE_URL"].startswith("postgresql")
    ids, before = seed_due(pg_home, "pool")
    run_ids = {  # the schedule's run and an ad-hoc one
        "scheduled": trigger("renew/renew-sandbox"),
        "ad-hoc": trigger("renew/ad-hoc", ca="sandbox"),
    }
    finished = wait_for_runs(run_ids)
    states = {name: run.state.type for name, run in finished.items()}
    logs = "\n".join(w.log.read_text()[-3000:] for w in workers)
    assert states == {"scheduled": StateType.COMPLETED, "ad-hoc": StateType.COMPLETED}, logs
    ran_by = [sum(w.ran(r) for r in run_ids.values()) for w in workers]
    assert ran_by == [1, 1], f"each worker should run one of the two runs: {ran_by}\n{logs}"

    with session_scope(open_database()) as s:
        after = dict(s.execute(select(Certificate.id, Certificate.serial)).all())
        renewals = s.execute(
            select(LogEntry.certificate_id, LogEntry.status, LogEntry.flow_run_id).where(
                LogEntry.kind == "renew"
            )
        ).all()
    assert set(leftovers().values()) == {0}, leftovers()
    succeeded = Counter(cert_id for cert_id, status, _ in renewals if status == "success")
    assert all(succeeded[cert_id] == 1 for cert_id in ids), succeeded.most_common(3)
    assert all(after[cert_id] != before[cert_id] for cert_id in ids)
    by_run = Counter((str(run), status) for _, status, run in renewals)
    # both runs met the certificates (they overlapped): what one renewed, the other skipped
    assert {run for run, _ in by_run} == {str(r) for r in run_ids.values()}, by_run
    assert sum(n for (_, status), n in by_run.items() if status == "success") == COUNT, by_run
    for index in range(0, COUNT, 10):  # a sample of the names: no challenge value left
        assert txt_values(pg_home.sandbox, f"_acme-challenge.{two_names('pool', index)[0]}") == []


def test_a_worker_killed_mid_run_the_next_run_completes_the_rest(
    pg_home: Home, workers: list[Worker]
) -> None:
    """SIGKILL to a worker and its flow run while the run's TXT values are up: the next run,
    on the other worker, renews every certificate the killed one did not store; a sweep then
    removes the killed run's TXT values. No certificate is lost or half-written."""
    ids, before = seed_due(pg_home, "killed")
    killed_run = trigger("renew/renew-sandbox")
    deadline = time.monotonic() + 120
    while leftovers()["journaled TXT values"] == 0:  # mid-run: its TXT values are up
        assert time.monotonic() < deadline, "the first run never published its TXT values"
        time.sleep(0.05)
    victim = next(w for w in workers if w.ran(killed_run))
    for pid in process_tree(victim.process.pid):  # the worker and the flow run it started
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    victim.process.wait(timeout=30)
    survivor = next(w for w in workers if w is not victim)

    next_run = trigger("renew/ad-hoc", ca="sandbox")
    finished = wait_for_runs({"next": next_run})["next"]
    assert finished.state.type == StateType.COMPLETED, survivor.log.read_text()[-3000:]
    assert survivor.ran(next_run)
    pg_home.ok("sweep", "--older-than", "1s")

    assert set(leftovers().values()) == {0}, leftovers()
    with session_scope(open_database()) as s:
        rows = {c.id: c for c in s.scalars(select(Certificate).where(Certificate.id.in_(ids)))}
        succeeded = Counter(
            s.scalars(
                select(LogEntry.certificate_id).where(
                    LogEntry.kind == "renew", LogEntry.status == "success"
                )
            )
        )
    for cert_id in ids:
        row = rows[cert_id]
        assert row.serial != before[cert_id] and succeeded[cert_id] == 1, (
            history_of(cert_id),
            survivor.log.read_text()[-4000:],
        )
        live = Path(row.folder)
        cert = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
        key = serialization.load_pem_private_key((live / "privkey.pem").read_bytes(), None)
        assert format(cert.serial_number, "x") == row.serial  # files and database agree
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    for index in range(0, COUNT, 10):
        name = two_names("killed", index)[0]
        assert txt_values(pg_home.sandbox, f"_acme-challenge.{name}") == []

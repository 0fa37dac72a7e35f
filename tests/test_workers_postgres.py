"""A pool as teams run it: one Prefect server, one PostgreSQL state database, two process
workers. 100 certificates are due; the scheduled ``renew/renew-sandbox`` and an ad-hoc
``renew/ad-hoc`` of the same CA are triggered at once, one per worker: every certificate is renewed exactly once (one new serial, one successful
renewal in its history), both runs end Completed and no TXT value is left.

The certificates are issued for real on the sandbox, then made due by moving their recorded
expiry 10 days ahead (the renewal window is 30 days), so a renewed one is not due again.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import StateType
from sqlalchemy import select, update

from acmeflow.config.settings import get_settings
from acmeflow.core.state.db import dispose_engines, open_database, session_scope
from acmeflow.core.state.models import Certificate, ChallengeJournalEntry, Lease, LogEntry
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


@pytest.fixture
def workers(pg_home: Home, tmp_path: Path) -> Iterator[list[Path]]:
    """Two ``prefect worker start`` processes on a process pool, each running one flow run
    at a time; yields their log files."""
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=POOL, type="process"), overwrite=True)
    env = {
        **api_env(),
        "ACMEFLOW_HOME": str(pg_home.path),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO",  # the runs each worker submits
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
        yield logs
    finally:
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


def test_two_overlapping_renew_runs_on_two_workers_renew_each_certificate_once(
    pg_home: Home, workers: list[Path]
) -> None:
    assert os.environ["ACMEFLOW_DATABASE_URL"].startswith("postgresql")
    ids = enroll_certificates(COUNT, 0, "pool")
    assert len(ids) == COUNT
    with session_scope(open_database()) as s:
        before = dict(s.execute(select(Certificate.id, Certificate.serial)).all())
    make_due(ids)
    pg_home.ok("schedules", "sync", "--work-pool", POOL)

    with get_client(sync_client=True) as client:  # the schedule's run and an ad-hoc one
        scheduled = client.read_deployment_by_name("renew/renew-sandbox")
        ad_hoc = client.read_deployment_by_name("renew/ad-hoc")
        run_ids = {
            "scheduled": client.create_flow_run_from_deployment(scheduled.id).id,
            "ad-hoc": client.create_flow_run_from_deployment(
                ad_hoc.id, parameters={"ca": "sandbox"}
            ).id,
        }
    finished = wait_for_runs(run_ids)
    states = {name: run.state.type for name, run in finished.items()}
    logs = "\n".join(log.read_text()[-3000:] for log in workers)
    assert states == {"scheduled": StateType.COMPLETED, "ad-hoc": StateType.COMPLETED}, logs
    ran_by = [sum(str(r) in log.read_text() for r in run_ids.values()) for log in workers]
    assert ran_by == [1, 1], f"each worker should run one of the two runs: {ran_by}\n{logs}"

    with session_scope(open_database()) as s:
        after = dict(s.execute(select(Certificate.id, Certificate.serial)).all())
        renewals = s.execute(
            select(LogEntry.certificate_id, LogEntry.status, LogEntry.flow_run_id).where(
                LogEntry.kind == "renew"
            )
        ).all()
        assert s.query(ChallengeJournalEntry).count() == 0
        assert s.query(Lease).count() == 0
    succeeded = Counter(cert_id for cert_id, status, _ in renewals if status == "success")
    assert all(succeeded[cert_id] == 1 for cert_id in ids), succeeded.most_common(3)
    assert all(after[cert_id] != before[cert_id] for cert_id in ids)
    by_run = Counter((str(run), status) for _, status, run in renewals)
    # both runs met the certificates (they overlapped): what one renewed, the other skipped
    assert {run for run, _ in by_run} == {str(r) for r in run_ids.values()}, by_run
    assert sum(n for (_, status), n in by_run.items() if status == "success") == COUNT, by_run
    for index in range(0, COUNT, 10):  # a sample of the names: no challenge value left
        assert txt_values(pg_home.sandbox, f"_acme-challenge.{two_names('pool', index)[0]}") == []

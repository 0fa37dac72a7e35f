"""A Prefect work pool of process workers on this machine, for the pool tests and
``bench.scale_out``: create the pool, start N ``prefect worker start`` processes and wait until
they poll, stop them, trigger a deployment run, and make enrolled certificates due."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from sqlalchemy import update

from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import Certificate

WORKER_START_SECONDS = 90


@dataclass
class Worker:
    """One ``prefect worker start`` process and its log."""

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


def create_pool(name: str) -> None:
    """A process work pool ``name`` (replaced when it exists)."""
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=name, type="process"), overwrite=True)


def start_workers(
    pool: str, count: int, env: Mapping[str, str], logs: Path, *, homes: Path | None = None
) -> list[Worker]:
    """``count`` workers on ``pool`` (one flow run at a time each, polling every second),
    their logs in ``logs``; returns once every one polls. With ``homes``, each worker has an
    ACMEFLOW_HOME of its own there (as on separate machines: only the state database, the
    sealing key and the Prefect server are shared)."""
    logs.mkdir(parents=True, exist_ok=True)
    worker_env = {
        **env,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO",  # the runs each worker submits
    }
    prefect = str(Path(sys.executable).with_name("prefect"))
    workers = []
    for n in range(1, count + 1):
        log = logs / f"worker-{n}.log"
        own = {"ACMEFLOW_HOME": str(homes / f"worker-{n}")} if homes is not None else {}
        with log.open("wb") as out:
            argv = [prefect, "worker", "start", "--pool", pool, "--name", f"worker-{n}"]
            process = subprocess.Popen(
                [*argv, "--limit", "1"],
                env={**worker_env, **own},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        workers.append(Worker(process, log))
    deadline = time.monotonic() + WORKER_START_SECONDS
    try:
        while not all("started!" in w.log.read_text() for w in workers):
            dead = [w for w in workers if w.process.poll() is not None]
            if dead:
                raise RuntimeError(f"a worker exited: {dead[0].log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start in time")
            time.sleep(0.5)
    except BaseException:
        stop_workers(workers)
        raise
    return workers


def stop_workers(workers: list[Worker]) -> None:
    """Stop the workers still running (SIGINT, then SIGKILL after 60 s)."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGINT)
    for worker in workers:
        try:
            worker.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.process.kill()


def trigger(deployment: str, **parameters: object) -> UUID:
    """A run of ``deployment`` (``flow/name``) with ``parameters``."""
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        return client.create_flow_run_from_deployment(found.id, parameters=parameters).id


def make_due(ids: list[int]) -> None:
    """Record the certificates as expiring in 10 days (inside a 30-day renewal window)."""
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=10)
    with session_scope(open_database()) as s:
        s.execute(
            update(Certificate)
            .where(Certificate.id.in_(ids))
            .values(not_after=soon, renewal_due_at=None)
        )

"""A run killed under ``acmeflow serve`` is cleaned up at once: Prefect marks it Crashed, the
automation ``acmeflow: sweep after a crash`` (written by serve's sync) starts ``sweep/daily``
with the run's id, and that sweep removes its TXT value, closes its history entry and releases
its lease, without waiting for the grace period."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun, StateType

from acmeflow.automations import CRASH_SWEEP
from acmeflow.config.settings import get_settings
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import ChallengeJournalEntry, Lease, LogEntry
from tests.fixtures_acmeflow import Home
from tests.serve_process import prefect_cli, served, wait_for_deployments
from tests.test_issue_e2e import txt_values

pytestmark = [pytest.mark.sandbox, pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

NAME = "crashed.example.com"
DEADLINE = 120.0


@pytest.fixture
def silent_nameserver() -> Iterator[str]:
    """host:port of a UDP socket that never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _until(what: str, check: object) -> object:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = check()  # type: ignore[operator]
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"not in {DEADLINE:.0f} s: {what}")


def _flow_run_processes(parent: int) -> list[int]:
    """Child processes of ``parent`` running a Prefect flow run."""
    children = subprocess.run(
        ["pgrep", "-P", str(parent)], capture_output=True, text=True
    ).stdout.split()
    runs = (b"spawn_main", b"prefect.engine")  # the runner's two ways of starting a run
    return [
        int(pid)
        for pid in children
        if any(mark in Path(f"/proc/{pid}/cmdline").read_bytes() for mark in runs)
    ]


def _sweep_for(run_id: str, sweep_deployment: UUID) -> FlowRun | None:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[sweep_deployment]))
        )
    return next((r for r in runs if r.parameters.get("crashed_run") == run_id), None)


def test_a_run_killed_under_serve_is_swept_at_once(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, silent_nameserver: str
) -> None:
    # the propagation check asks the zone's nameservers at a port that never answers: the
    # run waits there with its TXT value written (zone lookups and updates go to BIND)
    monkeypatch.setenv("ACMEFLOW_DNS_QUERY_PORT", silent_nameserver.rsplit(":", 1)[1])
    monkeypatch.setenv("ACMEFLOW_PROPAGATION_TIMEOUT", "300")
    get_settings.cache_clear()
    with served(tmp_path) as (serve, log):
        found = wait_for_deployments(["issue/ad-hoc", "sweep/daily"], serve, log)
        with get_client(sync_client=True) as client:
            _until(
                "the crash-sweep automation", lambda: client.read_automations_by_name(CRASH_SWEEP)
            )
        started = prefect_cli(
            "deployment",
            "run",
            "issue/ad-hoc",
            "--param",
            "ca=sandbox",
            "--param",
            f"names={json.dumps([NAME])}",
            timeout=120,
        )
        assert started.returncode == 0, started.stderr
        run_id = next(line.split()[-1] for line in started.stdout.splitlines() if "UUID:" in line)
        _until("the TXT value at BIND", lambda: txt_values(home.sandbox, f"_acme-challenge.{NAME}"))
        victims = _until("the flow-run process", lambda: _flow_run_processes(serve.pid))
        for pid in victims:  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)

        def crashed() -> bool:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(UUID(run_id)).state
            return state is not None and state.type == StateType.CRASHED

        _until("the killed run marked Crashed", crashed)
        sweep_id = found["sweep/daily"].id
        sweep = _until(
            "a finished sweep run for the crashed run",
            lambda: (r := _sweep_for(run_id, sweep_id)) and r.state and r.state.is_final() and r,
        )
        assert sweep.state.type == StateType.COMPLETED, (sweep.state, log.read_text()[-3000:])  # type: ignore[attr-defined]

    assert txt_values(home.sandbox, f"_acme-challenge.{NAME}") == []
    with session_scope(open_database()) as s:
        entry = s.query(LogEntry).filter(LogEntry.flow_run_id == run_id).one()
        assert entry.status == "failed"
        assert entry.message == f"interrupted: run {run_id} crashed"
        assert s.query(Lease).filter(Lease.flow_run_id == run_id).count() == 0
        assert s.query(ChallengeJournalEntry).count() == 0

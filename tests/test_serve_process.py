"""`acmeflow serve` as users run it: a separate process against a real Prefect server, every
deployment it serves triggered through the API with valid parameters, each run Completed.

Runs from deployments validate their parameters in a fresh process (the flow is loaded by
module path): a flow module with postponed annotations failed there on every trigger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound

from tests.fixtures_acmeflow import Home
from tests.test_issue_e2e import issue_json

pytestmark = [pytest.mark.prefect, pytest.mark.sandbox]

STARTUP_SECONDS = 120
RUN_SECONDS = 240


def wait_for_deployments(names: list[str], serve: subprocess.Popen[bytes], log: Path) -> dict:
    deadline = time.monotonic() + STARTUP_SECONDS
    found: dict[str, Any] = {}
    with get_client(sync_client=True) as client:
        while len(found) < len(names):
            assert serve.poll() is None, f"acmeflow serve exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not served in time:\n{log.read_text()[-3000:]}"
            for name in names:
                if name not in found:
                    with contextlib.suppress(ObjectNotFound):
                        found[name] = client.read_deployment_by_name(name)
            time.sleep(0.5)
    return found


def wait_for_runs(run_ids: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_SECONDS
    finished: dict[str, Any] = {}
    with get_client(sync_client=True) as client:
        while len(finished) < len(run_ids):
            assert time.monotonic() < deadline, (
                f"runs not finished in time: {set(run_ids) - set(finished)}"
            )
            for name, run_id in run_ids.items():
                if name in finished:
                    continue
                run = client.read_flow_run(run_id)
                if run.state is not None and run.state.is_final():
                    finished[name] = run
            time.sleep(0.5)
    return finished


def test_serve_runs_every_deployment_it_serves(home: Home, tmp_path: Path) -> None:
    cert_id = issue_json(home, "--name", "served.example.com")["id"]
    log = tmp_path / "serve.log"
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url).rstrip("/")
    env = {**os.environ, "PREFECT_API_URL": api_url}
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [str(Path(sys.executable).with_name("acmeflow")), "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        triggers = {
            "issue/ad-hoc": {"ca": "sandbox", "names": ["adhoc.example.com"]},
            "scan/daily": {},
            "sweep/daily": {},
            "deploy_pending/hourly": {},
            "renew/ad-hoc": {"certificate_ids": [cert_id]},
            "renew/renew-sandbox": {"ca": "sandbox"},
            "deploy/ad-hoc": {"certificate_id": cert_id},
        }
        deployments = wait_for_deployments(list(triggers), serve, log)
        with get_client(sync_client=True) as client:
            run_ids = {
                name: client.create_flow_run_from_deployment(
                    deployments[name].id, parameters=params
                ).id
                for name, params in triggers.items()
            }
        finished = wait_for_runs(run_ids)
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
    states = {name: (run.state.type, run.state.message) for name, run in finished.items()}
    failed = {n: s for n, s in states.items() if s[0] != StateType.COMPLETED}
    assert failed == {}, f"{failed}\n{log.read_text()[-4000:]}"
    listed = home.ok("certs", "list", "--json").stdout
    assert "adhoc.example.com" in listed  # the run from the UI form really issued

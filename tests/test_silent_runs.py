"""A run whose process dies with nobody left to report it (SIGKILL, no serve or worker around
it) stays Running until the "mark silent runs crashed" automation marks it Crashed.

Proactive triggers are evaluated only by a full Prefect server (`acmeflow server start`), not by
the test harness's. The automation is the one `schedules sync` writes, for a 5 s heartbeat (15
s of silence) instead of Prefect's minimum of 30 s (90 s), so the test waits seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import PrefectClient

from acmeflow.automations import upsert, zombie_automation
from acmeflow.sandbox import SandboxInfo, sandbox_down
from tests.conftest import start_sandbox
from tests.fixtures_acmeflow import Home
from tests.support import run_acmeflow

pytestmark = [pytest.mark.prefect, pytest.mark.sandbox]

HEARTBEAT_SECONDS = 5


def api(url: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def wait_for(what: str, check: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"no {what} within {seconds:g} s"
        time.sleep(0.5)
    return found


async def install_zombie_automation(url: str) -> None:
    async with PrefectClient(api=url) as client:
        await upsert(client, zombie_automation(HEARTBEAT_SECONDS))


def test_a_run_killed_with_nobody_to_report_it_is_marked_crashed(
    home_factory: Callable[[SandboxInfo], Home], tmp_path_factory: pytest.TempPathFactory
) -> None:
    sandbox = start_sandbox(tmp_path_factory)  # its own pebble: this test stops it
    home = home_factory(sandbox)
    home.configure()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["ACMEFLOW_USE_RUNNER"] = "false"  # the run in the command's process, killed below
    started = run_acmeflow("server", "start", "--json", env=env)
    assert started.returncode == 0, started.stderr
    url = json.loads(started.stdout)["url"]
    issue: subprocess.Popen[bytes] | None = None
    try:
        asyncio.run(install_zombie_automation(url))
        os.kill(sandbox.pebble_pid, signal.SIGSTOP)  # the CA stops answering: the run waits
        acmeflow = str(Path(sys.executable).with_name("acmeflow"))
        issue = subprocess.Popen(
            [acmeflow, "issue", "--ca", "sandbox", "--name", "silent.example.com"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        beat = {"filter": {"event": {"name": ["prefect.flow-run.heartbeat"]}}, "limit": 5}
        events = wait_for("heartbeat", lambda: api(url, "/events/filter", beat)["events"], 90)
        run_id = events[0]["resource"]["prefect.resource.id"].removeprefix("prefect.flow-run.")
        os.killpg(issue.pid, signal.SIGKILL)  # the run's process dies; nobody reports it
        issue.wait()

        def state() -> dict[str, Any]:
            runs = api(url, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
            return dict(runs[0]["state"])

        assert state()["type"] == "RUNNING"  # what a killed run shows until someone says
        crashed = wait_for("Crashed state", lambda: (s := state())["type"] == "CRASHED" and s, 120)
        assert crashed["message"] == f"no heartbeat for {3 * HEARTBEAT_SECONDS} s: the process died"
    finally:
        if issue is not None and issue.poll() is None:
            os.killpg(issue.pid, signal.SIGKILL)
        os.kill(sandbox.pebble_pid, signal.SIGCONT)
        sandbox_down(sandbox.home)
        run_acmeflow("server", "stop", env=env)

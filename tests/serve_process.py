"""`acmeflow serve` in a subprocess against the session's Prefect test server, and waits for
its deployments and their runs (bounded polls)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

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


def api_env() -> dict[str, str]:
    """This process's environment plus ``PREFECT_API_URL`` of the test server, for
    subprocesses (``acmeflow serve``, the ``prefect`` CLI)."""
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url).rstrip("/")
    return {**os.environ, "PREFECT_API_URL": api_url}


def prefect_cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``prefect ARGS`` (this environment's CLI) against the test server."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), *args],
        env=api_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``acmeflow serve`` running (its output in ``serve.log``); stopped with SIGINT after."""
    log = tmp_path / "serve.log"
    env = api_env()
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [str(Path(sys.executable).with_name("acmeflow")), "serve"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield serve, log
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()


def run_log(run_id: Any) -> str:
    """The log lines flow run ``run_id`` sent to the server."""
    from uuid import UUID

    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(str(run_id))]))
        )
    return "\n".join(entry.message for entry in logs)


def run_log_with(run_id: Any, *lines: str, seconds: float = 30.0) -> str:
    """The log of flow run ``run_id`` once it holds every one of ``lines`` (a run's last
    lines reach the server after its final state); fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        text = run_log(run_id)
        if all(line in text for line in lines):
            return text
        assert time.monotonic() < deadline, f"missing {lines} in the run log:\n{text}"
        time.sleep(0.5)

"""``acmeflow server start|status|stop``: a real local Prefect server remembered in the home and
used by later commands."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.support import run_acmeflow

pytestmark = [pytest.mark.prefect]


def acmeflow(
    home: Path, *args: str, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(ACMEFLOW_HOME=str(home), **(env_extra or {}))
    return run_acmeflow(*args, env=env)


def test_start_status_use_and_stop(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert acmeflow(home, "server", "status").returncode == 1
    started = acmeflow(home, "server", "start", "--json")
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    try:
        assert info["url"].startswith("http://127.0.0.1:") and info["url"].endswith("/api")
        with urllib.request.urlopen(f"{info['url']}/health", timeout=5) as answer:
            assert answer.status == 200
        assert oct((home / "server.json").stat().st_mode & 0o777) == oct(0o600)
        assert (home / "prefect").is_dir()  # its own Prefect home
        again = acmeflow(home, "server", "start", "--json")  # already up: the same server
        assert json.loads(again.stdout)["pid"] == info["pid"]
        status = acmeflow(home, "server", "status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["url"] == info["url"]

        # a later command runs its flow on that server: the run is recorded there
        scanned = acmeflow(home, "scan", "--json")
        assert scanned.returncode == 0, scanned.stderr
        request = urllib.request.Request(
            f"{info['url']}/flow_runs/filter",
            data=b"{}",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            runs = json.loads(answer.read())
        assert [r["name"] for r in runs] and {r["state_type"] for r in runs} == {"COMPLETED"}
    finally:
        stopped = acmeflow(home, "server", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not (home / "server.json").exists()
    assert acmeflow(home, "server", "status").returncode == 1

"""``acmeflow server start|status|stop``: a real local Prefect server remembered in the home and
used by later commands."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from acmeflow.processes import alive
from tests.fixtures_acmeflow import Home
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


HANDED = "run handed to the local server's runner"


@pytest.mark.sandbox
def test_commands_hand_their_runs_to_the_warm_runner_with_the_same_settings(home: Home) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    started = run_acmeflow("server", "start", "--json", env=env)
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    sock = home.path / "runner.sock"
    try:
        assert alive(info["runner_pid"], info["runner_start_time"])
        assert stat.S_ISSOCK(sock.stat().st_mode) and sock.stat().st_mode & 0o777 == 0o600

        issued = run_acmeflow("issue", "--ca", "sandbox", "--name", "warm.example.com", env=env)
        assert issued.returncode == 0, issued.stdout + issued.stderr
        assert HANDED in issued.stdout and "✓ validated: 1 challenge(s)" in issued.stdout
        assert "Certificate 1 issued for warm.example.com" in issued.stdout

        # certs list --json is answered by the runner, as the command itself would answer
        listed = run_acmeflow("certs", "list", "--json", env=env)
        own = run_acmeflow("certs", "list", "--json", env={**env, "ACMEFLOW_USE_RUNNER": "0"})
        assert listed.returncode == own.returncode == 0 and listed.stdout == own.stdout
        assert json.loads(listed.stdout)[0]["names"] == ["warm.example.com"]
        runner_log = (home.path / "runner.log").read_text()
        assert runner_log.count("answered: acmeflow certs list --json (exit 0)") == 1
        usage = run_acmeflow("certs", "list", "--json", "--bogus", env=env)
        assert usage.returncode == 2 and "No such option: --bogus" in usage.stderr

        # two commands at once: the runner runs one after the other, both are issued
        acmeflow_bin = str(Path(sys.executable).with_name("acmeflow"))
        both = [
            subprocess.Popen(
                [acmeflow_bin, "issue", "--ca", "sandbox", "--name", f"{n}.example.com"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for n in ("first", "second")
        ]
        outputs = [p.communicate(timeout=120)[0] for p in both]
        assert [p.returncode for p in both] == [0, 0], outputs
        assert all(HANDED in out for out in outputs), outputs

        # Ctrl-C while the run waits for the CA: the command stops waiting, the run goes on
        os.kill(home.sandbox.pebble_pid, signal.SIGSTOP)
        try:
            waiting = subprocess.Popen(
                [acmeflow_bin, "issue", "--ca", "sandbox", "--name", "ctrlc.example.com"],
                env={**env, "PYTHONUNBUFFERED": "1"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert waiting.stdout is not None and HANDED in waiting.stdout.readline()
            waiting.send_signal(signal.SIGINT)
            _, err = waiting.communicate(timeout=60)
        finally:
            os.kill(home.sandbox.pebble_pid, signal.SIGCONT)
        assert waiting.returncode == 130 and "the run goes on" in err, err

        def issued_names() -> list[list[str]]:
            shown = run_acmeflow("certs", "list", "--json", env=env).stdout
            return [c["names"] for c in json.loads(shown)]

        deadline = time.monotonic() + 90
        while ["ctrlc.example.com"] not in issued_names():
            assert time.monotonic() < deadline, "the interrupted command's run did not complete"
            time.sleep(0.5)

        # a catalog error met in the runner's run: its message, exit 1, no traceback
        refused = run_acmeflow("issue", "--ca", "sandbox", "--name", "cold.example.org", env=env)
        assert refused.returncode == 1 and HANDED in refused.stdout
        said = refused.stdout + refused.stderr
        assert "Certificate is missing a DNS provider name." in said and "Traceback" not in said

        # other settings than the runner's: the command runs its flow itself
        own = run_acmeflow(
            "issue", "--ca", "sandbox", "--name", "own.example.com",
            env={**env, "ACMEFLOW_MAX_WORKERS": "4"},
        )  # fmt: skip
        assert own.returncode == 0 and HANDED not in own.stdout, own.stdout + own.stderr

        # a runner gone (killed): the command runs its flow itself
        os.kill(info["runner_pid"], signal.SIGKILL)
        alone = run_acmeflow("issue", "--ca", "sandbox", "--name", "alone.example.com", env=env)
        assert alone.returncode == 0 and HANDED not in alone.stdout, alone.stdout + alone.stderr

        request = urllib.request.Request(
            f"{info['url']}/flow_runs/filter",
            data=b"{}",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            states = sorted(r["state_type"] for r in json.loads(answer.read()))
        assert states == ["COMPLETED"] * 6 + ["FAILED"]  # all on the server

        # `server status` says the runner is down; `server start` puts a new one beside it
        assert "runner down" in run_acmeflow("server", "status", env=env).stdout
        healed = json.loads(run_acmeflow("server", "start", "--json", env=env).stdout)
        assert healed["pid"] == info["pid"] and healed["runner_pid"] != info["runner_pid"]
        assert alive(healed["runner_pid"], healed["runner_start_time"])
    finally:
        run_acmeflow("server", "stop", env=env)
    assert not sock.exists()

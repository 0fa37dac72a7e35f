"""A local Prefect server for this acmeflow home: ``acmeflow server start|stop|status``.

Without ``PREFECT_API_URL`` every command that runs a flow starts a temporary Prefect server of
its own (seconds per command) and its runs are lost at exit. ``server start`` runs one
``prefect server start`` on a free loopback port in the background, with its own Prefect home
(``$ACMEFLOW_HOME/prefect``), and remembers it in ``$ACMEFLOW_HOME/server.json``; every later
acmeflow command of this home uses it (:func:`use_local_server`) unless ``PREFECT_API_URL``
says otherwise. Beside it runs the warm flow runner (:mod:`acmeflow.runner`) that commands
hand their flow runs to. ``server stop`` stops only the processes it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from acmeflow.core.files import atomic_write, mkdir_private
from acmeflow.processes import alive, free_tcp_port, spawn, start_time_of, terminate
from acmeflow.runner_client import LOG_FILE as RUNNER_LOG
from acmeflow.runner_client import socket_path

STATE_FILE = "server.json"
LOG_FILE = "prefect-server.log"
START_TIMEOUT = 90.0


class ServerError(Exception):
    """The local Prefect server could not be started (the message says why)."""


@dataclass(frozen=True)
class ServerInfo:
    """A local Prefect server this home started."""

    url: str  # the API URL: http://127.0.0.1:PORT/api
    pid: int
    start_time: int | None
    log: str
    runner_pid: int | None = None  # the warm flow runner beside it (None: none started)
    runner_start_time: int | None = None

    @property
    def ui_url(self) -> str:
        """Where the Prefect UI of this server is."""
        return self.url.removesuffix("/api")


def _state_path(home: Path) -> Path:
    return home / STATE_FILE


def _read(home: Path) -> ServerInfo | None:
    try:
        data = json.loads(_state_path(home).read_text())
        return ServerInfo(**data)
    except (FileNotFoundError, ValueError, TypeError):
        return None


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def server_status(home: Path, *, check_health: bool = True) -> ServerInfo | None:
    """The server this home started, when its process still runs (and answers)."""
    info = _read(home)
    if info is None or not alive(info.pid, info.start_time):
        return None
    if check_health and not _healthy(info.url):
        return None
    if info.runner_pid and not alive(info.runner_pid, info.runner_start_time):
        info = replace(info, runner_pid=None, runner_start_time=None)
    return info


def server_start(home: Path, *, port: int | None = None) -> ServerInfo:
    """Start the local server and its runner (or return the one already running, with a new
    runner if its runner went away) and wait until they answer."""
    running = server_status(home)
    if running is not None:
        # the runner went away: a new one beside the server
        return running if running.runner_pid else _with_runner(home, running)
    mkdir_private(home)
    prefect_home = home / "prefect"
    mkdir_private(prefect_home)
    port = port or free_tcp_port()
    url = f"http://127.0.0.1:{port}/api"
    log = home / LOG_FILE
    env = {
        **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
        "PREFECT_HOME": str(prefect_home),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": url,
    }
    prefect = str(Path(sys.executable).with_name("prefect"))
    argv = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    proc = spawn(argv, log=log, env=env, cwd=home, detach=True)
    deadline = time.monotonic() + START_TIMEOUT
    while not _healthy(url, timeout=1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            terminate(proc.pid, None)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            why = (
                "exited"
                if proc.returncode is not None
                else f"did not answer in {START_TIMEOUT:g} s"
            )
            raise ServerError(f"the Prefect server {why} (log {log}):\n{tail}")
        time.sleep(0.2)
    info = ServerInfo(url=url, pid=proc.pid, start_time=start_time_of(proc.pid), log=str(log))
    _remember(home, info)  # before the runner starts: `server stop` finds the server
    return _with_runner(home, info)


def _remember(home: Path, info: ServerInfo) -> None:
    atomic_write(_state_path(home), json.dumps(asdict(info)), mode=0o600)


def _with_runner(home: Path, info: ServerInfo) -> ServerInfo:
    """``info`` with a runner started beside its server, remembered in the home."""
    runner = _start_runner(home, info.url)
    started = start_time_of(runner) if runner else None
    info = replace(info, runner_pid=runner, runner_start_time=started)
    _remember(home, info)
    return info


def _start_runner(home: Path, url: str) -> int | None:
    """Start the warm flow runner (:mod:`acmeflow.runner`) with this command's environment
    and wait until it listens; its pid, or None when it did not come up (commands then run
    their flows themselves, as without it: its log says why)."""
    env = {**os.environ, "PREFECT_API_URL": url, "DO_NOT_TRACK": "1"}  # as commands will have
    path = socket_path(home)
    path.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "acmeflow.runner"]
    proc = spawn(argv, log=home / RUNNER_LOG, env=env, cwd=home, detach=True)
    deadline = time.monotonic() + START_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(path))
            return proc.pid
        time.sleep(0.1)
    terminate(proc.pid, None)
    return None


def server_stop(home: Path) -> bool:
    """Stop the server this home started, and its runner; True when the server was running."""
    info = _read(home)
    if info is not None and info.runner_pid:
        terminate(info.runner_pid, info.runner_start_time)
    socket_path(home).unlink(missing_ok=True)
    stopped = info is not None and terminate(info.pid, info.start_time, grace=15.0)
    _state_path(home).unlink(missing_ok=True)
    return stopped


def use_local_server(home: Path) -> str | None:
    """Point this process's Prefect at the home's local server when ``PREFECT_API_URL`` is
    not set and the server runs (a cheap check: no request); returns the URL used."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    info = server_status(home, check_health=False)
    if info is None:
        return None
    os.environ["PREFECT_API_URL"] = info.url
    return info.url

"""A local Prefect server for this acmeflow home: ``acmeflow server start|stop|status``.

Without ``PREFECT_API_URL`` every command that runs a flow starts a temporary Prefect server of
its own (seconds per command) and its runs are lost at exit. ``server start`` runs one
``prefect server start`` on a free loopback port in the background, with its own Prefect home
(``$ACMEFLOW_HOME/prefect``), and remembers it in ``$ACMEFLOW_HOME/server.json``; every later
acmeflow command of this home uses it (:func:`use_local_server`) unless ``PREFECT_API_URL``
says otherwise. ``server stop`` stops only the process it started.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from acmeflow.core.files import atomic_write, mkdir_private
from acmeflow.processes import alive, free_tcp_port, spawn, start_time_of, terminate

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
    return info


def server_start(home: Path, *, port: int | None = None) -> ServerInfo:
    """Start the local server (or return the one already running) and wait until it answers."""
    running = server_status(home)
    if running is not None:
        return running
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
    atomic_write(_state_path(home), json.dumps(asdict(info)), mode=0o600)
    return info


def server_stop(home: Path) -> bool:
    """Stop the server this home started; True when one was running."""
    info = _read(home)
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

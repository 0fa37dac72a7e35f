"""Small helpers every test module may use: the CLI in-process or as a process, a free
loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from typer.testing import CliRunner, Result


def run_cli(*args: str, input: str | None = None) -> Result:
    """Run ``acmeflow ARGS`` in-process (catches nothing: check exit_code and output)."""
    from acmeflow.cli import app

    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


def run_acmeflow(
    *args: str, env: Mapping[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run ``acmeflow ARGS`` as its own process (this environment's console script)."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("acmeflow")), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port

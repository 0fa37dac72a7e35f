"""Child processes that outlive a command (pebble, BIND, a local Prefect server): spawn them,
tell whether one still runs (pid and start time, so a reused pid is not mistaken for it), stop
them, and pick free loopback ports."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

# Popen objects of the processes this interpreter started, so that they are reaped (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def start_time_of(pid: int) -> int | None:
    """Start time of ``pid`` (clock ticks since boot), ``None`` when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # zombie or dead: not running any more
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def alive(pid: int, start_time: int | None) -> bool:
    """Whether the process ``pid`` that started at ``start_time`` still runs."""
    if pid <= 0:
        return False
    _reap(pid)
    current = start_time_of(pid)
    return current is not None and (start_time is None or current == start_time)


def terminate(pid: int, start_time: int | None, *, grace: float = 5.0) -> bool:
    """Stop ``pid`` (SIGTERM, then SIGKILL after ``grace``); True when it was running."""
    if not alive(pid, start_time):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)  # a stopped process acts on the SIGTERM only once continued
    deadline = time.monotonic() + grace
    while alive(pid, start_time) and time.monotonic() < deadline:
        time.sleep(0.02)
    if alive(pid, start_time):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + grace
        while alive(pid, start_time) and time.monotonic() < deadline:
            time.sleep(0.02)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=grace)
    return True


def _preexec_parent_death() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent dies (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    prctl = getattr(libc, "prctl", None)
    if prctl is None:
        return None
    pr_set_pdeathsig = 1

    def _set() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return _set


def spawn(
    argv: list[str], *, log: Path, env: Mapping[str, str], cwd: Path, detach: bool
) -> subprocess.Popen[bytes]:
    preexec: Callable[[], None] | None = None
    # PR_SET_PDEATHSIG fires when the creating *thread* exits: only safe from the main thread.
    if not detach and threading.current_thread() is threading.main_thread():
        preexec = _preexec_parent_death()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
            preexec_fn=preexec,
        )
    _CHILDREN[proc.pid] = proc
    return proc


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

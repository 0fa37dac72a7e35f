"""The warm flow runner of the local server: ``python -m acmeflow.runner`` (started and
stopped by ``acmeflow server``). See :mod:`acmeflow.runner_client` for why and the protocol.

It loads Prefect and the flows once, listens on the home's Unix socket (0600 in the 0700
home) and runs the flows commands hand it, one at a time in its main thread, as the command
would have run them itself: on the local Prefect server, with the same settings (a request
from a command whose settings differ is refused, and that command runs the flow itself).
Each run's progress records go back to its command; a command that goes away does not stop
the run. The read-only JSON listings (``certs list --json``, ...) are answered in the thread
that took the request, beside any run, their output captured for that thread alone.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import queue
import socketserver
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

import typer
from typer import _click
from typer.rich_utils import rich_format_error

from acmeflow.config.environment import home_from
from acmeflow.core import errors
from acmeflow.runner_client import (
    PROGRESS_LOGGERS,
    SERVED,
    environment_fingerprint,
    served,
    socket_path,
)

log = logging.getLogger("acmeflow.runner")

Send = Callable[[dict[str, Any]], None]
_busy = threading.Event()  # a run is under way
WAITING = "waiting for the runner's current run to finish"
LOG_FORMAT = "%(asctime)s %(name)s %(message)s"


@dataclass
class _Job:
    flow: str
    parameters: dict[str, Any]
    send: Send
    done: threading.Event = field(default_factory=threading.Event)


class _Forward(logging.Handler):
    """Sends a run's progress records to the command that handed it over."""

    def __init__(self, send: Send) -> None:
        super().__init__(level=logging.INFO)
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        self.send(_progress(record.name, record.levelno, record.getMessage()))


def _flows() -> dict[str, Callable[..., Any]]:
    """The flows commands may hand over, and the modules of the commands it answers
    (imported here, once: the point of the runner)."""
    from acmeflow.cli_lazy import COMMANDS
    from acmeflow.flows.issue import issue_uploaded

    for command in {c[0] for c in SERVED}:
        COMMANDS[command].load(command)
    return {"issue": issue_uploaded}


def _handler(
    jobs: queue.Queue[_Job], flows: dict[str, Callable[..., Any]], fingerprint: str
) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            lock = threading.Lock()

            def send(message: dict[str, Any]) -> None:
                with lock:
                    try:
                        self.wfile.write(json.dumps(message).encode() + b"\n")
                        self.wfile.flush()
                    except OSError:  # the command went away: its run goes on
                        pass

            try:
                request = json.loads(self.rfile.readline() or b"{}")
            except ValueError:
                request = {}
            if request.get("environment") != fingerprint:
                send({"refused": "the command's settings differ from the runner's"})
                return
            if "command" in request:  # answered here, beside any run: it only reads
                send({"accepted": os.getpid()})
                send({"output": _run_command([str(a) for a in request["command"]])})
                return
            if request.get("flow") not in flows:
                send({"refused": f"no flow {request.get('flow')!r} here"})
                return
            send({"accepted": os.getpid()})
            if not jobs.empty() or _busy.is_set():
                send(_progress("acmeflow.progress", logging.INFO, WAITING))
            job = _Job(request["flow"], dict(request.get("parameters") or {}), send)
            jobs.put(job)
            job.done.wait()

    return Handler


def _progress(logger: str, level: int, message: str) -> dict[str, Any]:
    """A progress line for the command to print through its logger ``logger``."""
    return {"progress": {"logger": logger, "level": level, "message": message}}


class _ThreadStreams(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of the runner: a thread answering a command writes into
    that command's buffer, every other thread to the runner's own stream (its log)."""

    def __init__(self, real: TextIO) -> None:
        self.real = real
        self.local = threading.local()

    def write(self, text: str) -> int:
        buffer: io.StringIO | None = getattr(self.local, "buffer", None)
        return (buffer or self.real).write(text)

    def flush(self) -> None:
        if getattr(self.local, "buffer", None) is None:
            self.real.flush()

    def isatty(self) -> bool:
        return False

    @contextlib.contextmanager
    def captured(self) -> Iterator[io.StringIO]:
        self.local.buffer = io.StringIO()
        try:
            yield self.local.buffer
        finally:
            self.local.buffer = None


def _run_command(argv: list[str]) -> dict[str, Any]:
    """Run a served command line as the CLI would: its stdout, stderr and exit code."""
    from acmeflow.cli import app

    if not served(argv):
        return {"stdout": "", "stderr": f"not served by the runner: {argv}\n", "code": 2}
    streams = (sys.stdout, sys.stderr)
    assert all(isinstance(s, _ThreadStreams) for s in streams)
    out, err = cast(tuple[_ThreadStreams, _ThreadStreams], streams)
    code: Any = 0
    with out.captured() as stdout, err.captured() as stderr:
        try:  # what Click's standalone mode does in a command's own process
            code = app(args=argv, prog_name="acmeflow", standalone_mode=False)
        except _click.exceptions.ClickException as exc:  # a usage error: the same message
            rich_format_error(exc)
            code = exc.exit_code
        except typer.Exit as exc:
            code = exc.exit_code
        except SystemExit as exc:
            code = exc.code
        except Exception as exc:
            from acmeflow.failures import report_failure

            log.exception("command %s failed", argv)
            code = report_failure(exc, debug=False)
    code = code if isinstance(code, int) else 0  # a command that returned: success
    log.info("answered: acmeflow %s (exit %d)", " ".join(argv), code)
    return {"stdout": stdout.getvalue(), "stderr": stderr.getvalue(), "code": code}


def _run(job: _Job, flows: dict[str, Callable[..., Any]]) -> None:
    """Run one handed-over flow with its progress forwarded; answer with its outcome."""
    forward = _Forward(job.send)
    loggers = [logging.getLogger(name) for name in PROGRESS_LOGGERS]
    for logger in loggers:
        logger.setLevel(logging.INFO)
        logger.addHandler(forward)
    _busy.set()
    try:
        job.send({"result": flows[job.flow](**job.parameters)})
    except errors.AcmeflowError as exc:
        job.send({"error": {"type": exc.code, "message": exc.message, "detail": exc.detail}})
    except Exception as exc:
        log.exception("run of %s failed", job.flow)
        job.send({"failure": f"{type(exc).__name__}: {exc}"})
    finally:
        _busy.clear()
        for logger in loggers:
            logger.removeHandler(forward)
        job.done.set()


def main() -> None:
    """Listen on the home's socket and run what commands hand over, until terminated."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    own = logging.StreamHandler(sys.stderr)  # its log, whatever Prefect makes of the root's
    own.setFormatter(logging.Formatter(LOG_FORMAT))
    log.addHandler(own)
    log.setLevel(logging.INFO)
    log.propagate = False
    sys.stdout = _ThreadStreams(sys.stdout)
    sys.stderr = _ThreadStreams(sys.stderr)
    flows = _flows()
    path = socket_path(home_from())  # found as commands find it
    path.unlink(missing_ok=True)
    jobs: queue.Queue[_Job] = queue.Queue()
    previous = os.umask(0o177)  # the socket is created 0600
    try:
        server = socketserver.ThreadingUnixStreamServer(
            str(path), _handler(jobs, flows, environment_fingerprint())
        )
    finally:
        os.umask(previous)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="runner-socket", daemon=True).start()
    log.info("runner ready on %s (pid %d)", path, os.getpid())
    sys.stdout.flush()
    while True:
        _run(jobs.get(), flows)


if __name__ == "__main__":
    main()

"""Hand a command's flow run to the warm runner of the home's local server.

Importing Prefect and the flow engines costs a command about 2.3 s before any work. The
runner (:mod:`acmeflow.runner`, started and stopped with ``acmeflow server``) has them
loaded; a command sends it the flow's parameters over a Unix socket in the home (0600) and
prints the progress it streams back. A command uses the runner only when it runs and was
started with the same acmeflow, Prefect and cloud SDK settings (a fingerprint of those
environment variables); otherwise, or with ``ACMEFLOW_USE_RUNNER=false``, the flow runs in
the command's own process as before. This module never imports Prefect.

The read-only listing commands asked for JSON (:data:`SERVED`: ``certs list --json``, ...)
are answered by the runner too, before the command line is even parsed here: about 0.1 s
instead of 0.7-1 s, most of it importing SQLAlchemy and pydantic.

Protocol: one JSON line ``{"flow", "parameters", "environment"}`` (or ``{"command": argv,
"environment"}``); the runner answers ``{"accepted": PID}`` or ``{"refused": "..."}`` at
once. A flow's answers follow: ``{"progress": {...}}`` lines, then one of ``{"result": ...}``,
``{"error": {...}}`` (a catalog error) or ``{"failure": "..."}`` (anything else). A command's:
one ``{"output": {"stdout", "stderr", "code"}}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from acmeflow.config.environment import home_from, runner_allowed
from acmeflow.core import errors

SOCKET_FILE = "runner.sock"
LOG_FILE = "runner.log"
#: The loggers whose records a command prints as progress lines.
PROGRESS_LOGGERS = ("acmeflow.progress", "acmeflow.deploy")
#: Environment variables that decide what a flow does: a runner started with others is not used.
SETTING_PREFIXES = ("ACMEFLOW_", "PREFECT_", "AWS_", "AZURE_", "GOOGLE_")
#: Commands the runner answers when they ask for JSON (read-only; nothing depends on a terminal).
SERVED = (("certs", "list"), ("ca", "list"), ("logs",))
#: Settings of a process's own console only (``--debug`` sets it): they need not match.
CONSOLE_ONLY = frozenset({"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"})
CONNECT_TIMEOUT = 2.0
#: The longest the runner may stay silent during a run (validation alone may take minutes).
SILENCE_LIMIT = 900.0

log = logging.getLogger(__name__)


class RunnerStopped(RuntimeError):
    """The runner went away during a run (it is recovered like any interrupted run)."""


def socket_path(home: Path) -> Path:
    """Where the runner of the local server of ``home`` listens."""
    return home / SOCKET_FILE


def environment_fingerprint(environ: Mapping[str, str] | None = None) -> str:
    """A digest of the environment variables that decide what a flow does (never sent or
    stored in clear: it holds secrets such as the sealing key)."""
    environ = os.environ if environ is None else environ
    relevant = sorted(
        (k, v)
        for k, v in environ.items()
        if (k.startswith(SETTING_PREFIXES) or k == "HOME") and k not in CONSOLE_ONLY
    )
    return hashlib.sha256(json.dumps(relevant).encode()).hexdigest()


def run_flow(
    flow: str, parameters: dict[str, Any], in_process: Callable[[], Callable[..., Any]]
) -> Any:
    """Run ``flow`` with ``parameters`` on the runner when it can take it; else the function
    ``in_process()`` returns is called here (it imports the flow only then)."""
    request = {"flow": flow, "parameters": parameters}
    answers = _hand_over(request) if runner_allowed() else None
    if answers is None:
        return in_process()(**parameters)
    return _follow(answers)


def served(argv: list[str]) -> bool:
    """Whether the runner answers this command line (a :data:`SERVED` command with --json)."""
    return "--json" in argv and any(tuple(argv[: len(c)]) == c for c in SERVED)


def answer_from_runner(argv: list[str]) -> int | None:
    """Fast path of the read-only listing commands with ``--json`` (:data:`SERVED`): when the
    runner takes it, print the command's output as the runner made it and return its exit
    code; None otherwise (the command then runs here as usual)."""
    if not served(argv) or not runner_allowed():
        return None
    from acmeflow.server import use_local_server  # PREFECT_API_URL, as the command would set

    use_local_server(home_from())
    answers = _hand_over({"command": argv})
    if answers is None:
        return None
    for answer in answers:
        if "output" in answer:
            output = answer["output"]
            sys.stdout.write(output["stdout"])
            sys.stderr.write(output["stderr"])
            return int(output["code"])
    return None  # the runner went away before it answered: run the command here


def _hand_over(request: dict[str, Any]) -> Iterator[dict[str, Any]] | None:
    """The runner's answers to ``request``, or None when no runner takes it."""
    path = socket_path(home_from())
    if not path.exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(CONNECT_TIMEOUT)
    try:
        conn.connect(str(path))
        request = {**request, "environment": environment_fingerprint()}
        conn.sendall(json.dumps(request).encode() + b"\n")
        conn.settimeout(SILENCE_LIMIT)
        lines = conn.makefile("rb")
        first = _next_answer(lines)
    except OSError as exc:  # no runner behind the socket (stopped, crashed): run here
        log.debug("runner not used: %s", exc)
        conn.close()
        return None
    if first is None or "accepted" not in first:
        log.debug("runner not used: %s", (first or {}).get("refused", "no answer"))
        conn.close()
        return None

    def answers() -> Iterator[dict[str, Any]]:
        try:
            answer = _next_answer(lines)
            while answer is not None:
                yield answer
                answer = _next_answer(lines)
        finally:
            conn.close()

    return answers()


def _next_answer(lines: Any) -> dict[str, Any] | None:
    line = lines.readline()
    return json.loads(line) if line else None


def _follow(answers: Iterator[dict[str, Any]]) -> Any:
    """Replay the runner's progress on this process's loggers; return or raise its outcome."""
    try:
        logging.getLogger("acmeflow.progress").info("run handed to the local server's runner")
        for answer in answers:
            if "progress" in answer:
                line = answer["progress"]
                logging.getLogger(line["logger"]).log(line["level"], "%s", line["message"])
            elif "result" in answer:
                return answer["result"]
            elif "error" in answer:
                raise _catalog_error(answer["error"])
            elif "failure" in answer:
                raise RuntimeError(f"the runner's run failed: {answer['failure']}")
    except (OSError, ValueError) as exc:
        raise RunnerStopped(f"lost the runner during the run: {exc}") from None
    except KeyboardInterrupt:
        sys.stderr.write(
            "Interrupted: the run goes on in the local server's runner "
            "(`acmeflow logs` shows how it ends).\n"
        )
        raise SystemExit(130) from None
    raise RunnerStopped(
        "the runner stopped during the run; it is recovered like any interrupted run "
        "(see `acmeflow logs` and the runner's log, runner.log in the home)"
    )


def _catalog_error(data: dict[str, Any]) -> errors.AcmeflowError:
    cls = getattr(errors, str(data.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.AcmeflowError)):
        cls = errors.AcmeflowError
    return cls(data.get("detail"), message=data.get("message"))

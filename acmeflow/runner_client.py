"""Hand a command's flow run to the warm runner of the home's local server.

Importing Prefect and the flow engines costs a command about 2.3 s before any work. The
runner (:mod:`acmeflow.runner`, started and stopped with ``acmeflow server``) has them
loaded; a command sends it the flow's parameters over a Unix socket in the home (0600) and
prints the progress it streams back. A command uses the runner only when it runs and was
started with the same acmeflow, Prefect and cloud SDK settings (a fingerprint of those
environment variables); otherwise, or with ``ACMEFLOW_USE_RUNNER=false``, the flow runs in
the command's own process as before. This module never imports Prefect.

Protocol: one JSON line ``{"flow", "environment", "parameters"}``; the runner answers
``{"accepted": PID}`` or ``{"refused": "..."}`` at once, then ``{"progress": {...}}`` lines
and one of ``{"result": ...}``, ``{"error": {...}}`` (a
catalog error), or ``{"failure": "..."}`` (anything else).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from acmeflow.config.settings import get_settings
from acmeflow.core import errors

SOCKET_FILE = "runner.sock"
LOG_FILE = "runner.log"
#: The loggers whose records a command prints as progress lines.
PROGRESS_LOGGERS = ("acmeflow.progress", "acmeflow.deploy")
#: Environment variables that decide what a flow does: a runner started with others is not used.
SETTING_PREFIXES = ("ACMEFLOW_", "PREFECT_", "AWS_", "AZURE_", "GOOGLE_")
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
        (k, v) for k, v in environ.items() if k.startswith(SETTING_PREFIXES) or k == "HOME"
    )
    return hashlib.sha256(json.dumps(relevant).encode()).hexdigest()


def run_flow(
    flow: str, parameters: dict[str, Any], in_process: Callable[[], Callable[..., Any]]
) -> Any:
    """Run ``flow`` with ``parameters`` on the runner when it can take it; else the function
    ``in_process()`` returns is called here (it imports the flow only then)."""
    answers = _hand_over(flow, parameters) if get_settings().use_runner else None
    if answers is None:
        return in_process()(**parameters)
    return _follow(answers)


def _hand_over(flow: str, parameters: dict[str, Any]) -> Iterator[dict[str, Any]] | None:
    """The runner's answers to this run, or None when no runner takes it."""
    path = socket_path(get_settings().home)
    if not path.exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(CONNECT_TIMEOUT)
    try:
        conn.connect(str(path))
        request = {"flow": flow, "environment": environment_fingerprint(), "parameters": parameters}
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
    logging.getLogger("acmeflow.progress").info("run handed to the local server's runner")
    try:
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
    raise RunnerStopped(
        "the runner stopped during the run; it is recovered like any interrupted run "
        "(see `acmeflow logs` and the runner's log, runner.log in the home)"
    )


def _catalog_error(data: dict[str, Any]) -> errors.AcmeflowError:
    cls = getattr(errors, str(data.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.AcmeflowError)):
        cls = errors.AcmeflowError
    return cls(data.get("detail"), message=data.get("message"))

"""What the CLI prints when a command fails: the catalog message and its detail, no traceback.

The traceback goes to ``ACMEFLOW_HOME/acmeflow.log`` (mode 0600), and to the terminal too with
``--debug`` or ``ACMEFLOW_DEBUG=1``.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import traceback
from pathlib import Path

from acmeflow.config.settings import get_settings
from acmeflow.core import errors
from acmeflow.core.files import mkdir_private

from .output import err_console

LOG_NAME = "acmeflow.log"
MAX_LOG_BYTES = 1_000_000  # the log is restarted beyond this


def report_failure(exc: BaseException, *, debug: bool) -> int:
    """Print ``exc`` as the catalog message and detail; log its traceback. Returns the exit
    code (1)."""
    message, detail, _cause = errors.describe_failure(exc)
    trace = "".join(traceback.format_exception(exc))
    log_path = _log(trace)
    if debug:
        err_console.print(trace, markup=False, soft_wrap=True, highlight=False)
    err_console.print(f"[bold red]{message}[/]", markup=True, soft_wrap=True)
    if detail:
        err_console.print(detail, markup=False, soft_wrap=True)
    if not debug and not isinstance(exc, errors.AcmeflowError):
        where = f" (traceback in {log_path})" if log_path else ""
        err_console.print(f"Run with --debug to see the traceback{where}.", markup=False)
    return 1


def _log(trace: str) -> Path | None:
    """Append ``trace`` to the log file in the home folder (0600); ``None`` when it cannot be
    written (a full disk must not hide the error it is about)."""
    try:
        home = get_settings().home
        mkdir_private(home)
        path = home / LOG_NAME
        if path.exists() and path.stat().st_size > MAX_LOG_BYTES:
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as log:
            log.write(
                f"--- {dt.datetime.now(dt.UTC).isoformat()} acmeflow {' '.join(sys.argv[1:])}\n"
            )
            log.write(trace)
        return path
    except Exception:
        return None

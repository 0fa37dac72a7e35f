"""The ``acmeflow`` command line.

This module stays light: each command's module is imported only when that command runs
(:mod:`acmeflow.cli_lazy`), so ``acmeflow --help`` starts in a fraction of a second.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated


def debug_wanted(argv: list[str]) -> bool:
    """``--debug`` before the command, or ``ACMEFLOW_DEBUG`` set to anything but 0/empty."""
    return "--debug" in argv or os.environ.get("ACMEFLOW_DEBUG", "").strip() not in ("", "0")


# Prefect's console handler would interleave its own lines (and a failed run's traceback) with
# ours; the Prefect API and UI still receive every log line. --debug lets its warnings through.
os.environ.setdefault(
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",
    "WARNING" if debug_wanted(sys.argv[1:]) else "CRITICAL",
)
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import typer  # noqa: E402  (after the environment Prefect reads when a command imports it)

from .cli_lazy import LazyGroup  # noqa: E402


def _prefect_block_secret(name: str) -> str:
    """Read a Prefect Secret block; Prefect is imported only when a reference needs it."""
    from acmeflow.tasks.common import prefect_block_secret

    return prefect_block_secret(name)


app = typer.Typer(
    cls=LazyGroup,
    help="acmeflow: automated TLS certificate lifecycle over ACME (DNS-01), run by Prefect.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="print the traceback of a failure (ACMEFLOW_DEBUG=1)")
    ] = False,
) -> None:
    """Options before any command (``--debug`` is read by :func:`main`). A local Prefect
    server started by ``acmeflow server start`` is used when ``PREFECT_API_URL`` is unset."""
    from acmeflow.config.settings import get_settings
    from acmeflow.core.secrets import set_block_resolver
    from acmeflow.server import use_local_server

    # prefect-block:NAME secret references are read from Prefect Secret blocks, in commands
    # that run flows and in those that use providers directly (dns check) alike.
    set_block_resolver(_prefect_block_secret)
    use_local_server(get_settings().home)


def main() -> None:
    """Entry point of the ``acmeflow`` console script: a failure prints its catalog message
    and detail; the traceback goes to the log file (and the terminal with ``--debug``)."""
    from .runner_client import answer_from_runner

    answered = answer_from_runner(sys.argv[1:])  # certs list --json and the like, when served
    if answered is not None:
        raise SystemExit(answered)
    try:
        app(prog_name="acmeflow")
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        from .failures import report_failure

        sys.exit(report_failure(exc, debug=debug_wanted(sys.argv[1:])))

"""What every acmeflow task shares: settings, database sessions, progress, retry rules."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.blocks.system import Secret
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run
from prefect.states import Failed, State
from sqlalchemy.orm import Session

from acmeflow.config.settings import Settings, get_settings
from acmeflow.core.dns01 import DNSLookup
from acmeflow.core.errors import AcmeflowError, SecretError
from acmeflow.core.issuance import Timeouts
from acmeflow.core.secrets import set_block_resolver
from acmeflow.core.state.challenge_journal import ChallengeJournal
from acmeflow.core.state.db import open_database, session_scope

progress_log = logging.getLogger("acmeflow.progress")


def prefect_block_secret(name: str) -> str:
    """The value of the Prefect Secret block ``name`` (for ``prefect-block:NAME`` references)."""
    block = Secret.load(name, _sync=True)  # type: ignore[call-arg]
    if not isinstance(block, Secret):
        raise SecretError(detail=f"Prefect block {name!r} is not a Secret block")
    value = block.get()
    return value if isinstance(value, str) else str(value)


set_block_resolver(prefect_block_secret)


def settings() -> Settings:
    """The settings of this process."""
    return get_settings()


@functools.cache
def _shared_lookup(resolvers: tuple[str, ...], query_port: int) -> DNSLookup:
    return DNSLookup(resolvers, query_port=query_port)


def dns_lookup() -> DNSLookup:
    """One DNS lookup per resolver setting in this process (it remembers zones' NS sets)."""
    conf = settings()
    return _shared_lookup(tuple(conf.dns_resolvers), conf.dns_query_port)


def order_timeouts() -> Timeouts:
    """The deadlines of an order's slow steps, from the settings."""
    conf = settings()
    return Timeouts(
        propagation=conf.propagation_timeout,
        propagation_interval=conf.propagation_interval,
        validation=conf.acme_timeout,
        finalize=conf.acme_timeout,
        order=conf.acme_timeout,
        total=conf.order_timeout or conf.acme_timeout + conf.propagation_timeout,
    )


def challenge_journal() -> ChallengeJournal:
    """The challenge journal of this run (values a crash leaves behind are swept later)."""
    return ChallengeJournal(
        open_database(settings().resolved_database_url), flow_run_id=current_flow_run_id()
    )


@contextmanager
def db() -> Iterator[Session]:
    """A database session that commits on success."""
    engine = open_database(settings().resolved_database_url)
    with session_scope(engine) as s:
        yield s


def progress(message: str, *, problem: bool = False) -> None:
    """Report a step to the Prefect run log and to the CLI (logger ``acmeflow.progress``);
    a ``problem`` is a warning (the CLI marks it instead of ticking it)."""
    level = logging.WARNING if problem else logging.INFO
    with suppress(MissingContextError):
        get_run_logger().log(level, message)
    progress_log.log(level, message)


def current_flow_run_id() -> str | None:
    """The id of the flow run we are in, for the history."""
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (for ``create_markdown_artifact``) of ``rows`` under ``headers``."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def publish_artifact(create: Callable[..., Any], *args: Any, **kwargs: Any) -> UUID | None:
    """Write a Prefect artifact (``create_table_artifact``, ...): artifacts are for the UI, so
    a failure to write one is logged and never fails the run."""
    try:
        result: UUID = create(*args, **kwargs)
        return result
    except Exception as exc:  # the UI is best effort
        logging.getLogger(__name__).warning("could not write a Prefect artifact: %s", exc)
        return None


def end_run(summary: dict[str, Any], failed: int, message: str) -> dict[str, Any] | State[Any]:
    """What a flow returns after publishing its artifacts: ``summary`` when nothing failed,
    else a Failed state that carries it (automations and notifications on Failed fire, and
    the caller still gets the summary through :func:`run_summary`)."""
    if failed:
        return Failed(message=message, data=summary)
    return summary


def run_summary(state: State[Any]) -> dict[str, Any]:
    """The summary a flow run left (see :func:`end_run`), Completed or Failed; a run that
    failed without one (an exception) re-raises its exception."""
    data = state.result(raise_on_failure=False)
    if isinstance(data, dict):
        return data
    if isinstance(data, BaseException):
        raise data
    raise TypeError(f"the flow run returned {type(data).__name__}, not a summary")


def retry_if_retryable(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn``: retry only errors that say a retry can help."""
    try:
        state.result()
    except AcmeflowError as exc:
        return exc.retryable
    except Exception:
        return False
    return False

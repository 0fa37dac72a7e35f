"""The issuance, renewal and deployment history (F8): entries opened, closed, listed.

Functions over a :class:`~sqlalchemy.orm.Session`: they validate all their input before
changing anything, flush but never commit (the caller's ``session_scope`` does), and raise
catalog errors (:mod:`acmeflow.core.errors`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from acmeflow.core.errors import (
    ConfigError,
    NotFound,
)
from acmeflow.core.state.models import (
    LOG_KINDS,
    LOG_STATUSES,
    LogEntry,
    utcnow,
)


def log_start(
    s: Session,
    *,
    kind: str,
    names: Iterable[str],
    ca_name: str | None,
    store: str | None,
    certificate_id: int | None = None,
    flow_run_id: str | None = None,
) -> LogEntry:
    """Open a history entry (status ``running``)."""
    if kind not in LOG_KINDS:
        raise ConfigError(detail=f"kind must be one of {', '.join(LOG_KINDS)} (got {kind!r})")
    entry = LogEntry(
        kind=kind,
        names=list(names),
        ca_name=ca_name,
        store=store,
        certificate_id=certificate_id,
        flow_run_id=str(flow_run_id) if flow_run_id is not None else None,
        status="running",
        started_at=utcnow(),
    )
    s.add(entry)
    s.flush()
    return entry


def log_finish(
    s: Session,
    entry: LogEntry,
    *,
    status: str,
    message: str | None = None,
    detail: str | None = None,
    root_cause: str | None = None,
    serial: str | None = None,
    certificate_id: int | None = None,
) -> LogEntry:
    """Close a history entry with its outcome (texts must already be free of secrets)."""
    if status not in LOG_STATUSES or status == "running":
        raise ConfigError(detail=f"a finished entry is success, failed or skipped (got {status!r})")
    entry.status = status
    entry.message = message
    entry.detail = detail
    entry.root_cause = root_cause
    if serial is not None:
        entry.serial = serial
    if certificate_id is not None:
        entry.certificate_id = certificate_id
    entry.finished_at = utcnow()
    s.flush()
    return entry


def _close_running(
    s: Session, condition: ColumnElement[bool], message: Callable[[LogEntry], str], detail: str
) -> list[LogEntry]:
    """Close as failed ("Interrupted") every ``running`` entry ``condition`` selects."""
    rows = list(s.scalars(select(LogEntry).where(LogEntry.status == "running", condition)))
    for entry in rows:
        log_finish(
            s,
            entry,
            status="failed",
            message=message(entry),
            detail=detail,
            root_cause="Interrupted",
        )
    return rows


def close_interrupted(s: Session, *, started_before: datetime) -> list[LogEntry]:
    """Close as failed every ``running`` history entry opened before ``started_before``: its
    run was killed (no run takes that long), so nobody else will ever close it."""

    def message(entry: LogEntry) -> str:
        run = f"run {entry.flow_run_id}" if entry.flow_run_id else "its process"
        return f"interrupted: {run} ended without closing this entry"

    return _close_running(
        s,
        LogEntry.started_at < started_before,
        message,
        f"still running at {started_before:%Y-%m-%d %H:%M:%S} UTC; closed by sweep",
    )


def close_run(s: Session, flow_run_id: str, *, state: str) -> list[LogEntry]:
    """Close as failed every ``running`` history entry of flow run ``flow_run_id``, which
    ended in ``state`` (Crashed, Cancelled) without closing them."""
    return _close_running(
        s,
        LogEntry.flow_run_id == flow_run_id,
        lambda _entry: f"interrupted: run {flow_run_id} {state.lower()}",
        "closed by the sweep its end triggered",
    )


def get_log_entry(s: Session, entry_id: int) -> LogEntry:
    """The history entry ``entry_id``; unknown raises NotFound."""
    entry = s.get(LogEntry, entry_id)
    if entry is None:
        raise NotFound(detail=f"no history entry with id {entry_id}")
    return entry


def list_log(
    s: Session,
    *,
    failed_only: bool = False,
    certificate_id: int | None = None,
    since: datetime | None = None,
    limit: int | None = 200,
) -> list[LogEntry]:
    """History entries, newest first."""
    q = select(LogEntry).order_by(LogEntry.started_at.desc(), LogEntry.id.desc())
    if failed_only:
        q = q.where(LogEntry.status == "failed")
    if certificate_id is not None:
        q = q.where(LogEntry.certificate_id == certificate_id)
    if since is not None:
        q = q.where(LogEntry.started_at >= since)
    if limit is not None:
        q = q.limit(limit)
    return list(s.scalars(q))


def entries_of_run(s: Session, flow_run_id: str, *, kind: str) -> list[LogEntry]:
    """The ``kind`` entries flow run ``flow_run_id`` wrote, oldest first."""
    q = select(LogEntry).where(LogEntry.flow_run_id == flow_run_id, LogEntry.kind == kind)
    return list(s.scalars(q.order_by(LogEntry.id)))

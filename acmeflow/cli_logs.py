"""``acmeflow logs``: the issuance and renewal history (F8)."""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import Annotated, Any

import typer
from rich.markup import escape

from acmeflow.core import errors
from acmeflow.core.state import certificates, history
from acmeflow.core.state.models import LOG_KINDS, LogEntry

from .output import catalog_errors, console, database, fmt_time, print_json, table

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """``--since``: an ISO date or time (naive = UTC) or a span back from now (``7d``,
    ``12h``, ``30m``, ``2w``, ``90s``)."""
    now = now or dt.datetime.now(dt.UTC)
    match = _RELATIVE.match(value)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        return now - dt.timedelta(**{_UNITS[unit]: amount})
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise errors.ConfigError(
            detail=f"--since {value!r}: give an ISO date or time (2025-01-31, "
            "2025-01-31T08:00, 2025-01-31T08:00+02:00) or a span like 7d, 12h, 30m, 2w"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def flow_run_url(flow_run_id: str | None) -> str | None:
    """The Prefect UI page of a flow run, when the UI address is known (``PREFECT_UI_URL``)."""
    base = os.environ.get("PREFECT_UI_URL", "").rstrip("/")
    if not flow_run_id or not base:
        return None
    return f"{base}/runs/flow-run/{flow_run_id}"


def log_dict(e: LogEntry) -> dict[str, Any]:
    """A history entry as shown to users."""
    return {
        "id": e.id,
        "kind": e.kind,
        "names": list(e.names or []),
        "ca": e.ca_name,
        "store": e.store,
        "status": e.status,
        "message": e.message,
        "detail": e.detail,
        "root_cause": e.root_cause,
        "certificate_id": e.certificate_id,
        "serial": e.serial,
        "flow_run_id": e.flow_run_id,
        "flow_run_url": flow_run_url(e.flow_run_id),
        "started_at": e.started_at,
        "finished_at": e.finished_at,
    }


@catalog_errors
def logs(
    failed: Annotated[bool, typer.Option("--failed", help="only failures")] = False,
    cert: Annotated[int | None, typer.Option("--cert", help="only this certificate")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="ISO date/time, or a span back: 7d, 12h, 30m")
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="issue, renew, deploy or scan")] = None,
    limit: Annotated[int, typer.Option("--limit", help="at most this many (0: all)")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The issuance and renewal log (F8): every request, its outcome and its flow run.

    A failure shows the catalog message, the detail under it and the flow run it came from.
    """
    if kind is not None and kind not in LOG_KINDS:
        raise errors.ConfigError(detail=f"--kind must be one of {', '.join(LOG_KINDS)}")
    after = parse_since(since) if since else None
    with database() as s:
        if cert is not None:
            certificates.get_certificate(s, cert)  # an unknown id is an error, not an empty log
        entries = history.list_log(
            s,
            failed_only=failed,
            certificate_id=cert,
            since=after,
            limit=None if kind is not None or limit <= 0 else limit,
        )
        if kind is not None:
            entries = [e for e in entries if e.kind == kind][: limit if limit > 0 else None]
        rows = [log_dict(e) for e in entries]
    if as_json:
        print_json(rows)
        return
    table(
        "Issuance and renewal log",
        ["id", "when", "kind", "cert", "names", "CA", "status", "message"],
        [
            [
                r["id"],
                fmt_time(r["started_at"]),
                r["kind"],
                r["certificate_id"],
                ", ".join(r["names"]),
                r["ca"],
                r["status"],
                r["message"],
            ]
            for r in rows
        ],
    )
    for r in rows:
        if r["status"] != "failed":
            continue
        console.print(
            f"[bold red]#{r['id']} {r['kind']} failed[/] "
            + escape(f"({', '.join(r['names'])}): {r['message']}"),
            soft_wrap=True,
        )
        if r["detail"]:
            console.print(f"  detail: {r['detail']}", markup=False, soft_wrap=True)
        if r["root_cause"]:
            console.print(f"  root cause: {r['root_cause']}", markup=False, soft_wrap=True)
        run = r["flow_run_url"] or r["flow_run_id"]
        console.print(f"  flow run: {run or '-'}", markup=False, soft_wrap=True)

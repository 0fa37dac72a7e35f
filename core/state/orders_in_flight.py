"""The order journal: orders between ``finalize`` and a stored certificate.

:mod:`core.pipeline` records each order (with the reference of its staged key and what storing
it needs) before it sends ``finalize`` and forgets it once the certificate is stored or the order
failed. A row that outlives its run marks a certificate the CA may have issued that nothing
kept: :mod:`core.order_recovery` finds it (:func:`listed`), downloads a valid order's
certificate and stores it with its staged key instead of ordering (and paying quota for) a
second one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from acmeflow.core.state.models import OrderInFlightRow


@dataclass(frozen=True)
class OrderInFlight:
    """A journaled order as plain data (no secret)."""

    ref: str
    ca: str
    order_url: str
    key_staged: bool
    fields: dict[str, Any]
    flow_run_id: str | None = None
    created_at: dt.datetime | None = None


def record(s: Session, orders: Sequence[OrderInFlight], *, flow_run_id: str | None = None) -> None:
    """Journal ``orders`` (replacing rows of the same reference)."""
    forget(s, [o.ref for o in orders])
    s.add_all(
        OrderInFlightRow(
            ref=o.ref,
            ca_name=o.ca,
            order_url=o.order_url,
            key_staged=o.key_staged,
            fields=o.fields,
            flow_run_id=flow_run_id or o.flow_run_id,
        )
        for o in orders
    )
    s.flush()


def forget(s: Session, refs: Iterable[str]) -> None:
    """Drop the rows of ``refs`` (stored, failed or recovered)."""
    refs = list(refs)
    for start in range(0, len(refs), 500):
        s.execute(
            delete(OrderInFlightRow).where(OrderInFlightRow.ref.in_(refs[start : start + 500]))
        )


def listed(s: Session, *, older_than: dt.datetime | None = None) -> list[OrderInFlight]:
    """Journaled orders, oldest first (written before ``older_than``, when given)."""
    query = select(OrderInFlightRow).order_by(OrderInFlightRow.created_at)
    if older_than is not None:
        query = query.where(OrderInFlightRow.created_at < older_than)
    rows = s.scalars(query)
    return [
        OrderInFlight(
            ref=row.ref,
            ca=row.ca_name,
            order_url=row.order_url,
            key_staged=row.key_staged,
            fields=dict(row.fields),
            flow_run_id=row.flow_run_id,
            created_at=row.created_at,
        )
        for row in rows
    ]

"""Recovery of orders a crash left between ``finalize`` and the store (the order journal,
:mod:`core.state.orders_in_flight`): a valid order's certificate is downloaded and stored with
its staged key, so nothing the CA issued is lost and nothing is ordered twice; an order the CA
did not finish is dropped with its staged key and its history entry closed.

Who recovers an order holds its lease first (the certificate's or the name set's), so a run
still working on it is never raced: ``sweep`` and every ``renew`` recover the journaled
orders of runs that are over, and a rerun of the same request recovers its own first.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acmeflow.core import errors
from acmeflow.core.acme_client import IssuedCertificate
from acmeflow.core.orders import IssuedSet, SavedCertificate, log_failure, save_issued
from acmeflow.core.state import leases, orders_in_flight, renewals
from acmeflow.core.state.orders_in_flight import OrderInFlight

if TYPE_CHECKING:
    from acmeflow.core.pipeline import Context

log = logging.getLogger(__name__)


def issued_set_from(
    fields: dict[str, Any], issued: IssuedCertificate, key_pem: bytes | None
) -> IssuedSet:
    """The :class:`IssuedSet` of an order's journaled ``fields`` (names, store, folder...)."""
    folder = fields.get("folder")
    return IssuedSet(
        ca=fields["ca"],
        store=fields["store"],
        names=list(fields["names"]),
        issued=issued,
        key_pem=key_pem,
        log_id=int(fields["log_id"]),
        enrollment=fields["enrollment"],
        csr_fields=fields.get("csr_fields") or {},
        reuse_key=bool(fields.get("reuse_key")),
        certificate_id=fields.get("certificate_id"),
        folder=Path(folder) if folder else None,
    )


@dataclass(frozen=True)
class Recovered:
    """One journaled order dealt with: ``saved`` when its certificate was stored."""

    order: OrderInFlight
    saved: SavedCertificate | None
    line: str


def recover_orders(
    ctx: Context,
    *,
    now: dt.datetime,
    owner: str,
    older_than: dt.datetime | None = None,
    match: Callable[[OrderInFlight], bool] = lambda _o: True,
    keep_leases: bool = False,
) -> list[Recovered]:
    """Recover the journaled orders ``match`` selects (written before ``older_than``, when
    given) whose lease ``owner`` can take, or already holds (a run recovering its own
    request first: ``keep_leases``, it goes on holding them). An order the CA cannot be asked
    about right now stays journaled for the next try."""
    with ctx.database() as s:
        rows = [o for o in orders_in_flight.listed(s, older_than=older_than) if match(o)]
    done: list[Recovered] = []
    for order in rows:
        lease = order.fields.get("lease_key")
        if lease and not _take(ctx, lease, owner, order):
            continue
        try:
            recovered = _recover(ctx, order, now)
        except Exception as exc:
            log.warning("order %s: not recovered yet: %s", order.order_url, exc)
            continue
        finally:
            if lease and not keep_leases:
                with ctx.database() as s:
                    leases.release(s, [lease], owner=owner)
        ctx.progress(recovered.line)
        done.append(recovered)
    return done


def _take(ctx: Context, lease: str, owner: str, order: OrderInFlight) -> bool:
    try:
        with ctx.database() as s:
            leases.acquire(s, lease, what=f"order {order.order_url}", owner=owner)
    except errors.LeaseHeld:
        return False  # its run is still at work
    return True


def _recover(ctx: Context, order: OrderInFlight, now: dt.datetime) -> Recovered:
    store = ctx.stores[order.fields["store"]]
    issued = ctx.acme(order.ca).issued_by_order(order.order_url)
    saved: SavedCertificate | None = None
    with ctx.database() as s:
        if issued is None:
            log_failure(
                s,
                int(order.fields["log_id"]),
                errors.RunInterrupted(
                    detail=f"the run stopped before the order {order.order_url} was finalized"
                ),
            )
            line = f"dropped the unfinished order {order.order_url}"
        else:
            key_pem = store.read_staging_key(order.ref) if order.key_staged else None

            def also(cert_id: int) -> None:
                if order.fields.get("certificate_id"):
                    renew_days = order.fields.get("renew_days")
                    renewals.record_success(s, cert_id, now=now, renew_days=renew_days)
                orders_in_flight.forget(s, [order.ref])

            saved = save_issued(s, issued_set_from(order.fields, issued, key_pem), also)
            names = ", ".join(order.fields["names"])
            line = f"recovered certificate {saved.certificate_id} ({names}) from {order.order_url}"
        orders_in_flight.forget(s, [order.ref])
    if order.key_staged:
        store.discard_staging_key(order.ref)
    return Recovered(order=order, saved=saved, line=line)

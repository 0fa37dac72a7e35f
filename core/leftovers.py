"""What a killed run can leave behind besides TXT values, found and cleaned by ``sweep``:
staged private keys of orders that never finished, history entries still ``running``, and
expired leases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from acmeflow.core.state import history, leases, orders_in_flight
from acmeflow.core.stores import CertificateStore


@dataclass(frozen=True)
class Leftovers:
    """What one cleanup removed or closed."""

    staged_keys: list[str]  # request ids of private keys removed from the stores' staging
    interrupted: list[int]  # history entries closed as failed
    leases: list[str]  # expired leases released

    def as_dict(self) -> dict[str, list[str] | list[int]]:
        """JSON-ready."""
        return {
            "staged_keys": self.staged_keys,
            "interrupted": self.interrupted,
            "leases": self.leases,
        }


def clean_leftovers(
    s: Session,
    stores: Iterable[CertificateStore],
    *,
    older_than: dt.timedelta,
    now: dt.datetime,
) -> Leftovers:
    """Remove staged keys older than ``older_than`` (but those of journaled orders, which
    wait for their recovery), close history entries that have been ``running`` that long, and
    release expired leases (all in ``s``'s transaction)."""
    journaled = {order.ref for order in orders_in_flight.listed(s)}
    staged = sorted(
        key for store in stores for key in store.prune_staging_keys(older_than, keep=journaled)
    )
    closed = history.close_interrupted(s, started_before=now - older_than)
    released = leases.release_expired(s, now=now)
    return Leftovers(
        staged_keys=staged,
        interrupted=sorted(entry.id for entry in closed),
        leases=sorted(h.key for h in released),
    )

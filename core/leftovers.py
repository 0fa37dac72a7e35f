"""What a killed run can leave behind besides TXT values, found and cleaned by ``sweep``:
staged private keys of orders that never finished, history entries still ``running``, and
expired leases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from acmeflow.core.state import history, leases, orders_in_flight
from acmeflow.core.storage import Store


@dataclass(frozen=True)
class Leftovers:
    """What one cleanup removed or closed."""

    staged_keys: list[str]  # request ids of private keys removed from the stores' staging
    interrupted: list[int]  # history entries closed as failed
    leases: list[str]  # expired leases (and those of the crashed run) released

    def as_dict(self) -> dict[str, list[str] | list[int]]:
        """JSON-ready."""
        return {
            "staged_keys": self.staged_keys,
            "interrupted": self.interrupted,
            "leases": self.leases,
        }


def close_crashed_run(s: Session, flow_run_id: str, *, state: str) -> Leftovers:
    """What flow run ``flow_run_id`` held when it ended in ``state`` (Crashed, Cancelled):
    its ``running`` history entries are closed as interrupted and its leases released, at
    once, whatever their age (its orders can then be recovered, its TXT values removed)."""
    closed = history.close_run(s, flow_run_id, state=state)
    released = leases.release_run(s, flow_run_id)
    return Leftovers(
        staged_keys=[],
        interrupted=sorted(entry.id for entry in closed),
        leases=sorted(h.key for h in released),
    )


def clean_leftovers(
    s: Session,
    stores: Iterable[Store],
    *,
    older_than: dt.timedelta,
    now: dt.datetime,
    staged_older_than: dt.timedelta | None = None,
) -> Leftovers:
    """Remove staged keys older than ``staged_older_than`` (default ``older_than``; never
    those of journaled orders, which wait for their recovery), close history entries that have
    been ``running`` longer than ``older_than``, and release expired leases (all in ``s``'s
    transaction)."""
    journaled = {order.ref for order in orders_in_flight.listed(s)}
    key_age = older_than if staged_older_than is None else staged_older_than
    staged = sorted(
        key for store in stores for key in store.prune_staging_keys(key_age, keep=journaled)
    )
    closed = history.close_interrupted(s, started_before=now - older_than)
    released = leases.release_expired(s, now=now)
    return Leftovers(
        staged_keys=staged,
        interrupted=sorted(entry.id for entry in closed),
        leases=sorted(h.key for h in released),
    )

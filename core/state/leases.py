"""Leases in the state database: exactly one run acts on a certificate or a name set.

A lease is a row keyed by what it protects (``certificate:<id>`` or ``names:<digest of the
name set>``) with its holder and an expiry. Taking one is a single statement that either
inserts the row or takes over a row whose lease expired (a crashed worker), so two runs,
two workers or a schedule and an ad-hoc trigger can never both hold it: the loser gets
:class:`~acmeflow.core.errors.LeaseHeld` naming the holder, and skips. The holder checks
the lease again (:func:`ensure_held`) before it writes anything, and releases it at the end.

Works the same on SQLite (one writer at a time) and PostgreSQL (the primary key serialises
concurrent inserts; the takeover ``UPDATE`` re-checks the expiry under the row lock).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, cast, delete, exists, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from acmeflow.core.errors import LeaseHeld, LeaseLost
from acmeflow.core.state.models import Lease, utcnow
from acmeflow.core.stores import names_digest

DEFAULT_TTL = dt.timedelta(minutes=15)


CERTIFICATE_KEY_PREFIX = "certificate:"


def certificate_key(certificate_id: int) -> str:
    """The lease key of one certificate (renewals)."""
    return f"{CERTIFICATE_KEY_PREFIX}{certificate_id}"


def certificate_key_sql(
    certificate_id: ColumnElement[int] | InstrumentedAttribute[int],
) -> ColumnElement[str]:
    """:func:`certificate_key` as an SQL expression over an id column (claim queries)."""
    return literal(CERTIFICATE_KEY_PREFIX) + cast(certificate_id, String)


def names_key(names: Iterable[str]) -> str:
    """The lease key of a requested name set (issuance), whatever the order of the names."""
    return f"names:{names_digest(names)}"


def this_process() -> str:
    """The owner name of the calling thread: ``host:pid:thread``."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@dataclass(frozen=True)
class LeaseHolder:
    """A lease as stored."""

    key: str
    owner: str
    flow_run_id: str | None
    acquired_at: dt.datetime
    expires_at: dt.datetime

    def describe(self) -> str:
        """Who holds it, for the message: ``run <id>`` or the owner process."""
        return f"run {self.flow_run_id}" if self.flow_run_id else self.owner


def owner_is_dead(owner: str) -> bool:
    """Whether ``owner`` (``host:pid:...``) is a process of this host that no longer runs: a
    killed holder's lease is free at once instead of at its expiry."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _holder(row: Lease) -> LeaseHolder:
    return LeaseHolder(row.key, row.owner, row.flow_run_id, row.acquired_at, row.expires_at)


def _insert(s: Session) -> Any:
    """The dialect's INSERT of a lease (both have ``ON CONFLICT``)."""
    dialect = s.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(Lease)


def _insert_if_absent(s: Session, values: Mapping[str, object]) -> bool:
    """INSERT the lease unless its key exists; True when this call inserted it."""
    statement = _insert(s).values(values).on_conflict_do_nothing(index_elements=["key"])
    return s.execute(statement.returning(Lease.key)).first() is not None


def acquire_free(
    s: Session,
    keys: Sequence[str],
    *,
    owner: str,
    flow_run_id: str | None = None,
    ttl: dt.timedelta = DEFAULT_TTL,
    now: dt.datetime | None = None,
) -> list[str]:
    """Take, in one statement, every lease of ``keys`` that is free or expired; returns the
    keys taken (a lease another owner holds is left alone, never waited for)."""
    if not keys:
        return []
    now = now or utcnow()
    statement = _insert(s).values(
        [
            {
                "key": key,
                "owner": owner,
                "flow_run_id": flow_run_id,
                "acquired_at": now,
                "expires_at": now + ttl,
            }
            for key in keys
        ]
    )
    statement = statement.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "owner": statement.excluded.owner,
            "flow_run_id": statement.excluded.flow_run_id,
            "acquired_at": statement.excluded.acquired_at,
            "expires_at": statement.excluded.expires_at,
        },
        where=Lease.expires_at <= now,
    )
    return list(s.scalars(statement.returning(Lease.key)))


def unexpired_lease_on(key: ColumnElement[str], now: dt.datetime) -> ColumnElement[bool]:
    """SQL: an unexpired lease exists for ``key`` (a column expression), for claim queries."""
    return exists().where(Lease.key == key, Lease.expires_at > now)


def acquire(
    s: Session,
    key: str,
    *,
    what: str,
    owner: str,
    flow_run_id: str | None = None,
    ttl: dt.timedelta = DEFAULT_TTL,
    now: dt.datetime | None = None,
) -> LeaseHolder:
    """Take the lease ``key`` for ``owner`` (again, if it already holds it) or take over an
    expired one; raises :class:`LeaseHeld` ("``what`` already in progress by run X") when
    another owner holds it. The change is part of ``s``'s transaction: commit it before acting.
    """
    now = now or utcnow()
    values = {
        "key": key,
        "owner": owner,
        "flow_run_id": flow_run_id,
        "acquired_at": now,
        "expires_at": now + ttl,
    }
    if not _insert_if_absent(s, values):
        taken = s.execute(
            update(Lease)
            .where(Lease.key == key, or_(Lease.expires_at <= now, Lease.owner == owner))
            .values(owner=owner, flow_run_id=flow_run_id, acquired_at=now, expires_at=now + ttl)
            .execution_options(synchronize_session=False)
        )
        if not taken.rowcount:  # type: ignore[attr-defined]
            row = s.get(Lease, key, populate_existing=True)
            if row is None:  # released between the two statements: held a moment ago
                raise LeaseHeld(what, "another run", detail=f"lease {key} changed hands just now")
            holder = _holder(row)
            if owner_is_dead(holder.owner) and _take_from(s, key, holder.owner, values):
                return LeaseHolder(key, owner, flow_run_id, now, now + ttl)
            raise LeaseHeld(
                what,
                holder.describe(),
                detail=f"lease {key} held by {holder.owner} until {holder.expires_at:%F %T} UTC",
            )
    return LeaseHolder(key, owner, flow_run_id, now, now + ttl)


def acquire_all(
    s: Session,
    keys: Sequence[tuple[str, str]],
    *,
    owner: str,
    flow_run_id: str | None = None,
    ttl: dt.timedelta = DEFAULT_TTL,
    now: dt.datetime | None = None,
) -> list[LeaseHolder]:
    """Take every lease of ``keys`` ((key, what) pairs, taken in key order) or none: the first
    one held elsewhere raises :class:`LeaseHeld` after the ones taken here are given back."""
    taken: list[LeaseHolder] = []
    try:
        for key, what in sorted(set(keys)):
            taken.append(
                acquire(s, key, what=what, owner=owner, flow_run_id=flow_run_id, ttl=ttl, now=now)
            )
    except LeaseHeld:
        release(s, [h.key for h in taken], owner=owner)
        raise
    return taken


def _take_from(s: Session, key: str, dead: str, values: Mapping[str, object]) -> bool:
    """Take lease ``key`` over from the dead owner ``dead`` (unless someone was quicker)."""
    taken = s.execute(
        update(Lease)
        .where(Lease.key == key, Lease.owner == dead)
        .values({k: v for k, v in values.items() if k != "key"})
        .execution_options(synchronize_session=False)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def ensure_held(
    s: Session,
    key: str,
    *,
    owner: str,
    extend_by: dt.timedelta | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Raise :class:`LeaseLost` unless ``owner`` still holds an unexpired lease ``key``
    (checked right before files are written); ``extend_by`` moves its expiry on from now."""
    now = now or utcnow()
    statement = update(Lease).where(Lease.key == key, Lease.owner == owner, Lease.expires_at > now)
    values = {"expires_at": now + extend_by} if extend_by else {"owner": owner}
    kept = s.execute(statement.values(values).execution_options(synchronize_session=False))
    if not kept.rowcount:  # type: ignore[attr-defined]
        raise LeaseLost(detail=f"lease {key} is no longer held by {owner}")


def release(s: Session, keys: Iterable[str], *, owner: str) -> int:
    """Give back the leases of ``keys`` that ``owner`` holds; returns how many."""
    wanted = list(keys)
    if not wanted:
        return 0
    result = s.execute(
        delete(Lease)
        .where(Lease.key.in_(wanted), Lease.owner == owner)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def held(s: Session, keys: Iterable[str], *, now: dt.datetime | None = None) -> list[LeaseHolder]:
    """The unexpired leases among ``keys``."""
    now = now or utcnow()
    rows = s.scalars(select(Lease).where(Lease.key.in_(list(keys)), Lease.expires_at > now))
    return [_holder(r) for r in rows]


def _release_where(s: Session, condition: ColumnElement[bool]) -> list[LeaseHolder]:
    """Delete the leases ``condition`` selects (still selected at the delete: one taken over
    meanwhile stays); returns what it deleted."""
    rows = list(s.scalars(select(Lease).where(condition)))
    if rows:
        s.execute(
            delete(Lease)
            .where(Lease.key.in_([r.key for r in rows]), condition)
            .execution_options(synchronize_session=False)
        )
    return [_holder(r) for r in rows]


def release_expired(s: Session, *, now: dt.datetime | None = None) -> list[LeaseHolder]:
    """Delete every expired lease (the ``sweep``); returns what it deleted."""
    return _release_where(s, Lease.expires_at <= (now or utcnow()))


def release_run(s: Session, flow_run_id: str) -> list[LeaseHolder]:
    """Delete every lease flow run ``flow_run_id`` holds (it crashed or was cancelled)."""
    return _release_where(s, Lease.flow_run_id == flow_run_id)

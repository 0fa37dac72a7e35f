"""The challenge journal: every DNS-01 TXT value acmeflow presents, until it is cleaned up.

:class:`ChallengeJournal` is what ``core.issuance.add_txt_records`` / ``cleanup_txt_records``
take as their ``journal``: it commits a row per value *before* the value is presented and
deletes the row after its cleanup succeeded, each in its own short transaction, so a crash
between the two leaves a row behind. The ``sweep`` flow reads those rows
(:func:`stale_entries`) and removes the values through their provider.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, select, tuple_
from sqlalchemy.orm import Session

from acmeflow.core.dns01 import ChallengeRecord
from acmeflow.core.state.db import session_scope
from acmeflow.core.state.models import ChallengeJournalEntry, utcnow

_CHUNK = 200  # rows per IN (...) clause


@dataclass(frozen=True)
class JournalEntry:
    """A journal row as plain data (safe to pass between Prefect tasks: no secret in it)."""

    id: int
    provider: str
    fqdn: str
    value: str
    identifier: str | None
    flow_run_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: ChallengeJournalEntry) -> JournalEntry:
        """The plain copy of a row."""
        return cls(
            id=row.id,
            provider=row.provider,
            fqdn=row.fqdn,
            value=row.value,
            identifier=row.identifier,
            flow_run_id=row.flow_run_id,
            created_at=row.created_at,
        )


def _key(record: ChallengeRecord) -> tuple[str, str, str]:
    return (record.provider, record.target, record.value)


def _chunks(items: Sequence[tuple[str, str, str]]) -> Iterable[Sequence[tuple[str, str, str]]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def record_values(
    s: Session, records: Sequence[ChallengeRecord], *, flow_run_id: str | None = None
) -> int:
    """Journal each (provider, target, value) not journaled yet; returns the rows added."""
    wanted = list(dict.fromkeys(_key(r) for r in records))
    existing: set[tuple[str, str, str]] = set()
    for chunk in _chunks(wanted):
        existing.update(
            (p, f, v)
            for p, f, v in s.execute(
                select(
                    ChallengeJournalEntry.provider,
                    ChallengeJournalEntry.fqdn,
                    ChallengeJournalEntry.value,
                ).where(
                    tuple_(
                        ChallengeJournalEntry.provider,
                        ChallengeJournalEntry.fqdn,
                        ChallengeJournalEntry.value,
                    ).in_(chunk)
                )
            )
        )
    identifiers = {_key(r): r.identifier for r in records}
    now = utcnow()
    added = [
        ChallengeJournalEntry(
            provider=p,
            fqdn=f,
            value=v,
            identifier=identifiers[(p, f, v)],
            flow_run_id=flow_run_id,
            created_at=now,
        )
        for p, f, v in wanted
        if (p, f, v) not in existing
    ]
    s.add_all(added)
    s.flush()
    return len(added)


def forget_values(s: Session, records: Sequence[ChallengeRecord]) -> int:
    """Delete the journal rows of these (provider, target, value); returns the rows deleted."""
    keys = list(dict.fromkeys(_key(r) for r in records))
    deleted = 0
    for chunk in _chunks(keys):
        result = s.execute(
            delete(ChallengeJournalEntry).where(
                tuple_(
                    ChallengeJournalEntry.provider,
                    ChallengeJournalEntry.fqdn,
                    ChallengeJournalEntry.value,
                ).in_(chunk)
            )
        )
        deleted += int(getattr(result, "rowcount", 0) or 0)
    return deleted


def stale_entries(
    s: Session, older_than: datetime, *, flow_run_id: str | None = None
) -> list[JournalEntry]:
    """Rows created before ``older_than`` (and every row of flow run ``flow_run_id``, a run
    that is over), oldest first."""
    stale = ChallengeJournalEntry.created_at < older_than
    if flow_run_id is not None:
        stale = stale | (ChallengeJournalEntry.flow_run_id == flow_run_id)
    rows = s.scalars(
        select(ChallengeJournalEntry)
        .where(stale)
        .order_by(ChallengeJournalEntry.created_at, ChallengeJournalEntry.id)
    )
    return [JournalEntry.of(row) for row in rows]


def list_entries(s: Session, provider: str | None = None) -> list[JournalEntry]:
    """Every row (or one provider's), oldest first."""
    q = select(ChallengeJournalEntry).order_by(
        ChallengeJournalEntry.created_at, ChallengeJournalEntry.id
    )
    if provider is not None:
        q = q.where(ChallengeJournalEntry.provider == provider)
    return [JournalEntry.of(row) for row in s.scalars(q)]


def delete_entries(s: Session, ids: Iterable[int]) -> int:
    """Delete rows by id; returns the rows deleted."""
    wanted = sorted(set(ids))
    deleted = 0
    for i in range(0, len(wanted), _CHUNK):
        result = s.execute(
            delete(ChallengeJournalEntry).where(
                ChallengeJournalEntry.id.in_(wanted[i : i + _CHUNK])
            )
        )
        deleted += int(getattr(result, "rowcount", 0) or 0)
    return deleted


class ChallengeJournal:
    """The journal as ``core.issuance`` uses it: each call is its own committed transaction.

    ``record`` commits before it returns, so the row exists before the value is presented;
    ``forget`` deletes the rows of values that were removed.
    """

    def __init__(self, engine: Engine, *, flow_run_id: str | None = None) -> None:
        self._engine = engine
        self._flow_run_id = flow_run_id

    def record(self, records: Sequence[ChallengeRecord]) -> None:
        """Journal values about to be presented (committed on return)."""
        if not records:
            return
        with session_scope(self._engine) as s:
            record_values(s, records, flow_run_id=self._flow_run_id)

    def forget(self, records: Sequence[ChallengeRecord]) -> None:
        """Drop the rows of values that were cleaned up (committed on return)."""
        if not records:
            return
        with session_scope(self._engine) as s:
            forget_values(s, records)

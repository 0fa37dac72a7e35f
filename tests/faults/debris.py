"""What a fault may leave, swept the way the ``sweep`` flow does it (its task functions, every
age) and then listed: staged private keys, ``running`` history entries, journaled TXT values
and journaled orders."""

from __future__ import annotations

from acmeflow.config.settings import get_settings
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import ChallengeJournalEntry, LogEntry, OrderInFlightRow
from acmeflow.core.storage import stores_from_settings


def sweep_everything() -> None:
    from acmeflow.tasks import pipeline, sweep

    pipeline.recover_orders.fn()
    plan = sweep.plan_sweep.fn(0.0, 0)
    for job in plan.jobs:
        sweep.sweep_provider.fn(job)
    sweep.clean_leftovers.fn(0.0)


def debris() -> list[str]:
    found = [
        f"staged key {request} in the {store.kind} store"
        for store in stores_from_settings(get_settings()).values()
        for request in store.staged_requests()
    ]
    with session_scope(open_database()) as s:
        found += [f"TXT {r.fqdn} at {r.provider}" for r in s.query(ChallengeJournalEntry)]
        found += [
            f"running history entry {r.id}" for r in s.query(LogEntry).filter_by(status="running")
        ]
        found += [f"journaled order {r.ref}" for r in s.query(OrderInFlightRow)]
    return found


def assert_swept_clean(where: str) -> None:
    """Sweep, then nothing may remain."""
    get_settings.cache_clear()
    sweep_everything()
    assert debris() == [], f"left after the fault and a sweep in {where}"

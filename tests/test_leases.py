"""Leases in the state database: one holder at a time, takeover after expiry, on SQLite and
PostgreSQL, also when many threads ask at the same instant."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import Engine

from acmeflow.core.errors import LeaseHeld, LeaseLost
from acmeflow.core.state import leases, renewals
from acmeflow.core.state.db import session_scope
from acmeflow.core.state.models import CAVendor, Certificate

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(minutes=5)


def take(engine: Engine, key: str, owner: str, *, run: str | None = None, now=NOW):
    with session_scope(engine) as s:
        return leases.acquire(
            s, key, what="Renewal", owner=owner, flow_run_id=run, ttl=TTL, now=now
        )


def test_a_held_lease_is_refused_with_its_holder(state_engine: Engine) -> None:
    key = leases.certificate_key(7)
    take(state_engine, key, "worker-a", run="run-1")
    with pytest.raises(LeaseHeld) as refused:
        take(state_engine, key, "worker-b", run="run-2")
    assert refused.value.message == "Renewal already in progress by run run-1"
    assert "worker-a" in (refused.value.detail or "")
    # the holder may take it again (a retry of its own step)
    take(state_engine, key, "worker-a", run="run-1")


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_write(
    state_engine: Engine,
) -> None:
    key = leases.names_key(["www.example.com", "example.com"])
    assert key == leases.names_key(["example.com", "www.example.com"])
    take(state_engine, key, "crashed-worker")
    later = NOW + TTL + dt.timedelta(seconds=1)
    take(state_engine, key, "next-run", now=later)
    with session_scope(state_engine) as s, pytest.raises(LeaseLost):
        leases.ensure_held(s, key, owner="crashed-worker", now=later)
    with session_scope(state_engine) as s:
        leases.ensure_held(s, key, owner="next-run", now=later)


def test_ensure_held_fails_once_the_lease_expired_and_extends_it_while_held(
    state_engine: Engine,
) -> None:
    key = leases.certificate_key(1)
    take(state_engine, key, "me")
    with session_scope(state_engine) as s:
        leases.ensure_held(s, key, owner="me", extend_by=TTL, now=NOW + TTL / 2)
    with session_scope(state_engine) as s:  # extended: still held past the first expiry
        leases.ensure_held(s, key, owner="me", now=NOW + TTL + dt.timedelta(seconds=1))
    with session_scope(state_engine) as s, pytest.raises(LeaseLost):
        leases.ensure_held(s, key, owner="me", now=NOW + 2 * TTL)


def test_release_frees_only_the_owners_leases(state_engine: Engine) -> None:
    take(state_engine, "certificate:1", "a")
    take(state_engine, "certificate:2", "b")
    with session_scope(state_engine) as s:
        assert leases.release(s, ["certificate:1", "certificate:2"], owner="a") == 1
    take(state_engine, "certificate:1", "c")
    with pytest.raises(LeaseHeld):
        take(state_engine, "certificate:2", "c")


def test_acquire_all_takes_every_lease_or_none(state_engine: Engine) -> None:
    take(state_engine, "certificate:2", "other", run="run-9")
    keys = [
        ("certificate:1", "Renewal"),
        ("certificate:2", "Renewal"),
        ("certificate:3", "Renewal"),
    ]
    with session_scope(state_engine) as s, pytest.raises(LeaseHeld, match="run run-9"):
        leases.acquire_all(s, keys, owner="me", ttl=TTL, now=NOW)
    with session_scope(state_engine) as s:
        assert [h.key for h in leases.held(s, [k for k, _ in keys], now=NOW)] == ["certificate:2"]


def test_release_expired_removes_only_expired_leases(state_engine: Engine) -> None:
    take(state_engine, "certificate:1", "a")
    take(state_engine, "certificate:2", "b", now=NOW + TTL)
    with session_scope(state_engine) as s:
        gone = leases.release_expired(s, now=NOW + TTL + dt.timedelta(seconds=1))
    assert [h.key for h in gone] == ["certificate:1"]


def contend(engine: Engine, key: str, contenders: int) -> tuple[list[str], list[str]]:
    """``contenders`` threads ask for lease ``key`` at the same instant: (winners, losers)."""
    start = threading.Barrier(contenders)
    winners: list[str] = []
    losers: list[str] = []
    errors: list[BaseException] = []

    def ask(owner: str) -> None:
        start.wait()
        try:
            take(engine, key, owner)
            winners.append(owner)
        except LeaseHeld:
            losers.append(owner)
        except BaseException as exc:  # a database error would be a bug: report it
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(f"worker-{i}",)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    return winners, losers


def test_one_winner_when_many_ask_at_once(state_engine: Engine) -> None:
    for round_number in range(5):
        winners, losers = contend(state_engine, leases.certificate_key(100 + round_number), 8)
        assert len(winners) == 1, winners
        assert len(losers) == 7


def add_due_certificates(engine: Engine, count: int) -> CAVendor:
    """CA vendor ``le`` (30-day window) and ``count`` auto-enrolled certificates expiring in
    1..count hours: all due, certificate i+1 expiring after certificate i."""
    with session_scope(engine) as s:
        ca = CAVendor(
            name="le",
            vendor="letsencrypt",
            email="ops@example.com",
            directory_url="https://acme.invalid/directory",
            renew_days=30,
        )
        s.add(ca)
        s.flush()
        for i in range(count):
            s.add(
                Certificate(
                    store="certificate",
                    folder=f"c{i}",
                    names=[f"c{i}.example.com"],
                    not_after=NOW + dt.timedelta(hours=i + 1),
                    ca_vendor_id=ca.id,
                    enrollment="auto",
                )
            )
        return ca


def claim(engine: Engine, owner: str, limit: int, now: dt.datetime = NOW) -> list[int]:
    with session_scope(engine) as s:
        cas = renewals.renewal_cas(s)
        claimed = renewals.claim_due(s, now=now, cas=cas, owner=owner, limit=limit, ttl=TTL)
    return [c.id for c in claimed]


def test_claims_take_disjoint_batches_soonest_expiry_first(state_engine: Engine) -> None:
    add_due_certificates(state_engine, 10)
    first = claim(state_engine, "worker-a", 4)
    assert first == [1, 2, 3, 4]
    second = claim(state_engine, "worker-b", 100)
    assert second == [5, 6, 7, 8, 9, 10]
    assert claim(state_engine, "worker-c", 100) == []
    # worker-a crashed: once its leases expire, its certificates are claimed again
    assert claim(state_engine, "worker-c", 100, now=NOW + TTL + dt.timedelta(seconds=1)) == [
        *first,
        *second,
    ]


def test_concurrent_claims_never_share_a_certificate(state_engine: Engine) -> None:
    add_due_certificates(state_engine, 60)
    start = threading.Barrier(4)
    batches: dict[str, list[int]] = {}

    def work(owner: str) -> None:
        start.wait()
        mine: list[int] = []
        while batch := claim(state_engine, owner, 7):
            mine += batch
        batches[owner] = mine

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    everything = [i for batch in batches.values() for i in batch]
    assert len(batches) == 4
    assert sorted(everything) == list(range(1, 61))  # each certificate claimed exactly once


def test_a_lease_of_a_killed_process_on_this_host_is_taken_over_at_once(
    state_engine: Engine,
) -> None:
    """A holder that died (SIGKILL) does not block its certificate until the lease expires;
    a live process's lease stays held."""
    import signal
    import socket
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    key = leases.names_key(["killed.example.com"])
    dead_owner = f"{socket.gethostname()}:{child.pid}:1"
    take(state_engine, key, dead_owner, now=dt.datetime.now(dt.UTC))
    with pytest.raises(LeaseHeld):  # alive: held
        take(state_engine, key, "worker-b", now=dt.datetime.now(dt.UTC))
    child.send_signal(signal.SIGKILL)
    child.wait()
    holder = take(state_engine, key, "worker-b", now=dt.datetime.now(dt.UTC))
    assert holder.owner == "worker-b"

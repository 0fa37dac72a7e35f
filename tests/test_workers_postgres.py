"""A pool as teams run it: one Prefect server, one PostgreSQL state database that holds the
certificates too (the database store backend), two process workers with homes of their own
(nothing shared on disk but the sealing key), 100 due certificates.

* The scheduled ``renew/renew-sandbox`` and an ad-hoc ``renew/ad-hoc`` of the same CA,
  triggered at once, one per worker: every certificate is renewed exactly once (one new
  serial, one successful renewal in its history), both runs end Completed, nothing is left.
* A worker killed with SIGKILL mid-run: the next run completes the rest and a sweep removes
  what the killed run left; no certificate is lost or half-written.

The certificates are issued for real on the sandbox, then made due by moving their recorded
expiry 10 days ahead (the renewal window is 30 days), so a renewed one is not due again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from uuid import UUID

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prefect.client.schemas.objects import StateType
from prefect.concurrency.sync import concurrency
from sqlalchemy import select, text

from acmeflow.core.limits import ca_slots_name
from acmeflow.core.state import certificates, history, renewals
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import Certificate, LogEntry
from acmeflow.core.storage import stores_from_settings
from bench.bulk_renew import enroll_certificates, two_names
from bench.pool import WORKER_START_SECONDS, Worker, make_due, trigger
from tests.fixtures_acmeflow import Home
from tests.fixtures_pool import POOL, leftovers, process_tree
from tests.serve_process import run_log_with, wait_for_runs
from tests.test_issue_e2e import txt_values

pytestmark = [pytest.mark.sandbox, pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

COUNT = 100


def seed_due(home: Home, prefix: str) -> tuple[list[int], dict[int, str | None]]:
    """COUNT certificates issued for real and made due; their ids and serials."""
    ids = enroll_certificates(COUNT, 0, prefix)
    assert len(ids) == COUNT
    with session_scope(open_database()) as s:
        serials = dict(s.execute(select(Certificate.id, Certificate.serial)).all())
    make_due(ids)
    home.ok("schedules", "sync", "--work-pool", POOL)
    return ids, serials


def history_of(cert_id: int) -> list[tuple[str, str, str | None, str | None]]:
    with session_scope(open_database()) as s:
        rows = s.scalars(select(LogEntry).where(LogEntry.certificate_id == cert_id))
        return [(r.kind, r.status, r.message, r.flow_run_id) for r in rows]


def test_two_overlapping_renew_runs_on_two_workers_renew_each_certificate_once(
    pg_home: Home, workers: list[Worker]
) -> None:
    assert os.environ["ACMEFLOW_DATABASE_URL"].startswith("postgresql")
    pg_home.ok("ca", "edit", "sandbox", "--max-in-flight", str(COUNT))  # one batch: all slots
    ids, before = seed_due(pg_home, "pool")
    # the runs overlap for sure: both plan every certificate, then wait for the CA's slots
    # this test holds; released, one run takes them all and renews, the other comes after
    with concurrency(ca_slots_name("sandbox"), occupy=COUNT, strict=True):
        run_ids = {  # the schedule's run and an ad-hoc one
            "scheduled": trigger("renew/renew-sandbox"),
            "ad-hoc": trigger("renew/ad-hoc", ca="sandbox"),
        }
        for run_id in run_ids.values():
            run_log_with(run_id, f"renewal plan: {COUNT} due", seconds=WORKER_START_SECONDS)
    finished = wait_for_runs(run_ids)
    states = {name: run.state.type for name, run in finished.items()}
    logs = "\n".join(w.log.read_text()[-3000:] for w in workers)
    assert states == {"scheduled": StateType.COMPLETED, "ad-hoc": StateType.COMPLETED}, logs
    ran_by = [sum(w.ran(r) for r in run_ids.values()) for w in workers]
    assert ran_by == [1, 1], f"each worker should run one of the two runs: {ran_by}\n{logs}"

    with session_scope(open_database()) as s:
        after = dict(s.execute(select(Certificate.id, Certificate.serial)).all())
        renewals = s.execute(
            select(LogEntry.certificate_id, LogEntry.status, LogEntry.flow_run_id).where(
                LogEntry.kind == "renew"
            )
        ).all()
    assert set(leftovers().values()) == {0}, leftovers()
    succeeded = Counter(cert_id for cert_id, status, _ in renewals if status == "success")
    assert all(succeeded[cert_id] == 1 for cert_id in ids), succeeded.most_common(3)
    assert all(after[cert_id] != before[cert_id] for cert_id in ids)
    by_run = Counter((str(run), status) for _, status, run in renewals)
    # both runs met the certificates (they overlapped): what one renewed, the other skipped
    assert {run for run, _ in by_run} == {str(r) for r in run_ids.values()}, by_run
    assert sum(n for (_, status), n in by_run.items() if status == "success") == COUNT, by_run
    for index in range(0, COUNT, 10):  # a sample of the names: no challenge value left
        assert txt_values(pg_home.sandbox, f"_acme-challenge.{two_names('pool', index)[0]}") == []


def test_a_worker_killed_mid_run_the_next_run_completes_the_rest(
    pg_home: Home, workers: list[Worker]
) -> None:
    """SIGKILL to a worker and its flow run while the run's TXT values are up: the next run,
    on the other worker, renews every certificate the killed one did not store; a sweep then
    removes the killed run's TXT values. No certificate is lost or half-written."""
    ids, before = seed_due(pg_home, "killed")
    killed_run = trigger("renew/renew-sandbox")
    deadline = time.monotonic() + 120
    while leftovers()["journaled TXT values"] == 0:  # mid-run: its TXT values are up
        assert time.monotonic() < deadline, "the first run never published its TXT values"
        time.sleep(0.05)
    victim = next(w for w in workers if w.ran(killed_run))
    for pid in process_tree(victim.process.pid):  # the worker and the flow run it started
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    victim.process.wait(timeout=30)
    survivor = next(w for w in workers if w is not victim)

    next_run = trigger("renew/ad-hoc", ca="sandbox")
    finished = wait_for_runs({"next": next_run})["next"]
    assert finished.state.type == StateType.COMPLETED, survivor.log.read_text()[-3000:]
    assert survivor.ran(next_run)
    pg_home.ok("sweep", "--older-than", "1s")

    assert set(leftovers().values()) == {0}, leftovers()
    with session_scope(open_database()) as s:
        rows = {c.id: c for c in s.scalars(select(Certificate).where(Certificate.id.in_(ids)))}
        succeeded = Counter(
            s.scalars(
                select(LogEntry.certificate_id).where(
                    LogEntry.kind == "renew", LogEntry.status == "success"
                )
            )
        )
    for cert_id in ids:
        row = rows[cert_id]
        assert row.serial != before[cert_id] and succeeded[cert_id] == 1, (
            history_of(cert_id),
            survivor.log.read_text()[-4000:],
        )
        live = stores_from_settings()[row.store].read_set(row.folder)
        assert row.folder.startswith("database:")  # the shared store
        cert = x509.load_pem_x509_certificate(live.cert)
        key = serialization.load_pem_private_key(live.key, None)
        assert format(cert.serial_number, "x") == row.serial  # files and database agree
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    for index in range(0, COUNT, 10):
        name = two_names("killed", index)[0]
        assert txt_values(pg_home.sandbox, f"_acme-challenge.{name}") == []


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 5 in the workers' runs; a share waits 20 s for a worker before its run
    takes it back (the workers poll every second)."""
    monkeypatch.setenv("ACMEFLOW_RENEW_BATCH_SIZE", "5")
    monkeypatch.setenv("ACMEFLOW_SHARE_PICKUP_SECONDS", "20")


def test_one_renew_run_spreads_its_batches_over_the_pool_workers(
    small_batches: None, pg_home: Home, workers: list[Worker]
) -> None:
    """One ad-hoc renew of 15 due certificates in batches of 5 on a two-worker pool: the run
    deals the three batches into one group per online worker, keeps two batches and hands
    the third out as a ``renew/share`` run, which the other worker renews. Each certificate
    is renewed once, the run's summary counts all 15, nothing is left."""
    ids = enroll_certificates(15, 0, "spread")
    make_due(ids)
    pg_home.ok("schedules", "sync", "--work-pool", POOL)
    run_id = trigger("renew/ad-hoc", ca="sandbox")
    parent = wait_for_runs({"run": run_id})["run"]
    logs = "\n".join(w.log.read_text()[-3000:] for w in workers)
    assert parent.state.type == StateType.COMPLETED, logs
    run_log_with(  # the run counts all 15, its share's too
        run_id,
        "handed 1 share(s) of 5 certificate(s) out to the pool's workers",
        "renew: 15 renewed, 0 failed, 0 skipped",
    )

    with session_scope(open_database()) as s:
        renewals = s.execute(
            select(LogEntry.certificate_id, LogEntry.flow_run_id).where(
                LogEntry.kind == "renew", LogEntry.status == "success"
            )
        ).all()
    assert sorted(cert_id for cert_id, _ in renewals) == sorted(ids)  # each exactly once
    runs = {str(run) for _, run in renewals}
    assert str(run_id) in runs and len(runs) == 2, runs  # the run and its share
    parent_worker = next(w for w in workers if w.ran(run_id))
    other = next(w for w in workers if w is not parent_worker)
    assert any(other.ran(UUID(run)) for run in runs - {str(run_id)}), logs
    assert set(leftovers().values()) == {0}, leftovers()


def test_claims_skip_the_rows_another_claim_holds_without_waiting(pg_home: Home) -> None:
    """Opening a renew batch locks its certificate rows ``FOR NO KEY UPDATE SKIP LOCKED``: a
    second run claiming the same certificates meanwhile gets none of them at once (it would
    wait for the first one's commit without SKIP LOCKED: its lock timeout turns that into an
    error), while rows merely referencing them (history entries) are not held up; after the
    commit they are free again."""
    with session_scope(open_database()) as s:
        ids = [
            certificates.add_certificate(
                s, store="certificate", folder=f"/claims/{n}", names=[f"{n}.example.com"]
            ).id
            for n in ("one", "two")
        ]
    with session_scope(open_database()) as first:
        assert renewals.lock_unclaimed(first, ids) == set(ids)
        with session_scope(open_database()) as second:
            second.execute(text("SET LOCAL lock_timeout = '5s'"))
            assert renewals.lock_unclaimed(second, ids) == set()
            history.log_start(
                second, kind="renew", names=["one.example.com"], ca_name="sandbox",
                store="certificate", certificate_id=ids[0],
            )  # fmt: skip
    with session_scope(open_database()) as third:
        assert renewals.lock_unclaimed(third, ids) == set(ids)

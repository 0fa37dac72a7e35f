"""Pool-wide limits: ``schedules sync`` writes them as Prefect global concurrency limits, and
a CA's limit on orders in flight holds across workers, counted at the CA side."""

from __future__ import annotations

import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from acmeflow.config.settings import get_settings
from acmeflow.core.limits import RENEW_RUNS_LIMIT, ca_rate_name, ca_slots_name, dns_slots_name
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import LogEntry
from bench.bulk_renew import enroll_certificates
from bench.pool import make_due, trigger
from tests.ca_proxy import order_counting_proxy
from tests.fixtures_acmeflow import Home, delete_global_limits
from tests.fixtures_pool import POOL
from tests.serve_process import wait_for_runs
from tests.test_issue_e2e import issue_json, txt_values

pytestmark = [pytest.mark.sandbox, pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

COUNT = 12
LIMIT = 2


def synced_limits(home: Home, *args: str) -> dict[str, str]:
    """``acmeflow schedules sync ARGS --json``: what it did to each global limit."""
    output = home.ok("schedules", "sync", *args, "--json").output
    limits: dict[str, str] = json.loads(output[output.index("{") :])["limits"]
    return limits


def server_limits() -> dict[str, tuple[int, float]]:
    """The server's acmeflow limits: name -> (limit, slots freed per second)."""
    with get_client(sync_client=True) as client:
        return {
            limit.name: (limit.limit, limit.slot_decay_per_second)
            for limit in client.read_global_concurrency_limits(limit=200)
            if limit.name.startswith("acmeflow-")
        }


def test_schedules_sync_writes_updates_and_deletes_the_pool_wide_limits(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    delete_global_limits()
    monkeypatch.setenv("ACMEFLOW_POOL_DNS_CONCURRENCY", "5")
    get_settings.cache_clear()
    provider = json.loads(home.ok("dns", "list", "--json").output)[0]["name"]
    slots, rate, dns = ca_slots_name("sandbox"), ca_rate_name("sandbox"), dns_slots_name(provider)
    home.ok("ca", "edit", "sandbox", "--max-in-flight", "4", "--order-rate", "300/3h")
    created = synced_limits(home)
    assert {slots: "created", rate: "created", dns: "created"}.items() <= created.items()
    limits = server_limits()
    assert limits[slots] == (4, 0.0)
    assert limits[rate] == (300, pytest.approx(300 / 10800))
    assert limits[dns] == (5, 0.0)
    assert set(synced_limits(home).values()) == {"unchanged"}

    home.ok("ca", "edit", "sandbox", "--max-in-flight", "6", "--order-rate", "none")
    listed = home.ok("schedules", "limits", "--json").output
    planned = {row["name"]: row for row in json.loads(listed[listed.index("[") :])}
    assert [planned[n]["action"] for n in (slots, rate, dns)] == ["update", "delete", "unchanged"]
    assert (planned[slots]["server_limit"], planned[slots]["slots_in_use"]) == (4, 0)
    changed = synced_limits(home)
    assert (changed[slots], changed[rate]) == ("updated", "deleted")
    assert server_limits()[slots] == (6, 0.0) and rate not in server_limits()
    shown = json.loads(home.ok("ca", "show", "sandbox", "--json").output)
    assert (shown["max_in_flight"], shown["order_rate"]) == (6, None)

    home.ok("ca", "edit", "sandbox", "--max-in-flight", "0")  # no pool-wide cap
    assert synced_limits(home)[slots] == "deleted"
    assert set(server_limits()) == {dns}


@pytest.mark.parametrize("bad", ["300", "x/3h", "300/never", "0/1h"])
def test_a_bad_order_rate_is_refused_and_changes_nothing(home: Home, bad: str) -> None:
    before = json.loads(home.ok("ca", "show", "sandbox", "--json").output)
    result = home.cli("ca", "edit", "sandbox", "--order-rate", bad)
    assert result.exit_code != 0
    assert "ORDERS/WINDOW" in result.output or "duration" in result.output, result.output
    assert "Traceback" not in result.output
    assert json.loads(home.ok("ca", "show", "sandbox", "--json").output) == before


def test_a_run_that_finds_no_free_slot_says_so_and_leaves_nothing(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker holds the CA's only slot: an issue waits one order's deadline, then
    fails with the catalog message (its history entry closed); a renewal is not started and
    is reported skipped. With the slot free again, both go through."""
    from prefect.concurrency.sync import concurrency

    delete_global_limits()
    cert_id = issue_json(home, "--name", "free.example.com")["id"]
    home.ok("ca", "edit", "sandbox", "--max-in-flight", "1")
    synced_limits(home)
    monkeypatch.setenv("ACMEFLOW_ORDER_TIMEOUT", "2")
    get_settings.cache_clear()
    with concurrency(ca_slots_name("sandbox"), occupy=1, strict=True):
        issued = home.cli("issue", "--ca", "sandbox", "--name", "busy.example.com")
        renewed = home.cli("renew", "--now", str(cert_id), "--json")
    assert issued.exit_code == 1, issued.output
    assert "A pool-wide limit had no free slot in time" in issued.output
    assert "acmeflow-ca-sandbox" in issued.output and "Traceback" not in issued.output
    (row,) = json.loads(renewed.output[renewed.output.index("{") :])["results"]
    assert row["status"] == "skipped" and "no free slot" in row["message"], row
    assert [r["status"] for r in history()] == ["success", "failed"]
    assert txt_values(home.sandbox, "_acme-challenge.busy.example.com") == []

    home.ok("issue", "--ca", "sandbox", "--name", "busy.example.com")
    home.ok("renew", "--now", str(cert_id))


def test_every_renew_run_counts_against_one_pool_wide_limit(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ACMEFLOW_POOL_RENEW_RUNS=1``: sync writes one limit for every renew deployment; while
    another run holds its slot, a renew run waits ``ACMEFLOW_POOL_RENEW_WAIT`` and reports its
    renewals skipped, changing nothing; with the slot free it renews."""
    from prefect.concurrency.sync import concurrency

    delete_global_limits()
    issued = issue_json(home, "--name", "runs.example.com")
    monkeypatch.setenv("ACMEFLOW_POOL_RENEW_RUNS", "1")
    monkeypatch.setenv("ACMEFLOW_POOL_RENEW_WAIT", "2")
    get_settings.cache_clear()
    assert synced_limits(home)[RENEW_RUNS_LIMIT] == "created"
    assert server_limits()[RENEW_RUNS_LIMIT] == (1, 0.0)
    with concurrency(RENEW_RUNS_LIMIT, occupy=1, strict=True):  # another renew run
        waited = home.cli("renew", "--now", str(issued["id"]), "--json")
    assert waited.exit_code == 1  # a renewal asked for was not done
    (row,) = json.loads(waited.output[waited.output.index("{") :])["results"]
    assert row["status"] == "skipped" and RENEW_RUNS_LIMIT in row["message"], row
    assert [r["kind"] for r in history()] == ["issue"]  # nothing was ordered

    renewed = home.ok("renew", "--now", str(issued["id"]), "--json").output
    assert json.loads(renewed[renewed.index("{") :])["renewed"] == 1


def history() -> list[dict[str, object]]:
    with session_scope(open_database()) as s:
        rows = s.query(LogEntry).order_by(LogEntry.id)
        return [{"kind": r.kind, "status": r.status, "names": r.names} for r in rows]


def renew_on_both_workers() -> None:
    """The scheduled run and an ad-hoc one at once, one per worker; both must complete."""
    runs = {
        "scheduled": trigger("renew/renew-sandbox"),
        "ad-hoc": trigger("renew/ad-hoc", ca="sandbox"),
    }
    states = {name: run.state.type for name, run in wait_for_runs(runs).items()}
    assert states == {"scheduled": StateType.COMPLETED, "ad-hoc": StateType.COMPLETED}


@pytest.fixture
def quick_take_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both workers run the two renew runs, so no worker is free for a share: each run takes
    its share back after a second instead of 15."""
    monkeypatch.setenv("ACMEFLOW_SHARE_PICKUP_SECONDS", "1")


@pytest.mark.usefixtures("quick_take_back", "workers")
def test_a_ca_limit_on_orders_in_flight_holds_across_workers(
    pg_home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two renew runs on two workers over 12 due certificates, the CA reached through a proxy
    that counts its open orders: with a limit of 2 the CA never has more than 2 orders open;
    with the limit raised, the same runs have more open at once (the count is real)."""
    delete_global_limits()
    ids = enroll_certificates(COUNT, 0, "limits")
    with order_counting_proxy(pg_home.sandbox) as (directory_url, counter):
        pg_home.ok(
            "ca",
            "edit",
            "sandbox",
            "--directory-url",
            directory_url,
            "--max-in-flight",
            str(LIMIT),
            "--order-rate",
            "1000/1h",
        )
        make_due(ids)
        monkeypatch.setenv("ACMEFLOW_POOL_DNS_CONCURRENCY", "3")  # held too, not counted here
        get_settings.cache_clear()
        assert synced_limits(pg_home, "--work-pool", POOL)[ca_slots_name("sandbox")] == "created"
        renew_on_both_workers()
        assert counter.placed == COUNT  # each certificate renewed once
        assert 1 <= counter.most_at_once <= LIMIT, counter.most_at_once

        counter.reset()
        pg_home.ok("ca", "edit", "sandbox", "--max-in-flight", "50")
        make_due(ids)
        assert synced_limits(pg_home, "--work-pool", POOL)[ca_slots_name("sandbox")] == "updated"
        renew_on_both_workers()
        assert counter.placed == COUNT
        assert counter.most_at_once > LIMIT, counter.most_at_once


def test_batches_are_never_larger_than_a_ca_pool_wide_cap() -> None:
    from acmeflow.core.pipeline import renewal_batches
    from acmeflow.core.renewal_plan import RenewalJob

    def job(n: int, ca: str) -> RenewalJob:
        return RenewalJob(
            n,
            [f"{n}.example.com"],
            ca,
            "certificate",
            "",
            "auto",
            "ec256",
            False,
            {},
            None,
            [],
            None,
            "due",
        )

    jobs = [job(n, "capped") for n in range(5)] + [job(n, "free") for n in range(5, 10)]
    sizes = {(b[0].ca, len(b)) for b in renewal_batches(jobs, 4, {"capped": 2})}
    assert sizes == {("capped", 2), ("capped", 1), ("free", 4), ("free", 1)}

"""The challenge journal and the ``sweep`` flow: values a crash left behind are removed, and
nothing else is (F6 operations, issue 4)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os

import pytest
import typer
from sqlalchemy import update
from typer.testing import CliRunner

from acmeflow import cli_sweep
from acmeflow.config.settings import get_settings
from acmeflow.core import issuance, pipeline
from acmeflow.core.deadline import Deadline
from acmeflow.core.dns01 import ChallengeRecord
from acmeflow.core.pipeline import Batch, OrderItem
from acmeflow.core.state.challenge_journal import ChallengeJournal, list_entries
from acmeflow.core.state.db import open_database
from acmeflow.core.state.models import ChallengeJournalEntry
from acmeflow.flows.sweep import sweep
from acmeflow.output import database
from acmeflow.providers.configured import ConfiguredProviders
from acmeflow.tasks.common import run_summary
from acmeflow.tasks.pipeline import pipeline_context
from tests.fixtures_acmeflow import Home
from tests.test_issue_e2e import issue_json, txt_values

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]


def record(name: str, value: str, provider: str = "bind-com") -> ChallengeRecord:
    fqdn = f"_acme-challenge.{name}"
    return ChallengeRecord(name, fqdn, fqdn, value, provider)


def journal() -> list[tuple[str, str, str]]:
    with database() as s:
        return [(e.provider, e.fqdn, e.value) for e in list_entries(s)]


def age(values: list[str], hours: float) -> None:
    """Make the journal rows of ``values`` look ``hours`` old (as after a crash long ago)."""
    then = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
    with database() as s:
        s.execute(
            update(ChallengeJournalEntry)
            .where(ChallengeJournalEntry.value.in_(values))
            .values(created_at=then)
        )


def crash_after_present(records: list[ChallengeRecord]) -> None:
    """What a run that dies after writing its TXT values leaves: values and journal rows."""
    item = OrderItem(
        ref="crashed", ca="sandbox", names=[], store="certificate", log_id=0, records=records
    )
    item.done = "plan_txt_records"
    batch = Batch([item], deadline=Deadline.after(60), now=dt.datetime.now(dt.UTC))
    pipeline.add_txt_records(batch, pipeline_context())  # the step `issue` and `renew` run
    assert item.error is None and item.done == "add_txt_records"


@pytest.fixture
def present_foreign(home: Home):
    """Write a value as someone else would (no journal); removed again after the test, so the
    shared sandbox zone stays clean for other tests."""
    written: list[tuple[str, str]] = []

    def present(name: str, value: str) -> None:
        with database() as s:
            provider = ConfiguredProviders(s).get("bind-com")
        provider.present(f"_acme-challenge.{name}", value)
        written.append((f"_acme-challenge.{name}", value))

    yield present
    with database() as s:
        provider = ConfiguredProviders(s).get("bind-com")
    for fqdn, value in written:
        provider.cleanup(fqdn, value)


def run_sweep_cli(*args: str) -> tuple[int, str]:
    app = typer.Typer()
    app.command()(cli_sweep.sweep)
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


@pytest.mark.prefect
def test_values_are_journaled_before_present_and_forgotten_after_cleanup(home: Home) -> None:
    stale = record("journal.example.com", "journal-value-1")
    crash_after_present([stale])
    assert journal() == [("bind-com", stale.target, stale.value)]
    assert stale.value in txt_values(home.sandbox, stale.target)

    class RefusingJournal:
        def record(self, records: object) -> None:
            raise RuntimeError("database is down")

        def forget(self, records: object) -> None:
            raise AssertionError("nothing to forget")

    with database() as s:
        providers = {"bind-com": ConfiguredProviders(s).get("bind-com")}
    unrecorded = record("unrecorded.example.com", "never-written")
    with pytest.raises(RuntimeError):
        issuance.add_txt_records([unrecorded], providers, journal=RefusingJournal())
    assert txt_values(home.sandbox, unrecorded.target) == []  # not journaled: not written

    real = ChallengeJournal(open_database(get_settings().resolved_database_url))
    assert issuance.cleanup_txt_records([stale], providers, journal=real) == []
    assert journal() == []
    assert txt_values(home.sandbox, stale.target) == []


@pytest.mark.prefect
def test_a_successful_issuance_leaves_no_journal_rows(home: Home) -> None:
    issue_json(home, "--name", "swept.example.com", "--name", "*.swept.example.com")
    assert journal() == []


@pytest.mark.prefect
def test_sweep_removes_only_stale_journaled_values(home: Home, present_foreign) -> None:
    crashed = [
        record("crash.example.com", "stale-value-apex"),
        record("crash.example.com", "stale-value-wildcard"),  # same name, two values
        record("www.crash.example.com", "stale-value-www"),
    ]
    fresh = record("crash.example.com", "fresh-value-in-flight")
    crash_after_present(crashed)
    age([r.value for r in crashed], hours=2)
    crash_after_present([fresh])  # an order still running: journaled seconds ago
    present_foreign("crash.example.com", "foreign-value")
    present_foreign("example.com", "foreign-at-mapped-domain")

    summary = sweep()

    assert summary["stale"] == 3 and summary["removed"] == 3 and summary["failed"] == 0
    assert sorted(txt_values(home.sandbox, "_acme-challenge.crash.example.com")) == [
        "foreign-value",
        "fresh-value-in-flight",
    ]
    assert txt_values(home.sandbox, "_acme-challenge.www.crash.example.com") == []
    assert journal() == [("bind-com", fresh.target, fresh.value)]
    (result,) = summary["providers"]
    assert result["provider"] == "bind-com"
    assert sorted(e["value"] for e in result["removed"]) == sorted(r.value for r in crashed)
    # values acmeflow did not write are reported, never deleted
    reported = {(e["fqdn"], e["value"]) for e in result["unjournaled"]}
    assert ("_acme-challenge.example.com", "foreign-at-mapped-domain") in reported
    assert ("_acme-challenge.crash.example.com", "foreign-value") in reported
    assert all(v != "fresh-value-in-flight" for _f, v in reported)
    assert "foreign-at-mapped-domain" in txt_values(home.sandbox, "_acme-challenge.example.com")

    again = sweep()  # idempotent: nothing stale is left
    assert again["stale"] == 0 and again["removed"] == 0
    # no grace at all: the in-flight value goes too (its journal row with it)
    assert sweep(older_than_seconds=0)["removed"] == 1
    assert txt_values(home.sandbox, "_acme-challenge.crash.example.com") == ["foreign-value"]
    assert journal() == []


@pytest.mark.prefect
def test_sweep_cli_grace_period_and_json(home: Home) -> None:
    crash_after_present([record("grace.example.com", "ten-minutes-old")])
    age(["ten-minutes-old"], hours=10 / 60)

    code, out = run_sweep_cli("--json")  # default grace: one hour
    assert code == 0
    assert json.loads(out)["removed"] == 0
    assert "ten-minutes-old" in txt_values(home.sandbox, "_acme-challenge.grace.example.com")

    code, out = run_sweep_cli("--older-than", "5m", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["removed"] == 1 and summary["older_than_seconds"] == 300
    assert txt_values(home.sandbox, "_acme-challenge.grace.example.com") == []
    assert journal() == []

    code, out = run_sweep_cli("--older-than", "soon")
    assert code == 1


@pytest.mark.prefect
def test_a_value_the_provider_cannot_remove_stays_journaled(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash_after_present([record("stuck.example.com", "stuck-value")])
    age(["stuck-value"], hours=3)
    # the credentials were rotated since the crash: the provider now refuses the cleanup
    monkeypatch.setenv(
        "ACMEFLOW_SANDBOX_TSIG_EXAMPLE_COM_SECRET",
        base64.b64encode(b"rotated-away-not-the-key-0123456").decode(),
    )
    code, out = run_sweep_cli()
    assert code == 1 and "0 stale value(s) removed, 1 not removed" in out
    code, out = run_sweep_cli("--json")
    (result,) = json.loads(out)["providers"]
    (failed,) = result["failed"]
    assert code == 1 and failed["fqdn"] == "_acme-challenge.stuck.example.com"
    assert failed["error"].startswith("Error adding TXT record") and "rfc2136: " in failed["error"]
    assert "stuck-value" in txt_values(home.sandbox, "_acme-challenge.stuck.example.com")
    assert journal() == [("bind-com", "_acme-challenge.stuck.example.com", "stuck-value")]

    monkeypatch.setenv(
        "ACMEFLOW_SANDBOX_TSIG_EXAMPLE_COM_SECRET", home.zone_env("example.com", "SECRET")
    )
    summary = sweep()
    assert summary["removed"] == 1 and journal() == []
    assert txt_values(home.sandbox, "_acme-challenge.stuck.example.com") == []


@pytest.mark.prefect
def test_a_disabled_provider_keeps_its_rows(home: Home) -> None:
    crash_after_present([record("off.example.com", "off-value")])
    age(["off-value"], hours=2)
    home.ok("dns", "edit", "bind-com", "--inactive")
    state = sweep(return_state=True)
    assert state.is_failed()  # automations and notifications on Failed fire
    summary = run_summary(state)
    assert summary["failed"] == 1 and summary["removed"] == 0
    (result,) = summary["providers"]
    assert (
        "DNS Provider - bind-com does not exist or is not active." in result["failed"][0]["error"]
    )
    assert journal() == [("bind-com", "_acme-challenge.off.example.com", "off-value")]
    home.ok("dns", "edit", "bind-com", "--active")
    assert sweep()["removed"] == 1
    assert txt_values(home.sandbox, "_acme-challenge.off.example.com") == []


@pytest.mark.prefect
def test_sweep_removes_staged_keys_closes_interrupted_history_and_releases_expired_leases(
    home: Home,
) -> None:
    """What a killed run leaves besides TXT values: a staged key, a `running` history row and
    its lease. Young ones (a run still going) are left alone."""
    from acmeflow.core.state import history, leases
    from acmeflow.core.state.models import LogEntry
    from acmeflow.core.storage import stores_from_settings

    store = stores_from_settings()["certificate"].directory
    old_key = store.write_staging_key("killed-run", b"-----BEGIN PRIVATE KEY-----\n")
    young_key = store.write_staging_key("running-run", b"-----BEGIN PRIVATE KEY-----\n")
    three_hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    os.utime(old_key, (three_hours_ago.timestamp(), three_hours_ago.timestamp()))
    with database() as s:
        killed = history.log_start(
            s,
            kind="renew",
            names=["k.example.com"],
            ca_name="sandbox",
            store="certificate",
            flow_run_id="run-killed",
        )
        killed.started_at = three_hours_ago
        young = history.log_start(
            s, kind="renew", names=["y.example.com"], ca_name="sandbox", store="certificate"
        )
        leases.acquire(
            s,
            "certificate:9",
            what="Renewal",
            owner="dead-worker",
            ttl=dt.timedelta(minutes=1),
            now=three_hours_ago,
        )
        killed_id, young_id = killed.id, young.id

    summary = sweep()
    assert summary["leftovers"] == {
        "staged_keys": ["killed-run"],
        "interrupted": [killed_id],
        "leases": ["certificate:9"],
    }
    assert not old_key.exists() and young_key.exists()
    with database() as s:
        closed, running = s.get(LogEntry, killed_id), s.get(LogEntry, young_id)
        assert closed is not None and running is not None
        assert closed.status == "failed"
        assert closed.message == "interrupted: run run-killed ended without closing this entry"
        assert running.status == "running"
        assert leases.held(s, ["certificate:9"]) == []
    code, out = run_sweep_cli()
    assert code == 0 and "staged private key" not in out  # nothing left the second time

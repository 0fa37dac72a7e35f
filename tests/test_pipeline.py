"""The one issuance sequence on batches: one DNS UPDATE per zone for a whole batch, a Prefect
retry of a step acting only on the items still pending, a failing item dropping out while the
others go on (also through a deployment run under ``acmeflow serve``)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from pathlib import Path
from uuid import UUID

import dns.message
import dns.query
import dns.rdatatype
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import StateType

from acmeflow.config.settings import get_settings
from acmeflow.core import errors, pipeline
from acmeflow.core.deadline import Deadline
from acmeflow.core.dns01 import ChallengeRecord
from acmeflow.core.pipeline import Batch, OrderItem, Step
from acmeflow.core.state import history
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import ChallengeJournalEntry, LogEntry
from acmeflow.core.storage import stores_from_settings
from acmeflow.sandbox import SandboxInfo
from acmeflow.tasks import pipeline as pipeline_tasks
from tests.fixtures_acmeflow import Home
from tests.serve_process import prefect_cli, run_log, served, wait_for_deployments
from tests.test_issue_e2e import issue_json, txt_values
from tests.test_renew_e2e import cert_row, live_serial

pytestmark = [pytest.mark.sandbox]


def engine():  # type: ignore[no-untyped-def]
    return open_database(get_settings().resolved_database_url)


def soa_serial(sandbox: SandboxInfo, zone: str) -> int:
    answer = dns.query.udp(
        dns.message.make_query(zone, dns.rdatatype.SOA), sandbox.dns_host, port=sandbox.dns_port
    )
    return int(answer.answer[0][0].serial)


def opened_items(names: list[list[str]], **fields: object) -> list[OrderItem]:
    """Items with their history entries opened, as the flows open them."""
    items = []
    with session_scope(engine()) as s:
        for index, item_names in enumerate(names):
            entry = history.log_start(
                s, kind="issue", names=item_names, ca_name="sandbox", store="certificate"
            )
            items.append(
                OrderItem(
                    ref=f"test-{entry.id}-{index}",
                    ca="sandbox",
                    names=item_names,
                    store="certificate",
                    log_id=entry.id,
                    **fields,  # type: ignore[arg-type]
                )
            )
    return items


def batch_of(items: list[OrderItem]) -> Batch:
    return Batch(items, deadline=Deadline.after(120), now=dt.datetime.now(dt.UTC))


def no_debris(journaled_by: frozenset[str] = frozenset()) -> None:
    """No staged key in any store, no `running` history entry, and no journaled TXT value but
    those of the providers ``journaled_by`` (one that refuses cleanups too: `sweep` retries)."""
    for store in stores_from_settings(get_settings()).values():
        assert store.staged_requests() == []
    with session_scope(engine()) as s:
        providers = {row.provider for row in s.query(ChallengeJournalEntry)}
        assert providers <= journaled_by, providers
        assert s.query(LogEntry).filter(LogEntry.status == "running").count() == 0


def test_all_txt_values_of_a_batch_reach_their_zone_in_one_update(home: Home) -> None:
    """Three orders, six values in example.com: one UPDATE adds them (the zone's serial moves
    by one), one UPDATE removes them."""
    items = opened_items([[f"b{n}.example.com", f"*.b{n}.example.com"] for n in range(3)])
    for n, item in enumerate(items):
        item.records = [
            ChallengeRecord(
                name,
                f"_acme-challenge.b{n}.example.com",
                f"_acme-challenge.b{n}.example.com",
                f"value-{n}-{i}",
                "bind-com",
            )
            for i, name in enumerate(item.names)
        ]
        item.done = "plan_txt_records"
    batch = batch_of(items)
    ctx = pipeline_tasks.pipeline_context()
    before = soa_serial(home.sandbox, "example.com")
    pipeline.add_txt_records(batch, ctx)
    assert [item.done for item in items] == ["add_txt_records"] * 3
    assert soa_serial(home.sandbox, "example.com") == before + 1
    pipeline.clean_up(batch, ctx)
    assert soa_serial(home.sandbox, "example.com") == before + 2
    assert all(item.error is not None for item in items)  # unfinished: closed, not `running`
    no_debris()


@pytest.mark.prefect
def test_a_retried_step_acts_only_on_the_items_still_pending(
    home: Home, prefect_harness: None
) -> None:
    """Item ``a`` succeeds at once, ``b`` meets a retryable error once, ``c`` always: the
    Prefect retry runs the step again for ``b`` and ``c`` only; on the last attempt ``c`` drops
    out with its own error and the task completes, so the batch goes on."""
    calls: dict[str, int] = {}

    def flaky(batch: Batch, ctx: pipeline.Context) -> None:
        def work(item: OrderItem) -> None:
            calls[item.names[0]] = calls.get(item.names[0], 0) + 1
            if item.names[0] == "c.example.com" or (
                item.names[0] == "b.example.com" and calls[item.names[0]] == 1
            ):
                raise errors.CAUnavailable(detail=f"{item.names[0]}: try again")

        pipeline._each_item(batch, "place_orders", ctx, work, 4)

    step_task = pipeline_tasks._step_task(Step("place_orders", flaky))
    items = opened_items([["a.example.com"], ["b.example.com"], ["c.example.com"]])

    @flow
    def one_step() -> list[str]:
        step_task(batch_of(items))
        return [item.done for item in items]

    state = one_step(return_state=True)
    assert state.is_completed(), state.message
    assert calls == {"a.example.com": 1, "b.example.com": 2, "c.example.com": 3}
    assert [item.done for item in items] == ["place_orders", "place_orders", "opened"]
    assert isinstance(items[2].error, errors.CAUnavailable) and items[2].failed_at == "place_orders"
    with session_scope(engine()) as s:
        entry = history.get_log_entry(s, items[2].log_id)
        assert entry.status == "failed"
        assert entry.message == errors.CAUnavailable.message
        assert (entry.detail or "").startswith("at place_orders: c.example.com: try again")


def task_names_of(run_id: UUID, wanted: set[str], seconds: float = 30) -> set[str]:
    """The task names of a flow run's task runs, once ``wanted`` are all recorded (the server
    records task runs in batches) or ``seconds`` passed."""
    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
            )
            names = {t.name.rsplit("-", 1)[0] for t in runs}
            if wanted <= names or time.monotonic() > deadline:
                return names
            time.sleep(0.5)


def refusing_secret() -> str:
    """A TSIG secret BIND does not know: every UPDATE signed with it is refused."""
    return base64.b64encode(b"not the sandbox key, 32 bytes.!!").decode()


@pytest.mark.prefect
def test_a_renewal_batch_run_from_a_deployment_drops_what_a_refusing_provider_serves(
    no_reuse_home: Home, prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``acmeflow serve`` and ``prefect deployment run renew/ad-hoc --watch``: the
    certificates of example.org, whose DNS provider now refuses updates, fail at
    ``add_txt_records`` with the catalog message in their history and a backoff; the
    example.com ones in the same batch are renewed; the run ends Failed; the steps are task
    runs of the flow run; nothing is left behind."""
    home = no_reuse_home
    assert home.add_zone_provider("bind-org", "example.org").exit_code == 0
    home.ok("dns", "map", "bind-org", "example.org")
    good = [issue_json(home, "--name", f"ok{n}.example.com")["id"] for n in range(2)]
    bad = issue_json(home, "--name", "refused.example.org")["id"]
    old = {cert_id: live_serial(cert_row(cert_id).folder) for cert_id in [*good, bad]}
    monkeypatch.setenv("REFUSING_TSIG_SECRET", refusing_secret())
    home.ok("dns", "edit", "bind-org", "--secret", "tsig_secret=env:REFUSING_TSIG_SECRET")
    with served(tmp_path) as (serve, log):
        wait_for_deployments(["renew/ad-hoc"], serve, log)
        watched = prefect_cli(
            "deployment",
            "run",
            "renew/ad-hoc",
            "--param",
            f"certificate_ids={json.dumps([*good, bad])}",
            "--watch",
            timeout=300,
        )
        output = watched.stdout + watched.stderr
    run_id = next(line.split()[-1] for line in output.splitlines() if "UUID:" in line)
    with get_client(sync_client=True) as client:
        assert watched.returncode != 0, run_log(run_id)  # Failed: one renewal failed
        run = client.read_flow_run(run_id)
        assert run.state is not None and run.state.type == StateType.FAILED, output
    wanted = {step.name for step in pipeline.SEQUENCE}
    assert wanted <= task_names_of(run.id, wanted), "the steps are not task runs of the run"
    for cert_id in good:
        assert live_serial(cert_row(cert_id).folder) != old[cert_id]
    refused = cert_row(bad)
    assert live_serial(refused.folder) == old[bad]  # still in service
    assert refused.next_attempt_at is not None and refused.failure_count == 1
    with session_scope(engine()) as s:
        last = [
            e
            for e in s.query(LogEntry).filter(
                LogEntry.certificate_id == bad, LogEntry.kind == "renew"
            )
        ]
        assert len(last) == 1 and last[0].status == "failed"
        assert last[0].message.startswith("Error adding TXT record for domain validation.")
        assert (last[0].detail or "").startswith("at add_txt_records: rfc2136: ")
    no_debris(journaled_by=frozenset({"bind-org"}))
    assert txt_values(home.sandbox, "_acme-challenge.refused.example.org") == []

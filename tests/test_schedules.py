"""Per-CA Prefect deployments: ``acmeflow schedules sync|list`` and ``acmeflow serve`` (F9)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
import typer
from prefect import Flow, flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from prefect.runner import Runner
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner, Result

from acmeflow import cli_schedules, schedules
from acmeflow.config.settings import get_settings
from acmeflow.core.state import cas, certificates
from acmeflow.core.state.cadence_facts import CAFacts
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.sandbox import SandboxInfo
from acmeflow.schedules import ServeState, build_desired, resync_runner, sync_schedules
from tests.fixtures_acmeflow import Home
from tests.support import free_port

pytestmark = [pytest.mark.prefect]

H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


def schedules_cli(*args: str) -> Result:
    """The two commands as the lead mounts them in ``acmeflow.cli``."""
    app = typer.Typer()
    app.add_typer(cli_schedules.app, name="schedules")
    app.command("serve")(cli_schedules.serve)
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def sync_json() -> dict[str, Any]:
    result = schedules_cli("schedules", "sync", "--json")
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def read_deployment(full_name: str) -> Any:
    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(full_name)


def ca_choices_of(full_name: str) -> list[str]:
    """The CA vendors the deployment's run form offers for ``ca``."""
    prop = read_deployment(full_name).parameter_openapi_schema["properties"]["ca"]
    branches = prop.get("anyOf") or [prop]
    return next(b["enum"] for b in branches if "enum" in b)


def intervals(deployment: Any) -> list[dt.timedelta]:
    return [s.schedule.interval for s in deployment.schedules]


def flow_available(key: str) -> bool:
    try:
        schedules.load_flow(key)
    except Exception:
        return False
    return True


def add_short_lived_certificate(ca_name: str) -> None:
    """Record a 160-hour certificate under ``ca_name`` (as Let's Encrypt 'shortlived' issues)."""
    engine = open_database(get_settings().resolved_database_url)
    not_before = dt.datetime.now(dt.UTC)
    with session_scope(engine) as s:
        ca = cas.get_ca(s, ca_name)
        certificates.add_certificate(
            s,
            store="certificate",
            folder=f"short-{ca_name}",
            names=["short.example.com"],
            not_before=not_before,
            not_after=not_before + 160 * H,
            ca_vendor_id=ca.id,
            enrollment="auto",
        )


def test_sync_creates_updates_and_deletes_per_ca_deployments(
    prefect_harness: None, home_factory: Callable[[SandboxInfo], Home], sandbox: SandboxInfo
) -> None:
    home = home_factory(sandbox)
    assert home.add_sandbox_ca("alpha", renew_days="30").exit_code == 0
    assert home.add_sandbox_ca("bravo", renew_days="30").exit_code == 0
    add_short_lived_certificate("bravo")  # bravo's certificates live 160 h

    report = sync_json()
    assert {"renew/renew-alpha", "renew/renew-bravo"} <= set(report["created"])
    # the session's server may hold the ad-hoc ones already (an earlier `acmeflow serve`)
    synced = report["created"] + report["updated"] + report["unchanged"]
    assert {"renew/ad-hoc", "issue/ad-hoc"} <= set(synced)
    assert report["failed"] == []
    alpha = read_deployment("renew/renew-alpha")
    bravo = read_deployment("renew/renew-bravo")
    # custom CA, no certificates yet: the 30-day window alone -> daily
    assert intervals(alpha) == [D]
    # a 160-hour lifetime learned from the database -> every 6 hours
    assert intervals(bravo) == [6 * H]
    assert alpha.parameters == {"ca": "alpha"}
    assert bravo.parameters == {"ca": "bravo"}
    assert "acmeflow" in alpha.tags and "ca:alpha" in alpha.tags
    assert "every 6 h" in (bravo.description or "")
    assert read_deployment("renew/ad-hoc").schedules == []
    assert read_deployment("issue/ad-hoc").schedules == []
    for key in ("scan", "sweep"):
        if flow_available(key):
            assert f"{key}/daily" in synced
            assert intervals(read_deployment(f"{key}/daily")) == [D]
        else:  # the flow has not landed yet: reported, never fatal
            assert any(s["name"] == key for s in report["skipped"])
    for key in ("deploy",):
        if flow_available(key):
            assert read_deployment(f"{key}/ad-hoc").schedules == []

    # the run forms offer the configured CA vendors
    assert ca_choices_of("issue/ad-hoc") == ["alpha", "bravo"]
    assert ca_choices_of("renew/ad-hoc") == ["alpha", "bravo"]

    # a second sync with no change touches nothing
    again = sync_json()
    assert again["created"] == again["updated"] == again["deleted"] == []
    assert {"renew/renew-alpha", "renew/renew-bravo"} <= set(again["unchanged"])

    # editing a CA's renewal window changes its schedule in place
    home.ok("ca", "edit", "alpha", "--renew-days", "2")
    report = sync_json()
    assert report["updated"] == ["renew/renew-alpha"]
    assert report["created"] == report["deleted"] == []
    assert "schedule: daily -> every 6 h" in report["changes"]["renew/renew-alpha"]
    updated = read_deployment("renew/renew-alpha")
    assert updated.id == alpha.id
    assert intervals(updated) == [6 * H]

    # `schedules list` now shows everything in sync
    listed = schedules_cli("schedules", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {r["deployment"]: r for r in json.loads(listed.stdout)}
    assert rows["renew/renew-alpha"]["action"] == "unchanged"
    assert rows["renew/renew-alpha"]["desired"]["cadence"]["interval"] == "every 6 h"

    # removing a CA deletes its deployment, and nothing else
    home.ok("ca", "remove", "bravo", "--force")
    report = sync_json()
    assert report["deleted"] == ["renew/renew-bravo"]
    assert report["created"] == report["updated"] == []
    with pytest.raises(ObjectNotFound):
        read_deployment("renew/renew-bravo")
    assert intervals(read_deployment("renew/renew-alpha")) == [6 * H]
    assert read_deployment("renew/ad-hoc").schedules == []
    assert report["ca_choices"] and ca_choices_of("issue/ad-hoc") == ["alpha"]


def test_serve_refuses_to_start_without_a_prefect_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        result = schedules_cli("serve")
    assert result.exit_code == 1
    assert "PREFECT_API_URL is not set" in result.output
    assert "prefect server start" in result.output
    assert "PREFECT_API_URL=http://127.0.0.1:4200/api" in result.output

    port = free_port()  # nobody listens on it
    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        result = schedules_cli("serve")
        sync_result = schedules_cli("schedules", "sync")
    assert result.exit_code == 1
    assert f"no Prefect server answers at http://127.0.0.1:{port}/api" in result.output
    assert "prefect server start" in result.output
    assert sync_result.exit_code == 1
    assert "prefect server start" in sync_result.output


# --- stand-in flows: every flow present, including ones other engineers are still writing ---


@flow(name="standin-renew")
def standin_renew(ca: str | None = None, certificate_ids: list[int] | None = None) -> str:
    """Stands in for flows/renew.py."""
    return f"renewed for {ca}"


@flow(name="standin-renew")
def standin_renew_share(certificate_ids: list[int]) -> str:
    """Stands in for flows/renew.py's renew_share."""
    return f"renewed {certificate_ids}"


@flow(name="standin-scan")
def standin_scan() -> int:
    return 0


@flow(name="standin-sweep")
def standin_sweep() -> int:
    return 0


@flow(name="standin-issue")
def standin_issue(ca: str, names: list[str]) -> int:
    return 0


@flow(name="standin-deploy")
def standin_deploy(certificate_ids: list[int] | None = None) -> int:
    return 0


@flow(name="standin-deploy-pending")
def standin_deploy_pending() -> int:
    return 0


STANDINS: dict[str, Flow[Any, Any]] = {
    "renew": standin_renew,
    "renew_share": standin_renew_share,
    "scan": standin_scan,
    "sweep": standin_sweep,
    "issue": standin_issue,
    "deploy": standin_deploy,
    "deploy_pending": standin_deploy_pending,
}


def standin_loader(key: str) -> Flow[Any, Any]:
    return STANDINS[key]


def test_sync_with_every_flow_present(prefect_harness: None) -> None:
    cas = [
        CAFacts(name="le", vendor="letsencrypt", renew_days=30),
        CAFacts(name="le-short", vendor="letsencrypt", renew_days=30, profile="shortlived"),
    ]

    async def run(facts: list[CAFacts]) -> schedules.SyncReport:
        async with get_client() as client:
            return await sync_schedules(client, build_desired(facts, loader=standin_loader))

    report = asyncio.run(run(cas))
    assert report.skipped == []
    assert {
        "standin-renew/renew-le",
        "standin-renew/renew-le-short",
        "standin-scan/daily",
        "standin-sweep/daily",
        "standin-issue/ad-hoc",
        "standin-renew/ad-hoc",
        "standin-renew/share",
        "standin-deploy/ad-hoc",
        "standin-deploy-pending/hourly",
    } <= set(report.created)
    assert intervals(read_deployment("standin-sweep/daily")) == [D]
    assert intervals(read_deployment("standin-scan/daily")) == [D]
    assert intervals(read_deployment("standin-deploy-pending/hourly")) == [H]
    assert intervals(read_deployment("standin-renew/renew-le")) == [D]
    assert intervals(read_deployment("standin-renew/renew-le-short")) == [6 * H]
    scheduled = read_deployment("standin-renew/renew-le-short")
    assert scheduled.global_concurrency_limit is not None
    assert scheduled.global_concurrency_limit.limit == 1  # overlapping runs are cancelled

    report = asyncio.run(run(cas[:1]))
    assert report.deleted == ["standin-renew/renew-le-short"]
    assert "standin-renew/ad-hoc" in report.unchanged  # only renew-<ca> ever goes away


def test_sync_moves_file_entrypoints_to_the_acmeflow_module_paths(
    prefect_harness: None, home_factory: Callable[[SandboxInfo], Home], sandbox: SandboxInfo
) -> None:
    """Deployments created before the acmeflow namespace point at ``flows/renew.py:renew``."""
    from prefect.client.schemas.actions import DeploymentUpdate

    home = home_factory(sandbox)
    assert home.add_sandbox_ca("legacy").exit_code == 0
    sync_json()
    old = read_deployment("renew/renew-legacy")
    assert old.entrypoint == "acmeflow.flows.renew.renew"
    with get_client(sync_client=True) as client:
        client.update_deployment(old.id, DeploymentUpdate(entrypoint="flows/renew.py:renew"))

    report = sync_json()
    assert "renew/renew-legacy" in report["updated"]
    assert (
        "entrypoint: flows/renew.py:renew -> acmeflow.flows.renew.renew"
        in report["changes"]["renew/renew-legacy"]
    )
    moved = read_deployment("renew/renew-legacy")
    assert moved.id == old.id
    assert moved.entrypoint == "acmeflow.flows.renew.renew"
    assert sync_json()["updated"] == []


@pytest.mark.prefect
def test_sync_rewrites_the_run_form_of_a_deployment_from_an_older_signature(
    prefect_harness: None, home_factory: Callable[[SandboxInfo], Home], sandbox: SandboxInfo
) -> None:
    """``issue/ad-hoc`` deployed before the named subject fields still asks for
    ``csr_fields``/``csr_pem``/``request_id``: sync writes the flow's current form."""
    from prefect.client.schemas.actions import DeploymentUpdate

    home = home_factory(sandbox)
    assert home.add_sandbox_ca("former").exit_code == 0
    sync_json()
    old = read_deployment("issue/ad-hoc")
    schema = dict(old.parameter_openapi_schema)
    properties = {
        k: v for k, v in schema["properties"].items() if k not in ("organization", "country")
    }
    properties.update(csr_fields={"type": "object"}, request_id={"type": "string"})
    with get_client(sync_client=True) as client:
        client.update_deployment(
            old.id, DeploymentUpdate(parameter_openapi_schema={**schema, "properties": properties})
        )

    report = sync_json()
    assert "issue/ad-hoc" in report["updated"]
    assert any(c.startswith("form: ") for c in report["changes"]["issue/ad-hoc"])
    form = set(read_deployment("issue/ad-hoc").parameter_openapi_schema["properties"])
    assert {"organization", "country"} <= form
    assert not {"csr_fields", "request_id"} & form
    assert "issue/ad-hoc" not in sync_json()["updated"]


@pytest.mark.prefect
def test_list_shows_paused_schedules_and_sync_resumes_them(
    prefect_harness: None, home_factory: Callable[[SandboxInfo], Home], sandbox: SandboxInfo
) -> None:
    """A stopped `serve` leaves its schedules paused; moving to workers must not keep them so."""
    home = home_factory(sandbox)
    assert home.add_sandbox_ca("paused-ca").exit_code == 0
    sync_json()
    deployment = read_deployment("renew/renew-paused-ca")
    with get_client(sync_client=True) as client:
        client.pause_deployment(deployment.id)
    assert read_deployment("renew/renew-paused-ca").paused

    listed = schedules_cli("schedules", "list", "--json")
    assert listed.exit_code == 0, listed.output
    row = {r["deployment"]: r for r in json.loads(listed.stdout)}["renew/renew-paused-ca"]
    assert row["existing"]["paused"] is True
    assert row["action"] == "update" and "paused -> resumed" in row["changes"]
    table = schedules_cli("schedules", "list")
    assert "paused" in table.output

    report = sync_json()
    assert "renew/renew-paused-ca" in report["updated"]
    assert report["changes"]["renew/renew-paused-ca"] == ["paused -> resumed"]
    assert read_deployment("renew/renew-paused-ca").paused is False
    assert "renew/renew-paused-ca" in sync_json()["unchanged"]


def test_serve_registers_every_deployment_and_runs_a_triggered_run(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `acmeflow serve` does, driven one poll at a time: sync, register, run."""
    cas = [CAFacts(name="served", vendor="letsencrypt", renew_days=30)]

    async def scenario() -> tuple[ServeState, Any, Any]:
        runner = Runner(name="acmeflow-test", pause_on_shutdown=False)
        state = ServeState()
        await resync_runner(
            runner, state, loader=standin_loader, desired=build_desired(cas, loader=standin_loader)
        )
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("standin-renew/renew-served")
            run = await client.create_flow_run_from_deployment(deployment.id)
        await runner.start(run_once=True)
        async with get_client() as client:
            finished = await client.read_flow_run(run.id)
        return state, deployment, finished

    state, deployment, finished = asyncio.run(scenario())
    assert {
        "standin-renew/renew-served",
        "standin-scan/daily",
        "standin-sweep/daily",
        "standin-issue/ad-hoc",
        "standin-renew/ad-hoc",
        "standin-deploy/ad-hoc",
    } <= state.served
    assert deployment.work_pool_name is None  # served: no work pool
    assert deployment.parameters == {"ca": "served"}
    assert finished.state is not None
    assert finished.state.type == StateType.COMPLETED, finished.state
    assert finished.parameters == {"ca": "served"}


def test_serve_picks_up_cas_added_and_removed_while_it_runs(
    prefect_harness: None, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`acmeflow serve` re-syncs: a CA added later gets its deployment served, a removed CA's
    deployment goes away, without restarting."""
    monkeypatch.setenv("ACMEFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("ACMEFLOW_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    engine = open_database(get_settings().resolved_database_url)

    def add_ca(name: str, renew_days: int) -> None:
        with session_scope(engine) as s:
            cas.add_ca(
                s,
                name=name,
                vendor="custom",
                email="admin@example.com",
                directory_url="https://ca.example.net/directory",
                renew_days=renew_days,
            )

    def remove_ca(name: str) -> None:
        with session_scope(engine) as s:
            cas.remove_ca(s, name)

    async def exists(full_name: str) -> bool:
        async with get_client() as client:
            try:
                await client.read_deployment_by_name(full_name)
            except ObjectNotFound:
                return False
            return True

    async def wait_for(predicate: Callable[[], Any], what: str) -> None:
        deadline = asyncio.get_running_loop().time() + 60
        while not await predicate():
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting: {what}"
            await asyncio.sleep(0.2)

    add_ca("early", 30)
    reports: list[schedules.SyncReport] = []

    async def scenario() -> None:
        runner = Runner(name="acmeflow-serve-test", pause_on_shutdown=False)
        serving = asyncio.create_task(
            schedules.serve(
                resync_every=0.5, loader=standin_loader, on_report=reports.append, runner=runner
            )
        )
        try:
            await wait_for(lambda: exists("standin-renew/renew-early"), "renew-early")
            add_ca("late", 2)
            remove_ca("early")
            await wait_for(lambda: exists("standin-renew/renew-late"), "renew-late created")
            await wait_for(
                lambda: _negate(exists("standin-renew/renew-early")), "renew-early deleted"
            )

            async def reported() -> bool:  # the round that made them has finished
                return any("standin-renew/renew-early" in r.deleted for r in reports[1:])

            await wait_for(reported, "the re-sync report")
            async with get_client() as client:
                late = await client.read_deployment_by_name("standin-renew/renew-late")
            assert intervals(late) == [6 * H]
            assert late.parameters == {"ca": "late"}
            assert late.id in runner._deployment_registry.get_deployment_ids()
        finally:
            while not runner.started and not serving.done():
                await asyncio.sleep(0.05)
            if runner.started:
                await runner.astop()
            await asyncio.wait_for(serving, 30)

    try:
        asyncio.run(scenario())
    finally:
        get_settings.cache_clear()
    assert "standin-renew/renew-early" in reports[0].created
    assert any("standin-renew/renew-late" in r.created for r in reports[1:])
    assert any("standin-renew/renew-early" in r.deleted for r in reports[1:])


async def _negate(awaitable: Any) -> bool:
    return not await awaitable


def test_prefect_yaml_declares_the_same_deployments(prefect_harness: None) -> None:
    """`prefect deploy --all` with prefect.yaml gives the deployments sync wants (in a pool)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from prefect.client.schemas.actions import WorkPoolCreate

    root = Path(__file__).resolve().parents[1]

    async def create_pool() -> None:
        async with get_client() as client:
            try:
                await client.read_work_pool("acmeflow")
            except ObjectNotFound:
                await client.create_work_pool(WorkPoolCreate(name="acmeflow", type="process"))

    asyncio.run(create_pool())
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PYTHONPATH": str(root)}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), "--no-prompt", "deploy", "--all"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    async def plan() -> list[schedules.PlanItem]:
        async with get_client() as client:
            return await schedules.plan_from_api(client, build_desired([]))

    items = {i.full_name: i for i in asyncio.run(plan())}
    names = ("scan/daily", "sweep/daily", "issue/ad-hoc", "renew/ad-hoc", "renew/share")
    for name in (*names, "deploy/ad-hoc"):
        item = items[name]
        assert item.action == "unchanged", (name, item.changes)
        assert item.existing is not None and item.existing.work_pool_name == "acmeflow"


def test_serve_polls_every_two_seconds_unless_prefect_setting_given(monkeypatch):
    monkeypatch.delenv("PREFECT_RUNNER_POLL_FREQUENCY", raising=False)
    assert schedules.runner_poll_seconds() == 2.0
    monkeypatch.setenv("PREFECT_RUNNER_POLL_FREQUENCY", "5")
    assert schedules.runner_poll_seconds() is None

"""``acmeflow schedules sync|list`` and ``acmeflow serve``: the Prefect deployments (F9)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from . import schedules
from .output import catalog_errors, console, err_console, print_json, table

app = typer.Typer(
    help="Prefect deployments and schedules: one renew-<ca> per CA vendor, scan and sweep daily.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
PoolOpt = Annotated[
    str | None,
    typer.Option(
        "--work-pool",
        help="put new deployments in this work pool (run by a worker); "
        "default: none (run by `acmeflow serve`)",
    ),
]


def require_api() -> None:
    """Exit 1, saying how to start a server, unless a Prefect API answers."""
    problem = asyncio.run(schedules.api_problem())
    if problem is None:
        return
    err_console.print(f"[bold red]Prefect API unavailable:[/] {problem}.", soft_wrap=True)
    err_console.print(
        f"acmeflow needs a running Prefect server: {schedules.SERVER_HINT}",
        markup=False,
        soft_wrap=True,
    )
    raise typer.Exit(code=1)


def _print_report(report: schedules.SyncReport) -> None:
    for label, names, style in (
        ("created", report.created, "green"),
        ("updated", report.updated, "yellow"),
        ("deleted", report.deleted, "red"),
        ("unchanged", report.unchanged, "dim"),
    ):
        for name in names:
            extra = "; ".join(report.changes.get(name, []))
            console.print(f"[{style}]{label:9}[/] {name}" + (f"  ({extra})" if extra else ""))
    for name, outcome in sorted(report.automations.items()):
        style = {"created": "green", "updated": "yellow"}.get(outcome, "dim")
        console.print(f"[{style}]{outcome:9}[/] automation {name!r}")
    for name, outcome in sorted(report.limits.items()):
        style = {"created": "green", "updated": "yellow", "deleted": "red"}.get(outcome, "dim")
        console.print(f"[{style}]{outcome:9}[/] global concurrency limit {name}")
    for item in report.skipped:
        console.print(f"[dim]skipped  [/] {item.name}: {item.reason}", soft_wrap=True)
    for item in report.failed:
        err_console.print(f"[bold red]failed   [/] {item.name}: {item.reason}", soft_wrap=True)


async def _sync(work_pool: str | None) -> schedules.SyncReport:
    from prefect.client.orchestration import get_client

    desired = await asyncio.to_thread(schedules.desired_from_database)
    async with get_client() as client:
        return await schedules.sync_schedules(client, desired, work_pool=work_pool)


@app.command("sync")
@catalog_errors
def sync(work_pool: PoolOpt = None, as_json: JsonOpt = False) -> None:
    """Reconcile the Prefect deployments with the configured CA vendors: create, update, and
    delete the renew-<ca> deployment of a removed CA."""
    require_api()
    report = asyncio.run(_sync(work_pool))
    if as_json:
        print_json(report.as_dict())
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(code=1)


async def _plan() -> list[schedules.PlanItem]:
    from prefect.client.orchestration import get_client

    desired = await asyncio.to_thread(schedules.desired_from_database)
    async with get_client() as client:
        return await schedules.plan_from_api(client, desired)


_STATUS = {
    "create": "missing (sync creates)",
    "update": "differs (sync updates)",
    "delete": "stale (sync deletes)",
    "unchanged": "in sync",
}


def _status(item: schedules.PlanItem) -> str:
    if item.existing is None and item.action == "create":
        return "missing"
    text = _STATUS[item.action]
    return f"paused, {text}" if item.existing is not None and item.existing.paused else text


@app.command("list")
@catalog_errors
def list_(as_json: JsonOpt = False) -> None:
    """List the desired deployments next to the ones in the Prefect API."""
    if asyncio.run(schedules.api_problem()) is None:
        plan = asyncio.run(_plan())
        skipped = []
    else:  # offline: the desired set only
        desired = schedules.desired_from_database()
        plan = [schedules.PlanItem("create", d.full_name, d, None) for d in desired.deployments]
        skipped = desired.skipped
        err_console.print(f"No Prefect API: showing the desired set only ({schedules.SERVER_HINT})")
    if as_json:
        print_json([item.as_dict() for item in plan])
        return
    rows: list[list[Any]] = []
    for item in plan:
        d, e = item.desired, item.existing
        rows.append(
            [
                item.full_name,
                d.schedule_text if d else "",
                e.schedule_text if e else "",
                d.parameters if d else (e.parameters if e else ""),
                _status(item),
                d.cadence.reason if d and d.cadence else "",
            ]
        )
    table(
        "acmeflow deployments",
        ["deployment", "schedule", "in Prefect", "parameters", "status", "cadence"],
        rows,
    )
    for s in skipped:
        console.print(f"[dim]skipped[/] {s.name}: {s.reason}", soft_wrap=True)


async def _limit_plan() -> list[Any]:
    from prefect.client.orchestration import get_client

    from acmeflow import limits

    wanted = await asyncio.to_thread(limits.limits_from_database)
    async with get_client() as client:
        return await limits.plan_limits(client, wanted)


@app.command("limits")
@catalog_errors
def limits_(as_json: JsonOpt = False) -> None:
    """List the pool-wide limits (Prefect global concurrency limits) the configuration wants
    next to the server's, with the slots in use."""
    require_api()
    states = asyncio.run(_limit_plan())
    if as_json:
        print_json([state.as_dict() for state in states])
        return
    table(
        "acmeflow pool-wide limits",
        ["limit", "wanted", "on the server", "slots in use", "status", "holds"],
        [
            [
                state.name,
                state.wanted.describe() if state.wanted else "",
                "" if state.limit is None else state.limit,
                "" if state.slots_in_use is None else state.slots_in_use,
                _STATUS[state.action],
                state.wanted.about if state.wanted else "",
            ]
            for state in states
        ],
    )
    if not states:
        console.print("No pool-wide limits configured (ca edit --max-in-flight/--order-rate).")


@catalog_errors
def serve(
    resync_every: Annotated[
        float,
        typer.Option("--resync-every", min=5, help="seconds between re-syncs with the database"),
    ] = 300.0,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="at most N flow runs at once")
    ] = None,
) -> None:
    """Serve every acmeflow deployment (renew-<ca>, scan, sweep, issue, renew, deploy) in this
    process: no work pool needed. Needs a running Prefect server (PREFECT_API_URL)."""
    require_api()
    from prefect.settings import PREFECT_UI_URL

    def show(report: schedules.SyncReport) -> None:
        _print_report(report)
        total = len(report.created) + len(report.updated) + len(report.unchanged)
        ui = PREFECT_UI_URL.value()
        console.print(
            f"[bold]Serving {total} deployment(s)[/]"
            + (f"; open the UI at {ui}/deployments" if ui else "")
            + ". Stop with Ctrl+C."
        )

    try:
        asyncio.run(schedules.serve(resync_every=resync_every, limit=limit, on_report=show))
    except KeyboardInterrupt:
        console.print(
            "Stopped; the schedules are paused until `acmeflow serve` or `acmeflow schedules"
            " sync` (for workers) resumes them."
        )

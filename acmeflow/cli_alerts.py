"""``acmeflow alerts setup|list|remove``: route acmeflow's events to a Prefect notification
block through Prefect automations (see :mod:`acmeflow.alerts`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from . import alerts
from .cli_schedules import require_api
from .output import catalog_errors, console, print_json, table

app = typer.Typer(
    help="Alerts through a Prefect notification block: renewal failed, certificate expiring, "
    "deploy failed (and, on request, renewal succeeded).",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
AlertOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--alert",
        help=f"only this alert (repeatable): {', '.join(alerts.KIND_KEYS)}; default: every "
        "alert but renewal-succeeded",
    ),
]


@app.command("setup")
@catalog_errors
def setup(
    block: Annotated[
        str,
        typer.Option(
            "--block",
            help="the Prefect notification block to send through: NAME or TYPE/NAME "
            "(e.g. slack-webhook/ops)",
        ),
    ],
    alert: AlertOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create (or update) one Prefect automation per alert, sending it through BLOCK."""
    kinds = alerts.chosen_kinds(alert)
    require_api()

    async def run() -> tuple[alerts.NotificationBlock, dict[str, list[str]]]:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            found = await alerts.find_notification_block(client, block)
            return found, await alerts.set_up(client, kinds, found)

    found, report = asyncio.run(run())
    if as_json:
        print_json({"block": found.reference, **report})
        return
    for label in ("created", "updated", "unchanged"):
        for name in report[label]:
            console.print(f"[green]{label:8}[/] {name} -> {found.reference}")


@app.command("list")
@catalog_errors
def list_alerts(as_json: JsonOpt = False) -> None:
    """The alert automations acmeflow set up on the Prefect server."""
    require_api()

    async def run() -> list[alerts.AlertRoute]:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            return await alerts.list_routes(client)

    routes = asyncio.run(run())
    if as_json:
        print_json([r.__dict__ for r in routes])
        return
    if not routes:
        console.print("No alerts set up: `acmeflow alerts setup --block NAME`.")
        return
    table(
        "Alerts",
        ["automation", "enabled", "event", "block id"],
        [[r.name, "yes" if r.enabled else "no", r.event, r.block_id] for r in routes],
    )


@app.command("remove")
@catalog_errors
def remove(alert: AlertOpt = None, as_json: JsonOpt = False) -> None:
    """Delete the alert automations (every acmeflow alert, or the ones given)."""
    kinds = alerts.chosen_kinds(alert) if alert else list(alerts.KINDS)
    require_api()

    async def run() -> list[str]:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            return await alerts.remove(client, kinds)

    removed = asyncio.run(run())
    if as_json:
        print_json({"removed": removed})
        return
    for name in removed:
        console.print(f"[red]removed[/]  {name}")
    if not removed:
        console.print("No alert automation to remove.")

"""``acmeflow sweep``: remove challenge TXT values that crashed runs left behind."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from acmeflow.core.state.validation import parse_duration

from .output import catalog_errors, console, print_json, table


def _print_summary(summary: dict[str, Any]) -> None:
    rows: list[list[Any]] = []
    for p in summary["providers"]:
        rows += [[p["provider"], e["fqdn"], "removed", e["note"]] for e in p["removed"]]
        rows += [[p["provider"], e["fqdn"], "NOT removed", e["error"]] for e in p["failed"]]
        rows += [
            [p["provider"], e["fqdn"], "not acmeflow's: left in place", e["value"]]
            for e in p["unjournaled"]
        ]
        rows += [[p["provider"], "", "problem", text] for text in p["problems"]]
    if rows:
        table("Sweep", ["provider", "record", "outcome", "detail"], rows)
    console.print(
        f"[bold]{summary['removed']} stale value(s) removed, {summary['failed']} not removed, "
        f"{summary['unjournaled']} value(s) not written by acmeflow left in place[/]"
    )
    left = summary["leftovers"]
    if any(left.values()):
        console.print(
            f"{len(left['staged_keys'])} staged private key(s) removed, "
            f"{len(left['interrupted'])} interrupted history entr(ies) closed, "
            f"{len(left['leases'])} expired lease(s) released"
        )


@catalog_errors
def sweep(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", help="grace period: only values journaled longer ago (30m, 1h, 2d)"
        ),
    ] = "1h",
    inspect_limit: Annotated[
        int,
        typer.Option(
            "--inspect-limit",
            help="per provider, _acme-challenge names to read for values acmeflow did not write",
        ),
    ] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Remove stale DNS-01 challenge values left by crashed runs (runs the Prefect flow `sweep`).

    Only values acmeflow journaled and did not clean up are removed; other `_acme-challenge`
    values at mapped domains are reported and left alone. Exits 1 if a value could not be
    removed (it is retried by the next sweep).
    """
    seconds = parse_duration(older_than, "--older-than")
    from acmeflow.flows.sweep import sweep as sweep_flow
    from acmeflow.tasks.common import run_summary

    state = sweep_flow(older_than_seconds=seconds, inspect_limit=inspect_limit, return_state=True)
    summary = run_summary(state)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)
    if summary["failed"]:
        raise typer.Exit(code=1)

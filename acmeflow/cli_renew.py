"""``acmeflow renew``: renew the certificates that are due, or given ones now (F6)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from acmeflow.core import errors
from acmeflow.core.state import renewals

from .output import catalog_errors, console, database, print_json, progress_lines, table

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _print_summary(summary: dict[str, Any]) -> None:
    rows = summary["results"]
    if rows:
        table(
            "Renewal",
            ["id", "names", "CA", "status", "serial", "message"],
            [
                [
                    r["id"],
                    r["names"],
                    r["ca"],
                    r["status"],
                    r["serial"] or r["old_serial"],
                    r["message"]
                    + (f"\n{r['detail']}" if r["detail"] and r["status"] != "renewed" else "")
                    + (
                        f"\nnext attempt after {r['next_attempt_at']}"
                        if r["next_attempt_at"]
                        else ""
                    ),
                ]
                for r in rows
            ],
        )
    console.print(
        f"[bold]{summary['renewed']} renewed, {summary['failed']} failed, "
        f"{summary['skipped']} skipped, {summary['not_due']} not due yet[/]"
    )


@catalog_errors
def renew(
    certificate_ids: Annotated[
        list[int] | None,
        typer.Argument(help="with --now: the certificates to renew now", show_default=False),
    ] = None,
    ca: Annotated[
        str | None,
        typer.Option(
            "--ca",
            help="only certificates of this CA vendor (with --now: the CA for certificates "
            "that have none)",
        ),
    ] = None,
    now: Annotated[
        bool, typer.Option("--now", help="renew the given certificate ids now, due or not")
    ] = False,
    at: Annotated[
        str | None, typer.Option("--at", hidden=True, help="what-if: run as if it were this time")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Renew enrolled certificates whose renewal is due (runs the Prefect flow `renew`).

    `acmeflow renew` renews every due certificate; `--ca NAME` only those of one CA vendor;
    `acmeflow renew --now ID...` renews the given certificates now, manual ones included.
    """
    ids = list(certificate_ids or [])
    if now and not ids:
        raise errors.ConfigError(detail="--now needs the ids of the certificates to renew")
    if ids and not now:
        raise errors.ConfigError(
            detail="to renew given certificates now, add --now: renew --now ID..."
        )
    with database() as s:  # fail fast, before Prefect starts
        if ids:
            renewals.candidates_by_id(s, ids, ca=ca)
        else:
            renewals.renewal_cas(s, ca)
    from acmeflow.flows.renew import renew as renew_flow
    from acmeflow.flows.renew import renew_as_of
    from acmeflow.tasks.common import run_summary

    if not as_json:
        console.print(
            "Renewing: "
            + (
                f"certificates {', '.join(map(str, ids))}"
                if ids
                else "due certificates" + (f" of {ca}" if ca else "")
            )
        )
    with progress_lines(
        "acmeflow.renew",
        "acmeflow.deploy",
        enabled=not as_json,
        counted=True,
        problem_mark="[red]✗[/]",
    ):
        state = (
            renew_flow(ca=ca, certificate_ids=ids or None, return_state=True)
            if at is None
            else renew_as_of(now=at, ca=ca, certificate_ids=ids or None, return_state=True)
        )
    summary = run_summary(state)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)
    if summary["failed"] or (ids and summary["skipped"]):
        raise typer.Exit(code=1)

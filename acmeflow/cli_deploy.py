"""``acmeflow deploy``: deploy a certificate to its bound targets now (F7)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from acmeflow.core import errors
from acmeflow.core.state import certificates, targets

from .output import catalog_errors, console, database, print_json, progress_lines, table

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def print_summary(summary: dict[str, Any]) -> None:
    """The outcome of a deploy run, one row per target."""
    rows = summary.get("results") or []
    if rows:
        table(
            "Deployment",
            ["certificate", "target", "type", "status", "serial", "attempts", "message"],
            [
                [
                    r["certificate_id"],
                    r["target"],
                    r["type"],
                    r["status"],
                    r["serial"],
                    r["attempts"] or "",
                    r["message"] + (f"\n{r['detail']}" if r["status"] == "failed" else ""),
                ]
                for r in rows
            ],
        )
    if summary.get("error"):
        console.print(f"[red]{summary['error']['message']}[/] {summary['error']['detail']}")
    console.print(
        f"[bold]{summary['deployed']} deployed, {summary['unchanged']} already in place, "
        f"{summary['failed']} failed, {summary['skipped']} skipped[/]"
    )


@catalog_errors
def deploy(
    certificate_id: Annotated[
        int | None, typer.Argument(help="the certificate to deploy", show_default=False)
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="only this bound target")] = None,
    pending: Annotated[
        bool,
        typer.Option(
            "--pending",
            help="instead of one certificate: every zero-touch certificate whose bound targets "
            "do not hold its current serial",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Deploy a certificate to every target bound to it, now (runs the Prefect flow `deploy`).

    This is how certificate-store certificates are deployed; zero-touch certificates are
    deployed automatically after issuance and renewal. Exits 1 when any target failed.
    """
    if pending == (certificate_id is not None):
        raise errors.ConfigError(detail="give a certificate id, or --pending (not both)")
    if pending and target:
        raise errors.ConfigError(detail="--target goes with a certificate id, not --pending")
    with database() as s:  # fail fast, before Prefect starts
        if certificate_id is not None:
            cert = certificates.get_certificate(s, certificate_id)
            bound = targets.bindings_for_certificate(s, certificate_id, target_name=target)
            if not bound:
                raise errors.ConfigError(
                    detail=f"no deploy target is bound to certificate {cert.id}: "
                    f"`acmeflow targets bind TARGET {cert.id}` first"
                )
    from acmeflow.flows.deploy import deploy as deploy_flow
    from acmeflow.flows.deploy import deploy_pending, summary_of

    with progress_lines("acmeflow.deploy", enabled=not as_json):
        if certificate_id is not None:
            state = deploy_flow(certificate_id=certificate_id, target=target, return_state=True)
        else:
            state = deploy_pending(return_state=True)
    summary = summary_of(state)
    if as_json:
        print_json(summary)
    else:
        print_summary(summary)
    if summary["failed"]:
        raise typer.Exit(code=1)


# --- used by `acmeflow issue --target NAME` ----------------------------------------------------

DEPLOY_FAILED_EXIT = 3
"""Exit code of ``acmeflow issue`` when the certificate was issued and stored but a deployment
to one of its targets failed (1 stays "not issued")."""


def check_issue_targets(names: list[str] | None) -> list[str] | None:
    """Fail fast, before Prefect starts, on an unknown or disabled ``--target``."""
    if not names:
        return None
    with database() as s:
        for name in names:
            targets.get_target(s, name, include_inactive=False)
    return list(dict.fromkeys(names))


def deployments_of(certificate_id: int) -> list[dict[str, Any]]:
    """Where a certificate stands on each bound target (for the issue output)."""
    with database() as s:
        cert = certificates.get_certificate(s, certificate_id)
        rows = []
        for b in targets.bindings_for_certificate(s, certificate_id):
            if b.last_deployed_serial == cert.serial and cert.serial:
                status = "deployed"
            elif b.last_error:
                status = "failed"
            elif cert.store != "zero-touch":
                status = "awaits manual deployment"
            else:
                status = "not deployed"
            rows.append(
                {"target": b.target.name, "status": status, "last_error": b.last_error or ""}
            )
    return rows


def report_issue_deployments(
    certificate_id: int, rows: list[dict[str, Any]], *, as_json: bool
) -> None:
    """Print the deployments of a new certificate; exit 3 when one failed."""
    if not as_json:
        for row in rows:
            mark = "[red]✗[/]" if row["status"] == "failed" else "[green]✓[/]"
            console.print(
                f"{mark} target {row['target']}: {row['status']}"
                + (f"\n  {row['last_error']}" if row["status"] == "failed" else ""),
                soft_wrap=True,
                markup=True,
            )
    if any(row["status"] == "failed" for row in rows):
        if not as_json:
            console.print(
                f"[bold red]Certificate {certificate_id} is issued and stored, but its "
                f"deployment failed[/]: see `acmeflow logs`, retry with "
                f"`acmeflow deploy {certificate_id}`"
            )
        raise typer.Exit(code=DEPLOY_FAILED_EXIT)

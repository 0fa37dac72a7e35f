"""``acmeflow scan``: read every certificate in both stores and classify it by CA (F2)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from acmeflow.core import errors
from acmeflow.core.secrets import default_box
from acmeflow.core.state import inventory

from .output import catalog_errors, console, database, err_console, print_json, table

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _sealed_passwords(refs: list[str]) -> list[str]:
    """Passwords from the command line as references or encrypted values (never plain)."""
    from .output import read_secret_ref

    sealed = []
    for ref in refs:
        value = read_secret_ref(ref, "PKCS#12 password")
        sealed.append(default_box().seal(value))  # references stay references
    return sealed


@catalog_errors
def scan(
    p12_password: Annotated[
        list[str] | None,
        typer.Option(
            "--p12-password",
            help="password of PKCS#12 files: env:NAME, file:PATH, prefect-block:NAME or - "
            "(prompt); repeat to try several",
        ),
    ] = None,
    remember: Annotated[
        bool,
        typer.Option(
            "--remember-p12-password",
            help="keep the given --p12-password(s) for later scans (references kept as "
            "references, prompted values encrypted)",
        ),
    ] = False,
    forget: Annotated[
        bool, typer.Option("--forget-p12-password", help="forget the remembered passwords")
    ] = False,
    expiring: Annotated[
        int, typer.Option("--expiring", help="how many soonest expiries to show")
    ] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Scan both stores (runs the Prefect flow `scan`): counts per CA, duplicates, expiries.

    Certificates placed in the stores by hand are found too (PEM, DER, PKCS#12). Without
    --p12-password the remembered passwords are used.
    """
    if remember and not p12_password:
        raise errors.ConfigError(detail="--remember-p12-password needs --p12-password")
    sealed = _sealed_passwords(list(p12_password)) if p12_password else None
    if remember or forget:
        with database() as s:
            inventory.save_scan_passwords(s, [] if forget else sealed or [])
    from acmeflow.flows.scan import scan as scan_flow

    report: dict[str, Any] = scan_flow(p12_passwords=sealed, expiring_limit=expiring)
    if as_json:
        print_json(report)
        return
    print_report(report)


def print_report(report: dict[str, Any]) -> None:
    """The scan report for humans: the counts line first, then stores, warnings, expiries."""
    console.print(f"[bold]{escape(report['summary'])}[/]", soft_wrap=True)
    for store, summary in report["stores"].items():
        if not summary["exists"]:
            console.print(
                f"  {store} store: {escape(summary['root'])} does not exist (yet)", soft_wrap=True
            )
            continue
        console.print(
            f"  {store} store: {summary['files']} files, {summary['read']} read, "
            f"{summary['unchanged']} unchanged, {summary['new']} new, {summary['updated']} "
            f"replaced, {summary['gone']} gone ({summary['seconds']:.2f} s)",
            soft_wrap=True,
        )
    for duplicate in report["duplicates"]:
        err_console.print(f"[yellow]warning[/]: {escape(duplicate['warning'])}", soft_wrap=True)
    for alias in report["aliases"]:
        err_console.print(
            f"[yellow]note[/]: {escape(alias['path'])} holds the same certificate as "
            f"{escape(alias['same_as'])} ({alias['store']} store); recorded once",
            soft_wrap=True,
        )
    for problem in report["problems"]:
        err_console.print(
            f"[yellow]unreadable[/] ({problem['store']} store): "
            + escape(f"{problem['path']}: {problem['reason']}"),
            soft_wrap=True,
        )
    if report["expiring"]:
        table(
            "Expiring soonest",
            ["id", "names", "store", "expires", "days left", "issued by", "renewal"],
            [
                [
                    r["id"],
                    ", ".join(r["names"]),
                    r["store"],
                    r["not_after"][:16].replace("T", " "),
                    r["days_left"],
                    r["issued_by"],
                    r["renewal"],
                ]
                for r in report["expiring"]
            ],
        )

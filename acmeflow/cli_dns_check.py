"""``acmeflow dns check NAME DOMAIN``: prove a DNS provider's credentials and mapping (F4).

It does what a DNS-01 challenge for DOMAIN would do, with a test value: follow the CNAME
delegation of ``_acme-challenge.DOMAIN``, write the value through provider NAME (journaled
first, so ``sweep`` removes it after a crash), wait until every authoritative nameserver of
the zone (or the provider's ``nameservers`` override) serves it, and always remove it. Each
step is reported with its timing, so an administrator knows before a renewal depends on it.
"""

from __future__ import annotations

import secrets
from typing import Annotated

import typer

from acmeflow.config.settings import get_settings
from acmeflow.core import errors
from acmeflow.core.dns01 import DNSLookup
from acmeflow.core.dns_check import (
    CHECK_VALUE_PREFIX,
    CheckReport,
    Step,
    mapping_warnings,
    run_check,
)
from acmeflow.core.names import challenge_base, challenge_record_name
from acmeflow.core.state import dns_providers
from acmeflow.core.state.challenge_journal import ChallengeJournal
from acmeflow.core.state.db import open_database

from .output import catalog_errors, console, database, err_console, print_json


def _print_step(step: Step) -> None:
    mark = "[green]✓[/]" if step.ok else "[red]✗[/]"
    ms = f"{step.seconds * 1000:.0f} ms"
    if step.step == "written":
        text = f"written: {step.detail} in {ms}" if step.ok else f"not written: {step.detail}"
    elif step.step == "seen":
        text = (
            f"seen at {step.nameserver} after {ms}"
            if step.ok
            else f"not seen at {step.nameserver} ({step.detail})"
        )
    else:
        text = f"removed in {ms}" + (f" ({step.detail})" if step.detail else "")
        if not step.ok:
            text = f"NOT removed: {step.detail}"
    console.print(f"{mark} {text}", soft_wrap=True, markup=True)


@catalog_errors
def check(
    name: Annotated[str, typer.Argument(help="the configured DNS provider")],
    domain: Annotated[str, typer.Argument(help="a domain whose challenges it should serve")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="seconds to wait for the nameservers (default: settings)"),
    ] = None,
) -> None:
    """Write, see and remove a test TXT record for DOMAIN through provider NAME."""
    conf = get_settings()
    base = challenge_base(domain)
    record_name = challenge_record_name(base)
    lookup = DNSLookup(conf.dns_resolvers, query_port=conf.dns_query_port)
    with database() as s:
        config = dns_providers.get_dns_provider(s, name)
        from acmeflow.providers.configured import dns_provider_from_config

        provider = dns_provider_from_config(config)
        target = lookup.follow_cnames(record_name)
        mapped, warnings = mapping_warnings(s, name, base, target)
        report = CheckReport(
            provider=name,
            type=config.type,
            domain=base,
            record_name=record_name,
            target=target,
            value=CHECK_VALUE_PREFIX + secrets.token_urlsafe(24),
            mapped_to=mapped,
            warnings=warnings,
        )
    if not as_json:
        via = f" (CNAME to {target})" if target != record_name else ""
        console.print(f"Checking DNS provider {name} ({config.type}) with {record_name}{via}")
        for warning in warnings:
            err_console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True, markup=True)
    journal = ChallengeJournal(open_database(conf.resolved_database_url))
    try:
        run_check(
            provider,
            report,
            lookup,
            journal=journal,
            timeout=conf.propagation_timeout if timeout is None else timeout,
            interval=conf.propagation_interval,
            on_step=(lambda _s: None) if as_json else _print_step,
        )
    except errors.AcmeflowError as exc:
        if as_json:
            print_json({**exc.to_dict(), **report.to_dict()})
            raise typer.Exit(code=1) from None
        raise
    if as_json:
        print_json(report.to_dict())
    else:
        console.print(f"[bold green]DNS provider {name} can answer DNS-01 challenges for {base}[/]")

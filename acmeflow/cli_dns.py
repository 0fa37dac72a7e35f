"""``acmeflow dns``: DNS providers, their credentials and domain mappings (F4)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from acmeflow.core.state import dns_providers
from acmeflow.core.state.models import DNSProviderConfig

from .cli_dns_check import check
from .output import (
    catalog_errors,
    console,
    database,
    field_rows,
    parse_pairs,
    print_json,
    secret_options,
    table,
)

app = typer.Typer(help="DNS providers and domain mapping.", no_args_is_help=True)
app.command("check")(check)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="a setting KEY=VALUE (repeatable)")]
SecretOpt = Annotated[
    list[str] | None,
    typer.Option("--secret", help="a secret KEY=REF, REF being env:NAME, file:PATH or - (prompt)"),
]


def provider_dict(p: DNSProviderConfig, domains: list[str] | None = None) -> dict[str, Any]:
    """A configured provider as shown to users: secrets only by name."""
    return {
        "name": p.name,
        "type": p.type,
        "settings": dict(p.settings or {}),
        "secrets": {key: "***" for key in (p.secrets or {})},
        "active": p.active,
        "domains": domains if domains is not None else [],
    }


@app.command("add")
@catalog_errors
def add(
    name: str,
    type_: Annotated[str, typer.Option("--type", help="provider type (see `dns providers`)")],
    set_: SetOpt = None,
    secret: SecretOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a DNS provider with its settings and credentials."""
    from acmeflow.providers.dns import registry  # loads the provider SDKs: only when needed

    ptype = registry.get_provider_type(type_, require_supported=True)
    settings = parse_pairs(set_ or [], "--set")
    secrets = secret_options(secret)
    registry.check_provider(ptype.name, settings, secrets)
    with database() as s:
        p = dns_providers.add_dns_provider(
            s, name=name, type=ptype.name, settings=settings, secrets=secrets
        )
        shown = provider_dict(p)
    if as_json:
        print_json(shown)
    else:
        console.print(f"[green]DNS provider {name} ({ptype.label}) saved[/]")


@app.command("edit")
@catalog_errors
def edit(
    name: str,
    set_: SetOpt = None,
    secret: SecretOpt = None,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help="enable or disable")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change settings or credentials of a DNS provider, or enable/disable it."""
    from acmeflow.providers.dns import registry  # loads the provider SDKs: only when needed

    with database() as s:
        p = dns_providers.get_dns_provider(s, name, include_inactive=True)
        settings = {**(p.settings or {}), **parse_pairs(set_ or [], "--set")}
        new_secrets = secret_options(secret)
        if set_ or secret:
            registry.check_provider(
                p.type, settings, {**dns_providers.provider_secrets(p), **new_secrets}
            )
        p = dns_providers.update_dns_provider(
            s, name, settings=settings, secrets=new_secrets or None, active=active
        )
        shown = provider_dict(p, dns_providers.mapped_domains(s, name))
    if as_json:
        print_json(shown)
    else:
        console.print(f"[green]DNS provider {name} updated[/]")


@app.command("list")
@catalog_errors
def list_(as_json: JsonOpt = False) -> None:
    """List configured DNS providers with their domains."""
    with database() as s:
        rows = [
            provider_dict(p, dns_providers.mapped_domains(s, p.name))
            for p in dns_providers.list_dns_providers(s)
        ]
    if as_json:
        print_json(rows)
        return
    table(
        "DNS providers",
        ["name", "type", "active", "domains"],
        [[r["name"], r["type"], r["active"], ", ".join(r["domains"])] for r in rows],
    )


@app.command("show")
@catalog_errors
def show(name: str, as_json: JsonOpt = False) -> None:
    """Show one DNS provider (secrets by name only)."""
    with database() as s:
        p = dns_providers.get_dns_provider(s, name, include_inactive=True)
        shown = provider_dict(p, dns_providers.mapped_domains(s, name))
    if as_json:
        print_json(shown)
        return
    for key, value in shown.items():
        console.print(f"[bold]{key}[/]: {value}", soft_wrap=True)


@app.command("remove")
@catalog_errors
def remove(name: str) -> None:
    """Remove a DNS provider and its domain mappings."""
    with database() as s:
        dns_providers.remove_dns_provider(s, name)
    console.print(f"DNS provider {name} removed")


@app.command("map")
@catalog_errors
def map_(name: str, domains: Annotated[list[str], typer.Argument(help="domains to map")]) -> None:
    """Map domains to a DNS provider: their DNS-01 records go there."""
    with database() as s:
        dns_providers.map_domains(s, name, domains)
        mapped = dns_providers.mapped_domains(s, name)
    console.print(f"{name} now serves: {', '.join(mapped)}")


@app.command("unmap")
@catalog_errors
def unmap(name: str, domains: Annotated[list[str], typer.Argument(help="domains")]) -> None:
    """Unmap domains (certificates with names under them stop renewing)."""
    with database() as s:
        dns_providers.unmap_domains(s, name, domains)
        mapped = dns_providers.mapped_domains(s, name)
    console.print(f"{name} now serves: {', '.join(mapped) or '(no domain)'}")


@app.command("providers")
def providers(as_json: JsonOpt = False) -> None:
    """Every DNS provider type users look for, with how it is backed and its fields."""
    from acmeflow.providers.dns import registry  # loads the provider SDKs: only when needed

    rows: list[dict[str, Any]] = [
        {
            "type": t.name,
            "label": t.label,
            "backing": t.backing,
            "fields": field_rows(t.fields),
            "note": t.reason,
        }
        for t in registry.provider_types()
    ]
    if as_json:
        print_json(rows)
        return
    table(
        "DNS provider types",
        ["label", "type", "backing", "required fields", "note"],
        [
            [
                r["label"],
                r["type"],
                r["backing"],
                ", ".join(f["name"] for f in r["fields"] if f["required"]),
                r["note"],
            ]
            for r in rows
        ],
    )

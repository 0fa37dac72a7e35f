"""``acmeflow ca``: CA vendors (F1). Saving checks the CA and registers the ACME account first."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from acmeflow.config.settings import get_settings
from acmeflow.config.vendors import list_presets
from acmeflow.core import errors
from acmeflow.core.state import acme_accounts, cas, inventory
from acmeflow.core.state.models import CAVendor
from acmeflow.core.state.validation import format_order_rate, parse_order_rate

from .output import catalog_errors, console, database, fmt_time, print_json, read_secret_ref, table

app = typer.Typer(help="CA vendors: add, edit, list, show, remove.", no_args_is_help=True)

VENDORS = ", ".join(p.id for p in list_presets())


def ca_dict(ca: CAVendor, account_url: str | None = None) -> dict[str, Any]:
    """A CA vendor as shown to users (the EAB HMAC key is never shown)."""
    return {
        "name": ca.name,
        "vendor": ca.vendor,
        "email": ca.email,
        "directory_url": ca.directory_url,
        "eab_kid": ca.eab_kid,
        "eab_hmac_key": "***" if ca.eab_hmac_key else None,
        "ca_bundle": bool(ca.ca_bundle),
        "renew_days": ca.renew_days,
        "profile": ca.profile,
        "preferred_chain": ca.preferred_chain,
        "issuer_names": list(ca.issuer_names or []),
        "active": ca.active,
        "max_in_flight": ca.max_in_flight,
        "order_rate": format_order_rate(ca.rate_orders, ca.rate_window_seconds),
        "account_url": account_url,
        "updated_at": ca.updated_at,
    }


def _bundle(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text()
    except OSError as exc:
        raise errors.ConfigError(detail=f"--ca-bundle {path}: {exc.strerror}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise errors.ConfigError(detail=f"--ca-bundle {path}: no PEM certificate in the file")
    return text


def _reclassified_counts(s: Session) -> str:
    """Re-sort known certificates by issuing CA after a CA change; the counts line."""
    inventory.reclassify(s)
    return inventory.inventory_report(s, expiring_limit=0).counts_line()


def _print_counts(counts: str) -> None:
    if counts:
        console.print(f"Certificates in the stores by CA: {counts} (`acmeflow scan` rescans)")


EmailOpt = Annotated[str | None, typer.Option("--email", help="ACME account contact email")]
DirOpt = Annotated[str | None, typer.Option("--directory-url", help="ACME directory URL")]
KidOpt = Annotated[str | None, typer.Option("--eab-kid", help="External Account Binding key id")]
HmacOpt = Annotated[
    str | None,
    typer.Option("--eab-hmac-key", help="EAB HMAC key as env:NAME, file:PATH or - (prompt)"),
]
BundleOpt = Annotated[
    Path | None, typer.Option("--ca-bundle", help="PEM bundle to trust the CA's TLS with")
]
DaysOpt = Annotated[
    int | None, typer.Option("--renew-days", min=1, help="renew N days before expiry")
]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="ACME profile to request")]
ChainOpt = Annotated[
    str | None, typer.Option("--preferred-chain", help="issuer CN of the preferred chain's root")
]
InFlightOpt = Annotated[
    int | None,
    typer.Option(
        "--max-in-flight",
        min=0,
        help="orders of this CA in flight at once across all workers of a pool "
        "(default, or 0: no pool-wide cap)",
    ),
]
RateOpt = Annotated[
    str | None,
    typer.Option(
        "--order-rate",
        help="new orders per time window across all workers, e.g. 300/3h, or none "
        "(default: the vendor's published limit)",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


@app.command("add")
@catalog_errors
def add(
    name: Annotated[str, typer.Argument(help="a name for this CA vendor")],
    vendor: Annotated[str, typer.Option("--vendor", help=f"one of: {VENDORS}")],
    email: Annotated[str, typer.Option("--email", help="ACME account contact email")],
    directory_url: DirOpt = None,
    eab_kid: KidOpt = None,
    eab_hmac_key: HmacOpt = None,
    ca_bundle: BundleOpt = None,
    renew_days: DaysOpt = None,
    profile: ProfileOpt = None,
    preferred_chain: ChainOpt = None,
    max_in_flight: InFlightOpt = None,
    order_rate: RateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a CA vendor: checks the CA answers and registers the account before saving."""
    from acmeflow.core import accounts  # the ACME client loads only when a CA is checked

    settings = get_settings()
    hmac = read_secret_ref(eab_hmac_key, "EAB HMAC key") if eab_hmac_key else None
    with database() as s:
        ca = cas.add_ca(
            s,
            name=name,
            vendor=vendor,
            email=email,
            directory_url=directory_url,
            eab_kid=eab_kid,
            eab_hmac_key=hmac,
            ca_bundle=_bundle(ca_bundle),
            renew_days=renew_days,
            profile=profile,
            preferred_chain=preferred_chain,
            max_in_flight=max_in_flight,
            order_rate="preset" if order_rate is None else parse_order_rate(order_rate),
        )
        account_url = accounts.register_account(s, ca, settings)
        shown = ca_dict(ca, account_url)
        counts = _reclassified_counts(s)
    if as_json:
        print_json(shown)
    else:
        console.print(f"[green]CA vendor {name} saved[/]: {shown['directory_url']}")
        console.print(f"ACME account: {account_url}")
        _print_counts(counts)


@app.command("edit")
@catalog_errors
def edit(
    name: str,
    email: EmailOpt = None,
    directory_url: DirOpt = None,
    eab_kid: KidOpt = None,
    eab_hmac_key: HmacOpt = None,
    ca_bundle: BundleOpt = None,
    renew_days: DaysOpt = None,
    profile: ProfileOpt = None,
    preferred_chain: ChainOpt = None,
    max_in_flight: InFlightOpt = None,
    order_rate: RateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a CA vendor; the CA is checked (and the account found) again before saving."""
    from acmeflow.core import accounts  # the ACME client loads only when a CA is checked

    changes: dict[str, Any] = {
        key: value
        for key, value in {
            "email": email,
            "directory_url": directory_url,
            "eab_kid": eab_kid,
            "renew_days": renew_days,
            "profile": profile,
            "preferred_chain": preferred_chain,
            "max_in_flight": max_in_flight,
        }.items()
        if value is not None
    }
    if order_rate is not None:
        changes["order_rate"] = parse_order_rate(order_rate)
    if eab_hmac_key:
        changes["eab_hmac_key"] = read_secret_ref(eab_hmac_key, "EAB HMAC key")
    if ca_bundle:
        changes["ca_bundle"] = _bundle(ca_bundle)
    with database() as s:
        ca = cas.update_ca(s, name, **changes)
        account_url = accounts.register_account(s, ca, get_settings())
        shown = ca_dict(ca, account_url)
        _reclassified_counts(s)
    if as_json:
        print_json(shown)
    else:
        console.print(f"[green]CA vendor {name} updated[/]; ACME account {account_url}")


@app.command("list")
@catalog_errors
def list_(as_json: JsonOpt = False) -> None:
    """List the CA vendors."""
    with database() as s:
        rows = [ca_dict(ca) for ca in cas.list_cas(s)]
    if as_json:
        print_json(rows)
        return
    table(
        "CA vendors",
        ["name", "vendor", "email", "directory", "renew days", "EAB", "in flight", "order rate"],
        [
            [
                r["name"],
                r["vendor"],
                r["email"],
                r["directory_url"],
                r["renew_days"],
                r["eab_kid"],
                r["max_in_flight"] or "no cap",
                r["order_rate"] or "none",
            ]
            for r in rows
        ],
    )


@app.command("show")
@catalog_errors
def show(name: str, as_json: JsonOpt = False) -> None:
    """Show one CA vendor and its ACME account."""
    with database() as s:
        ca = cas.get_ca(s, name)
        account = acme_accounts.get_account(s, ca)
        shown = ca_dict(ca, account.account_url if account else None)
    if as_json:
        print_json(shown)
        return
    for key, value in shown.items():
        console.print(
            f"[bold]{key}[/]: {fmt_time(value) if key == 'updated_at' else value}", soft_wrap=True
        )


@app.command("remove")
@catalog_errors
def remove(
    name: str,
    force: Annotated[
        bool, typer.Option("--force", help="also move its enrolled certificates to manual renewal")
    ] = False,
) -> None:
    """Remove a CA vendor. Refused while certificates are enrolled under it, unless --force."""
    with database() as s:
        cas.remove_ca(s, name, force=force)
        _reclassified_counts(s)
    console.print(f"CA vendor {name} removed")

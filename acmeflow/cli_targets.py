"""``acmeflow targets``: deploy targets, their credentials and the certificates bound to them
(F7). Credentials follow the DNS provider rules: ``--secret KEY=REF`` with ``env:NAME``,
``file:PATH``, ``prefect-block:NAME`` (kept as references) or ``-`` (prompted, stored
encrypted); secrets are never shown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from acmeflow.core import errors
from acmeflow.core.state import certificates, targets
from acmeflow.core.state.models import DeployTargetConfig, TargetBinding
from acmeflow.providers.deploy import TargetType, build_target, get_target_type, target_types

from .output import (
    catalog_errors,
    console,
    database,
    field_rows,
    fmt_time,
    parse_pairs,
    print_json,
    secret_options,
    table,
)

app = typer.Typer(help="Deploy targets (NetScaler, files + reload, AWS ACM).", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="a setting KEY=VALUE (repeatable)")]
SecretOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--secret",
        help="a secret KEY=REF, REF being env:NAME, file:PATH, prefect-block:NAME or - (prompt)",
    ),
]
CertIds = Annotated[list[int], typer.Argument(help="certificate ids", show_default=False)]

# the setting that says where a target puts certificates, for listings
_WHERE = {"netscaler": "url", "files": "fullchain_path", "aws-acm": "region"}


def _placeholder(name: str) -> str:
    return f"placeholder-{name}"


def validate_target(ttype: TargetType, settings: Mapping[str, str], secret_names: set[str]) -> None:
    """Check settings and secret names against the type's fields, then build the target with
    placeholder secrets (no connection) so bad values are refused before anything is saved."""
    secret_fields = {f.name for f in ttype.fields if f.kind == "secret"}
    setting_fields = {f.name for f in ttype.fields if f.kind != "secret"}
    for key in settings:
        if key in secret_fields:
            raise errors.ConfigError(
                detail=f"{ttype.name}: {key} is a secret: give it with --secret {key}=REF "
                "(env:NAME, file:PATH or - to be prompted)"
            )
    unknown = sorted(secret_names - secret_fields)
    if unknown:
        known = ", ".join(sorted(secret_fields)) or "none"
        raise errors.ConfigError(
            detail=f"{ttype.name}: unknown secret {unknown[0]} (secrets of this type: {known})"
        )
    unknown = sorted(set(settings) - setting_fields)
    if unknown:
        raise errors.ConfigError(
            detail=f"{ttype.name}: unknown setting {unknown[0]} (settings of this type: "
            f"{', '.join(sorted(setting_fields))})"
        )
    build_target(ttype.name, settings, {k: _placeholder(k) for k in secret_names})


def binding_dict(b: TargetBinding) -> dict[str, Any]:
    """A binding as shown to users: the certificate and what the target last received."""
    cert = b.certificate
    return {
        "target": b.target.name,
        "certificate_id": b.certificate_id,
        "names": list(cert.names or []),
        "store": cert.store,
        "serial": cert.serial,
        "last_deployed_serial": b.last_deployed_serial,
        "last_deployed_at": b.last_deployed_at,
        "in_sync": bool(cert.serial) and b.last_deployed_serial == cert.serial,
        "last_error": b.last_error,
    }


def target_dict(
    t: DeployTargetConfig,
    bound: list[int] | None = None,
    bindings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A configured target as shown to users: secrets by name only."""
    shown: dict[str, Any] = {
        "name": t.name,
        "type": t.type,
        "settings": dict(t.settings or {}),
        "secrets": {key: "***" for key in (t.secrets or {})},
        "active": t.active,
        "certificates": bound
        if bound is not None
        else [b["certificate_id"] for b in (bindings or [])],
    }
    if bindings is not None:
        shown["bindings"] = bindings
    return shown


@app.command("types")
def types(as_json: JsonOpt = False) -> None:
    """Every deploy target type with its settings and secrets."""
    rows: list[dict[str, Any]] = [
        {
            "type": t.name,
            "label": t.label,
            "fields": field_rows(t.fields),
        }
        for t in target_types()
    ]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        table(
            f"{row['label']} (--type {row['type']})",
            ["field", "kind", "required", "help"],
            [
                [f["name"], f["kind"], "yes" if f["required"] else "", f["help"]]
                for f in row["fields"]
            ],
        )


@app.command("add")
@catalog_errors
def add(
    name: str,
    type_: Annotated[str, typer.Option("--type", help="netscaler, files or aws-acm")],
    set_: SetOpt = None,
    secret: SecretOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a deploy target with its settings and credentials."""
    ttype = get_target_type(type_)
    settings = parse_pairs(set_ or [], "--set")
    secrets = secret_options(secret)
    validate_target(ttype, settings, set(secrets))
    with database() as s:
        t = targets.add_target(s, name=name, type=ttype.name, settings=settings, secrets=secrets)
        shown = target_dict(t, [])
    if as_json:
        print_json(shown)
    else:
        console.print(f"[green]Deploy target {name} ({ttype.label}) saved[/]")


@app.command("edit")
@catalog_errors
def edit(
    name: str,
    set_: SetOpt = None,
    secret: SecretOpt = None,
    unset: Annotated[
        list[str] | None, typer.Option("--unset", help="remove a setting or secret (repeatable)")
    ] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help="enable or disable")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change settings or credentials of a deploy target, or enable/disable it."""
    changes = parse_pairs(set_ or [], "--set")
    new_secrets = secret_options(secret)
    removed = set(unset or [])
    with database() as s:
        t = targets.get_target(s, name)
        ttype = get_target_type(t.type)
        settings = {
            k: str(v) for k, v in {**(t.settings or {}), **changes}.items() if k not in removed
        }
        secret_names = (set(t.secrets or {}) | set(new_secrets)) - removed
        validate_target(ttype, settings, secret_names)
        setting_updates: dict[str, str | None] = {
            **changes,
            **dict.fromkeys(removed & set(t.settings or {})),
        }
        secret_updates: dict[str, str | None] = {
            **new_secrets,
            **dict.fromkeys(removed & set(t.secrets or {})),
        }
        t = targets.update_target(
            s,
            name,
            settings=setting_updates or None,
            secrets=secret_updates or None,
            active=active,
        )
        shown = target_dict(t, [b.certificate_id for b in t.bindings])
    if as_json:
        print_json(shown)
    else:
        console.print(f"[green]Deploy target {name} updated[/]")


@app.command("list")
@catalog_errors
def list_(as_json: JsonOpt = False) -> None:
    """List deploy targets with the certificates bound to them."""
    with database() as s:
        bound = targets.binding_counts(s)
        rows = [target_dict(t, bound.get(t.id, [])) for t in targets.list_targets(s)]
    if as_json:
        print_json(rows)
        return
    table(
        "Deploy targets",
        ["name", "type", "active", "where", "certificates"],
        [
            [
                r["name"],
                r["type"],
                r["active"],
                r["settings"].get(_WHERE.get(r["type"], ""), ""),
                ", ".join(map(str, r["certificates"])),
            ]
            for r in rows
        ],
    )


@app.command("show")
@catalog_errors
def show(name: str, as_json: JsonOpt = False) -> None:
    """Show one deploy target (secrets by name only) and what each bound certificate got."""
    with database() as s:
        t = targets.get_target(s, name)
        bindings = [binding_dict(b) for b in targets.bindings_for_target(s, name)]
        shown = target_dict(t, bindings=bindings)
    if as_json:
        print_json(shown)
        return
    for key in ("name", "type", "active", "settings", "secrets"):
        console.print(f"[bold]{key}[/]: {shown[key]}", soft_wrap=True, markup=True)
    if bindings:
        table(
            f"Certificates bound to {name}",
            ["id", "names", "store", "serial", "deployed serial", "deployed at", "last error"],
            [
                [
                    b["certificate_id"],
                    ", ".join(b["names"]),
                    b["store"],
                    b["serial"],
                    b["last_deployed_serial"] or "",
                    fmt_time(b["last_deployed_at"]),
                    b["last_error"] or "",
                ]
                for b in bindings
            ],
        )
    else:
        console.print(f"no certificate is bound: `acmeflow targets bind {name} CERT_ID`")


@app.command("remove")
@catalog_errors
def remove(name: str) -> None:
    """Remove a deploy target and its bindings (nothing is removed from the target itself)."""
    with database() as s:
        count = targets.remove_target(s, name)
    console.print(f"Deploy target {name} removed ({count} binding(s) dropped)")


@app.command("bind")
@catalog_errors
def bind(target: str, certificate_ids: CertIds, as_json: JsonOpt = False) -> None:
    """Bind certificates to a target: zero-touch ones are deployed there after every issuance
    or renewal; certificate-store ones on `acmeflow deploy`."""
    with database() as s:
        bindings = targets.bind(s, target, certificate_ids)
        rows = [binding_dict(b) for b in bindings]
        stores = {
            c.id: c.store for c in (certificates.get_certificate(s, i) for i in certificate_ids)
        }
    if as_json:
        print_json(rows)
        return
    for cert_id in dict.fromkeys(certificate_ids):
        how = (
            "deployed automatically after each renewal"
            if stores[cert_id] == "zero-touch"
            else f"certificate store: deploy with `acmeflow deploy {cert_id}`"
        )
        console.print(f"certificate {cert_id} bound to {target} ({how})")


@app.command("unbind")
@catalog_errors
def unbind(target: str, certificate_ids: CertIds, as_json: JsonOpt = False) -> None:
    """Unbind certificates from a target (nothing is removed from the target itself)."""
    with database() as s:
        removed = targets.unbind(s, target, certificate_ids)
    if as_json:
        print_json({"target": target, "unbound": removed})
        return
    not_bound = [i for i in certificate_ids if i not in removed]
    if removed:
        console.print(f"unbound from {target}: {', '.join(map(str, removed))}")
    if not_bound:
        console.print(f"not bound to {target}: {', '.join(map(str, not_bound))}")

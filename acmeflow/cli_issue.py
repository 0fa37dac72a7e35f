"""``acmeflow issue``: one certificate over ACME DNS-01, from names or an uploaded key/CSR."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import typer

from acmeflow.config.settings import get_settings
from acmeflow.core import errors
from acmeflow.core.keys import KeyType, load_csr
from acmeflow.core.names import check_name_count, normalize_names
from acmeflow.core.state import cas, certificates
from acmeflow.core.storage import stores_from_settings
from acmeflow.core.uploads import stage_upload
from acmeflow.runner_client import PROGRESS_LOGGERS, run_flow

from . import cli_deploy
from .cli_certs import cert_dict, print_cert
from .output import catalog_errors, console, database, print_json, progress_lines, read_secret_ref

StoreKind = Literal["certificate", "zero-touch"]

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _stage_upload(
    store: str, key: Path | None, passphrase: str | None, csr_bytes: bytes | None
) -> str | None:
    """Put an uploaded key into the store's private staging folder (a CSR, when given, must
    match it first); return its request id."""
    if key is None:
        return None
    try:
        data = key.read_bytes()
    except OSError as exc:
        raise errors.InvalidKey(detail=f"{key}: {exc.strerror}") from None
    secret = read_secret_ref(passphrase, "key passphrase") if passphrase else None
    if secret and secret.startswith(("env:", "file:")):
        from acmeflow.core.secrets import resolve_ref

        secret = resolve_ref(secret)
    request_id, _ = stage_upload(
        stores_from_settings(get_settings())[store],
        data,
        passphrase=secret.encode() if secret else None,
        csr_data=csr_bytes,
    )
    return request_id


def _issue_flow() -> Callable[..., Any]:
    """The issue flow, imported only when this process runs it (no runner took it)."""
    from acmeflow.flows.issue import issue_uploaded

    return issue_uploaded


@catalog_errors
def issue(
    ca: Annotated[str, typer.Option("--ca", help="CA vendor name")],
    name: Annotated[
        list[str] | None, typer.Option("--name", help="a DNS name (repeatable; wildcards ok)")
    ] = None,
    key_type: Annotated[
        str, typer.Option("--key-type", help="ec256, ec384, rsa2048, rsa3072, rsa4096")
    ] = "ec256",
    key: Annotated[Path | None, typer.Option("--key", help="use this private key (PEM)")] = None,
    key_passphrase: Annotated[
        str | None, typer.Option("--key-passphrase", help="env:NAME, file:PATH or - (prompt)")
    ] = None,
    csr: Annotated[Path | None, typer.Option("--csr", help="use this CSR (needs --key)")] = None,
    store: Annotated[
        str, typer.Option("--store", help="certificate or zero-touch")
    ] = "certificate",
    auto_renew: Annotated[bool, typer.Option("--auto-renew", help="enroll for renewal")] = False,
    organization: Annotated[str | None, typer.Option("--organization", "-O")] = None,
    organizational_unit: Annotated[str | None, typer.Option("--unit", "-U")] = None,
    locality: Annotated[str | None, typer.Option("--locality", "-L")] = None,
    state: Annotated[str | None, typer.Option("--state", "-S")] = None,
    country: Annotated[str | None, typer.Option("--country", "-C")] = None,
    email: Annotated[str | None, typer.Option("--email", help="CSR email address")] = None,
    common_name: Annotated[str | None, typer.Option("--common-name", "--cn")] = None,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", help="bind to this deploy target (repeatable)"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue a certificate over ACME DNS-01 (runs the Prefect flow `issue`).

    With --target, a zero-touch certificate is deployed at once; exit code 3 means it was
    issued and stored but a deployment failed.
    """
    if key_type not in get_args(KeyType):
        raise errors.InvalidKey(detail=f"unknown key type {key_type!r}")
    if store not in get_args(StoreKind):
        raise errors.ConfigError(detail=f"unknown store {store!r}: certificate or zero-touch")
    csr_pem = csr_bytes = None
    names = list(name or [])
    if csr is not None:
        if key is None:
            raise errors.InvalidKey(detail="--csr needs the matching private key: --key FILE")
        try:
            csr_bytes = csr.read_bytes()
        except OSError as exc:
            raise errors.InvalidCSR(detail=f"{csr}: {exc.strerror}") from None
        parsed = load_csr(csr_bytes)
        csr_pem = parsed.pem.decode()
        names = names or parsed.names
    if not names:
        raise errors.InvalidDomainName(detail="give at least one --name (or a --csr)")
    fields = {
        k: v
        for k, v in {
            "common_name": common_name,
            "organization": organization,
            "organizational_unit": organizational_unit,
            "locality": locality,
            "state": state,
            "country": country,
            "email": email,
        }.items()
        if v is not None
    }
    names = normalize_names(names)  # bad names: refused before any history row or flow run
    with database() as s:  # fail fast, before Prefect starts, on an unknown CA
        vendor = cas.get_ca(s, ca)
        check_name_count(
            names, ca=vendor.name, vendor=vendor.vendor, default_limit=get_settings().max_names
        )
    targets = cli_deploy.check_issue_targets(target)
    request_id = _stage_upload(store, key, key_passphrase, csr_bytes)
    parameters = {
        "ca": ca,
        "names": names,
        "key_type": key_type,
        "store": store,
        "auto_renew": auto_renew,
        "csr_fields": fields or None,
        "csr_pem": csr_pem,
        "request_id": request_id,
        "targets": targets,
    }
    with progress_lines(*PROGRESS_LOGGERS, enabled=not as_json):
        cert_id = int(run_flow("issue", parameters, _issue_flow))
    with database() as s:
        shown = cert_dict(certificates.get_certificate(s, cert_id))
    shown["deployments"] = cli_deploy.deployments_of(cert_id)
    if as_json:
        print_json(shown)
    else:
        console.print(
            f"[bold green]Certificate {cert_id} issued[/] for {', '.join(shown['names'])}"
        )
        print_cert(shown)
    cli_deploy.report_issue_deployments(cert_id, shown["deployments"], as_json=as_json)

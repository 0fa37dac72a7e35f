"""The ``acmeflow`` command line."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Annotated, Literal, cast, get_args

from .failures import debug_wanted  # imports no Prefect: read before Prefect configures logging

# Prefect's console handler would interleave its own lines (and a failed run's traceback) with
# ours; the Prefect API and UI still receive every log line. --debug lets its warnings through.
os.environ.setdefault(
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",
    "WARNING" if debug_wanted(sys.argv[1:]) else "CRITICAL",
)
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import typer

from acmeflow.config.settings import get_settings
from acmeflow.core import errors
from acmeflow.core.keys import KeyType, load_csr, load_private_key, private_key_pem
from acmeflow.core.names import check_name_count, normalize_names
from acmeflow.core.secrets import set_block_resolver
from acmeflow.core.state import cas, certificates
from acmeflow.core.stores import stores_from_settings
from acmeflow.server import use_local_server

from . import (
    cli_alerts,
    cli_ca,
    cli_certs,
    cli_deploy,
    cli_dns,
    cli_logs,
    cli_renew,
    cli_sandbox,
    cli_scan,
    cli_schedules,
    cli_server,
    cli_sweep,
    cli_targets,
)
from .cli_certs import cert_dict, print_cert
from .failures import report_failure
from .output import (
    catalog_errors,
    console,
    database,
    print_json,
    progress_lines,
    read_secret_ref,
)

StoreKind = Literal["certificate", "zero-touch"]


def _prefect_block_secret(name: str) -> str:
    """Read a Prefect Secret block; Prefect is imported only when a reference needs it."""
    from acmeflow.tasks.common import prefect_block_secret

    return prefect_block_secret(name)


# prefect-block:NAME secret references are read from Prefect Secret blocks, in commands that
# run flows and in those that use providers directly (dns check, sandbox-free tools) alike.
set_block_resolver(_prefect_block_secret)

app = typer.Typer(
    help="acmeflow: automated TLS certificate lifecycle over ACME (DNS-01), run by Prefect.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(cli_ca.app, name="ca")
app.add_typer(cli_dns.app, name="dns")
app.add_typer(cli_sandbox.app, name="sandbox")
app.add_typer(cli_server.app, name="server")
app.add_typer(cli_certs.app, name="certs")
app.command("logs")(cli_logs.logs)
app.command("scan")(cli_scan.scan)
app.command("renew")(cli_renew.renew)
app.add_typer(cli_targets.app, name="targets")
app.command("deploy")(cli_deploy.deploy)
app.add_typer(cli_schedules.app, name="schedules")
app.command("serve")(cli_schedules.serve)
app.command("sweep")(cli_sweep.sweep)
app.add_typer(cli_alerts.app, name="alerts")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _stage_upload(store: str, key: Path | None, passphrase: str | None) -> str | None:
    """Put an uploaded key into the store's private staging folder; return its request id."""
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
    loaded = load_private_key(data, secret.encode() if secret else None)
    request_id = uuid.uuid4().hex
    stores_from_settings(get_settings())[store].write_staging_key(
        request_id, private_key_pem(loaded)
    )
    return request_id


@app.command("issue")
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
    csr_pem = None
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
    request_id = _stage_upload(store, key, key_passphrase)
    if csr is not None:
        stored_key = stores_from_settings(get_settings())[store].read_staging_key(str(request_id))
        load_csr(csr_bytes, stored_key)  # the key must match before anything is ordered
    from acmeflow.flows.issue import issue_uploaded as issue_flow

    with progress_lines("acmeflow.progress", "acmeflow.deploy", enabled=not as_json):
        cert_id = issue_flow(
            ca=ca,
            names=names,
            key_type=cast(KeyType, key_type),
            store=cast(StoreKind, store),
            auto_renew=auto_renew,
            csr_fields=fields or None,
            csr_pem=csr_pem,
            request_id=request_id,
            targets=targets,
        )
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


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="print the traceback of a failure (ACMEFLOW_DEBUG=1)")
    ] = False,
) -> None:
    """Options before any command (``--debug`` is read by :func:`main`). A local Prefect
    server started by ``acmeflow server start`` is used when ``PREFECT_API_URL`` is unset."""
    use_local_server(get_settings().home)


def main() -> None:
    """Entry point of the ``acmeflow`` console script: a failure prints its catalog message
    and detail; the traceback goes to the log file (and the terminal with ``--debug``)."""
    try:
        app(prog_name="acmeflow")
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        sys.exit(report_failure(exc, debug=debug_wanted(sys.argv[1:])))

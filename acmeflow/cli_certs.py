"""``acmeflow certs``: the certificates in the two stores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from sqlalchemy.orm import Session

from acmeflow.config.settings import get_settings
from acmeflow.core import errors
from acmeflow.core.scan import OTHER_CA
from acmeflow.core.state import cas, certificates, inventory, provider_index
from acmeflow.core.state.models import Certificate
from acmeflow.core.storage import stores_from_settings
from acmeflow.core.stores import off_disk

from .output import catalog_errors, console, database, err_console, fmt_time, print_json, table

app = typer.Typer(help="Certificates in the stores.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _files(c: Certificate) -> dict[str, str]:
    """The certificate's files (none for one held in the database or s3: export writes
    them)."""
    if off_disk(c.folder):
        return {}
    folder = Path(c.folder)
    if c.path and Path(c.path) != folder / "cert.pem":  # a certificate file placed by hand
        return {"cert": c.path}
    return {
        "cert": str(folder / "cert.pem"),
        "chain": str(folder / "chain.pem"),
        "fullchain": str(folder / "fullchain.pem"),
        "privkey": str(folder / "privkey.pem"),
    }


def cert_dict(
    c: Certificate,
    *,
    ca_names: Mapping[int, str] | None = None,
    labels: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """A certificate as shown to users, with its file paths.

    ``ca_names`` (id -> name) and ``labels`` (id -> "Let's Encrypt") avoid a query per row in
    listings; without them the certificate's relationships are used.
    """
    if ca_names is None or labels is None:
        with_ca = [x for x in (c.ca_vendor, c.issued_by_ca) if x is not None]
        ca_names = {x.id: x.name for x in with_ca}
        labels = inventory.ca_labels(with_ca)
    return {
        "id": c.id,
        "store": c.store,
        "names": list(c.names or []),
        "common_name": c.common_name,
        "subject": c.subject,
        "issuer": c.issuer,
        "issued_by": labels.get(c.issued_by_ca_id, OTHER_CA)
        if c.issued_by_ca_id is not None
        else OTHER_CA,
        "serial": c.serial,
        "not_before": c.not_before,
        "not_after": c.not_after,
        "key_type": c.key_type,
        "fingerprint_sha256": c.fingerprint_sha256,
        "enrollment": c.enrollment,
        "ca": ca_names.get(c.ca_vendor_id) if c.ca_vendor_id is not None else None,
        "ca_vendor_id": c.ca_vendor_id,
        "renewal_due_at": c.renewal_due_at,
        "status": c.status,
        "source": c.source,
        "folder": str(Path(c.folder)),
        "path": c.path,
        "last_seen_at": c.last_seen_at,
        "gone_at": c.gone_at,
        "files": _files(c),
    }


def print_cert(shown: dict[str, Any]) -> None:
    """Print the details of one certificate (as from :func:`cert_dict`)."""
    for key in ("store", "issuer", "issued_by", "serial", "key_type", "enrollment", "ca"):
        console.print(f"  [bold]{key}[/]: {shown[key] or '-'}", soft_wrap=True)
    if shown["status"] != "active":
        console.print(f"  [bold]status[/]: {shown['status']} since {fmt_time(shown['gone_at'])}")
    console.print(
        f"  [bold]valid[/]: {fmt_time(shown['not_before'])} → {fmt_time(shown['not_after'])} UTC"
    )
    for key, path in shown["files"].items():
        console.print(f"  [bold]{key}[/]: {path}", soft_wrap=True)
    if not shown["files"]:
        console.print("  [bold]files[/]: held in the database store (acmeflow certs export ID DIR)")


def _listing_maps(s: Session) -> tuple[dict[int, str], dict[int, str]]:
    vendors = cas.list_cas(s)
    return {ca.id: ca.name for ca in vendors}, inventory.ca_labels(vendors)


@app.command("list")
@catalog_errors
def certs_list(
    store: Annotated[str | None, typer.Option("--store", help="certificate or zero-touch")] = None,
    auto: Annotated[
        bool, typer.Option("--auto", help="only automatic renewals (the Automatic tab)")
    ] = False,
    manual: Annotated[
        bool, typer.Option("--manual", help="only manual renewals (the Manual tab)")
    ] = False,
    ca: Annotated[str | None, typer.Option("--ca", help="only certificates under this CA")] = None,
    include_gone: Annotated[
        bool, typer.Option("--all", help="include certificates whose file is gone")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the certificates acmeflow knows (issued, or found by the scan)."""
    if auto and manual:
        raise errors.ConfigError(detail="give --auto or --manual, not both")
    enrollment = "auto" if auto else "manual" if manual else None
    with database() as s:
        names, labels = _listing_maps(s)
        rows = [
            cert_dict(c, ca_names=names, labels=labels)
            for c in certificates.list_certificates(
                s,
                store=store,
                enrollment=enrollment,
                ca=ca,
                status=None if include_gone else "active",
            )
        ]
    if as_json:
        print_json(rows)
        return
    title = {"auto": "Automatic renewals", "manual": "Manual renewals"}.get(
        enrollment or "", "Certificates"
    )
    columns = ["id", "names", "store", "issued by", "CA", "expires", "renewal"]
    if include_gone:
        columns.append("status")
    table(
        title,
        columns,
        [
            [
                r["id"],
                ", ".join(r["names"]),
                r["store"],
                r["issued_by"],
                r["ca"],
                fmt_time(r["not_after"]),
                r["enrollment"],
                *([r["status"]] if include_gone else []),
            ]
            for r in rows
        ],
    )


@app.command("show")
@catalog_errors
def certs_show(cert_id: int, as_json: JsonOpt = False) -> None:
    """Show one certificate: names, issuer, validity and file paths."""
    with database() as s:
        names, labels = _listing_maps(s)
        shown = cert_dict(certificates.get_certificate(s, cert_id), ca_names=names, labels=labels)
    if as_json:
        print_json(shown)
        return
    console.print(f"[bold]Certificate {shown['id']}[/]: {', '.join(shown['names'])}")
    print_cert(shown)


@app.command("export")
@catalog_errors
def certs_export(
    cert_id: int,
    directory: Annotated[Path, typer.Argument(help="folder to write the files to")],
    force: Annotated[bool, typer.Option("--force", help="replace files already there")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a certificate's cert.pem, chain.pem, fullchain.pem and privkey.pem to DIR."""
    with database() as s:
        cert = certificates.get_certificate(s, cert_id)
        files, folder, store = _files(cert), Path(cert.folder), cert.store
    if files and "privkey" not in files:
        raise errors.ConfigError(
            detail=f"certificate {cert_id} is a file placed by hand ({files['cert']}): "
            "only certificates acmeflow stored can be exported"
        )
    written = stores_from_settings(get_settings())[store].export(folder, directory, overwrite=force)
    if as_json:
        print_json({"id": cert_id, "files": [str(p) for p in written]})
        return
    console.print(f"Certificate {cert_id} written to {directory}:")
    for path in written:
        console.print(f"  {path.name}", markup=False)


@app.command("verify")
@catalog_errors
def certs_verify(
    cert_id: int,
    root: Annotated[Path | None, typer.Option("--root", help="trusted root (PEM)")] = None,
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="trust the running sandbox's pebble root")
    ] = False,
) -> None:
    """Verify a stored certificate's chain up to a trusted root."""
    from acmeflow.core.certinfo import read_certificate_file, verify_chain

    from .sandbox import pebble_root_pem, sandbox_status

    if sandbox:
        info = sandbox_status(get_settings().home / "sandbox")
        if info is None:
            raise errors.ConfigError(detail="the sandbox is not running: acmeflow sandbox up")
        root_pem = pebble_root_pem(info)
    elif root is not None:
        root_pem = root.read_bytes()
    else:
        raise errors.ConfigError(detail="give --root FILE or --sandbox")
    with database() as s:
        cert = certificates.get_certificate(s, cert_id)
        files, folder, store = _files(cert), cert.folder, cert.store
    held = stores_from_settings(get_settings())[store]  # recovers an interrupted write
    try:
        if not files:
            live = held.read_set(folder)
            leaf_pem, chain_pem = live.cert, live.chain
        elif "chain" in files:
            leaf_pem = Path(files["cert"]).read_bytes()
            chain_pem = Path(files["chain"]).read_bytes()
        else:  # a file placed by hand: its own chain, if it carries one
            infos = read_certificate_file(Path(files["cert"]))
            leaf_pem, chain_pem = infos[0].pem, b"".join(i.pem for i in infos[1:])
        verify_chain(leaf_pem, chain_pem, root_pem)
    except OSError as exc:
        raise errors.ConfigError(detail=f"certificate {cert_id}: {exc}") from None
    except ValueError as exc:
        raise errors.ConfigError(
            detail=f"chain of certificate {cert_id} does not verify: {exc}"
        ) from None
    console.print(f"[green]✓[/] certificate {cert_id}: chain verifies up to the trusted root")


# --- enrollment (F3) and migration (F6) --------------------------------------------------------

IdsArg = Annotated[
    list[str] | None, typer.Argument(help="certificate ids (ranges like 3-9 allowed)")
]


def parse_ids(values: Sequence[str] | None) -> list[int]:
    """Certificate ids from the command line: ``4 7 10-12`` (commas allowed too)."""
    ids: list[int] = []
    for value in values or []:
        for part in value.replace(",", " ").split():
            first, sep, last = part.partition("-")
            try:
                if sep:
                    low, high = int(first), int(last)
                    if high < low or high - low > 1_000_000:
                        raise ValueError
                    ids.extend(range(low, high + 1))
                else:
                    ids.append(int(part))
            except ValueError:
                raise errors.ConfigError(
                    detail=f"{part!r} is not a certificate id or a range like 3-9"
                ) from None
    return list(dict.fromkeys(ids))


def _warnings(s: Session, certs: Sequence[Certificate]) -> list[str]:
    """Why enrolled certificates may not renew as expected: names without an active DNS
    provider, or the same certificate enrolled in both stores (renewed twice)."""
    warnings = []
    for cert in certs:
        try:
            provider_index.providers_for_names(s, cert.names)
        except errors.AcmeflowError as exc:
            detail = f" ({exc.detail})" if exc.detail else ""
            warnings.append(f"certificate {cert.id}: {exc.message}{detail}")
        if cert.fingerprint_sha256 and cert.enrollment == "auto":
            twins = [
                t.id
                for t in certificates.find_by_fingerprint(s, cert.fingerprint_sha256)
                if t.id != cert.id and t.store != cert.store and t.enrollment == "auto"
            ]
            if twins:
                warnings.append(
                    f"certificate {cert.id} ({cert.store} store) is the same certificate as "
                    f"{', '.join(map(str, twins))} in the other store: it would be renewed twice"
                )
    return warnings


def _report(verb: str, certs: list[dict[str, Any]], warnings: list[str], as_json: bool) -> None:
    if as_json:
        print_json({"certificates": certs, "warnings": warnings})
        return
    console.print(f"[green]✓[/] {len(certs)} certificate(s) {verb}")
    for cert in certs:
        console.print(
            f"  {cert['id']}: {', '.join(cert['names'])} → {cert['enrollment']}"
            + (f" under {cert['ca']}" if cert["ca"] else ""),
            soft_wrap=True,
        )
    for warning in warnings:
        err_console.print(f"[yellow]warning[/]: {warning}", soft_wrap=True)


@app.command("enroll")
@catalog_errors
def certs_enroll(
    ids: IdsArg = None,
    ca: Annotated[str, typer.Option("--ca", help="the CA vendor that renews them")] = "",
    confirm_vendor_change: Annotated[
        bool,
        typer.Option(
            "--confirm-vendor-change", help="take certificates issued by another CA (confirmed)"
        ),
    ] = False,
    all_issued: Annotated[
        bool,
        typer.Option(
            "--all-issued", help="every certificate issued by --ca that is under no CA yet"
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Put certificates on automatic renewal under a CA vendor (F3).

    A certificate issued by another CA needs --confirm-vendor-change; one already under
    another CA must be removed from it first (acmeflow certs unenroll).
    """
    with database() as s:
        wanted = parse_ids(ids)
        if all_issued:
            wanted += [i for i in inventory.certificates_issued_by(s, ca) if i not in wanted]
        if not wanted:
            raise errors.ConfigError(detail="give certificate ids (or --all-issued)")
        certs = inventory.enroll(s, wanted, ca, confirm_vendor_change=confirm_vendor_change)
        names, labels = _listing_maps(s)
        shown = [cert_dict(c, ca_names=names, labels=labels) for c in certs]
        warnings = _warnings(s, certs)
    _report(f"enrolled for automatic renewal under {ca!r}", shown, warnings, as_json)


@app.command("unenroll")
@catalog_errors
def certs_unenroll(ids: IdsArg = None, as_json: JsonOpt = False) -> None:
    """Remove certificates from their CA vendor (they go to manual renewal, under no CA)."""
    with database() as s:
        certs = inventory.unenroll(s, parse_ids(ids))
        names, labels = _listing_maps(s)
        shown = [cert_dict(c, ca_names=names, labels=labels) for c in certs]
    _report("removed from their CA (manual renewal)", shown, [], as_json)


@app.command("migrate")
@catalog_errors
def certs_migrate(
    ids: IdsArg = None,
    to: Annotated[
        str, typer.Option("--to", help="auto (automatic renewal) or manual (manual renewal)")
    ] = "",
    as_json: JsonOpt = False,
) -> None:
    """Move certificates between automatic and manual renewal, many at once (F6)."""
    if to not in ("auto", "manual"):
        raise errors.ConfigError(detail="--to must be auto or manual")
    target: Literal["auto", "manual"] = "auto" if to == "auto" else "manual"
    with database() as s:
        certs = inventory.migrate(s, parse_ids(ids), target)
        names, labels = _listing_maps(s)
        shown = [cert_dict(c, ca_names=names, labels=labels) for c in certs]
        warnings = _warnings(s, certs) if target == "auto" else []
    _report(
        f"moved to {'automatic' if target == 'auto' else 'manual'} renewal",
        shown,
        warnings,
        as_json,
    )

"""``acmeflow stores``: which backend holds the certificates, and moving them."""

from __future__ import annotations

from typing import Annotated, Literal, cast

import typer

from acmeflow.config.settings import StoreBackend, get_settings
from acmeflow.core.errors import ConfigError
from acmeflow.core.storage import stores_from_settings
from acmeflow.core.store_migration import MIGRATED_DIR, MigrationReport, migrate_store, placement
from acmeflow.core.stores import STORE_KINDS

from .output import catalog_errors, console, database, err_console, print_json, table

app = typer.Typer(
    help="The two stores' backends (directory, database, s3): where certificates are, migrate.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
StoreOpt = Annotated[
    Literal["certificate", "zero-touch"] | None,
    typer.Option("--store", help="only this store (default: both)"),
]


_COLUMNS = ("store", "new_certificates", "directory", "database", "s3", "loose", "folder")


@app.command("list")
@catalog_errors
def stores_list(as_json: JsonOpt = False) -> None:
    """Each store: where new certificates go, its folder, and how many certificates each
    backend holds."""
    stores = stores_from_settings(get_settings())
    with database() as s:
        rows = [
            {
                "store": kind,
                "new_certificates": stores[kind].backend,
                "folder": str(stores[kind].root),
                **placement(s, stores[kind]),
            }
            for kind in STORE_KINDS
        ]
    if as_json:
        print_json(rows)
        return
    table(
        "Stores",
        ["store", "new certificates", "directory", "database", "s3", "loose files", "folder"],
        [[r[k] for k in _COLUMNS] for r in rows],
    )


def _print_report(report: MigrationReport) -> None:
    console.print(
        f"[bold]{report.store} store[/]: {len(report.moved)} moved to the {report.to} backend "
        f"({report.versions} versions), {report.already} already there, "
        f"{len(report.loose)} loose file(s) left (they move on their first renewal)"
    )
    for cert_id, why in report.skipped.items():
        err_console.print(f"  certificate {cert_id} not moved: {why}", markup=False)


@app.command("migrate")
@catalog_errors
def stores_migrate(
    to: Annotated[
        str, typer.Option("--to", help="the backend to move them to: database, directory, s3")
    ],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move every certificate of the stores into one backend, each verified by fingerprint.

    Each certificate moves under its lease with all its versions; its row names the new place
    only once the set read back there matches. Run it again to move what was skipped (a
    certificate being renewed). Directory folders that moved are kept in the store's
    .migrated/ folder. Then set ACMEFLOW_STORE_BACKEND on every worker so new certificates go
    there too. Exits 1 if a certificate was not moved.
    """
    if to not in ("database", "directory", "s3"):
        raise ConfigError(detail=f"--to {to!r}: give database, directory or s3")
    backend = cast(StoreBackend, to)
    stores = stores_from_settings(get_settings())
    reports = [
        migrate_store(
            stores[kind],
            backend,
            database,
            progress=(lambda _l: None) if as_json else lambda line: console.print(line),
        )
        for kind in STORE_KINDS
        if store in (None, kind)
    ]
    if as_json:
        print_json(
            [
                {
                    "store": r.store,
                    "to": r.to,
                    "moved": r.moved,
                    "versions": r.versions,
                    "already": r.already,
                    "loose": r.loose,
                    "skipped": {str(k): v for k, v in r.skipped.items()},
                }
                for r in reports
            ]
        )
    else:
        for report in reports:
            _print_report(report)
        if any(r.moved for r in reports) and backend == "directory":
            console.print("Moved certificates' database versions were removed.")
        elif any(r.moved for r in reports):
            console.print(f"Moved folders are kept in each store's {MIGRATED_DIR}/ folder.")
        unset = [kind for kind in STORE_KINDS if stores[kind].backend != backend]
        if unset and store in (None, *unset):
            console.print(
                f"New certificates still go to the {stores[unset[0]].backend} backend: set "
                f"ACMEFLOW_STORE_BACKEND={backend} on every worker."
            )
    if not all(r.complete for r in reports):
        raise typer.Exit(1)

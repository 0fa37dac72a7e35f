"""Prefect tasks of the ``scan`` flow: read a store into the inventory, publish the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from acmeflow.core.errors import SecretError
from acmeflow.core.scan import ScanProblem, scan_store
from acmeflow.core.secrets import ENCRYPTED_PREFIX, is_ref
from acmeflow.core.state import inventory
from acmeflow.core.storage import stores_from_settings
from acmeflow.tasks.common import db, progress, settings

STEP = {"cache_policy": NO_CACHE, "persist_result": False}

COUNTS_ARTIFACT = "inventory-by-ca"
EXPIRING_ARTIFACT = "certificates-expiring-soonest"
WARNINGS_ARTIFACT = "inventory-warnings"


def check_password_refs(refs: list[str] | None) -> None:
    """Refuse plain passwords as flow parameters: only references or ``enc:`` values."""
    for ref in refs or []:
        if not (is_ref(ref) or ref.startswith(ENCRYPTED_PREFIX)):
            raise SecretError(
                detail="PKCS#12 passwords are given as references (env:NAME, file:PATH, "
                "prefect-block:NAME) or sealed values, never in plain text"
            )


@dataclass
class StoreOutcome:
    """What scanning one store did (small: safe to pass between tasks)."""

    summary: inventory.StoreSummary
    problems: list[ScanProblem] = field(default_factory=list)
    aliases: list[dict[str, str]] = field(default_factory=list)


@task(name="scan_store", **STEP)  # type: ignore[call-overload]
def scan_store_task(store: str, p12_passwords: list[str] | None = None) -> StoreOutcome:
    """Read every certificate file of ``store`` and record it in the inventory.

    ``p12_passwords`` are references or sealed values (``None``: the remembered ones); they
    are resolved here and never leave this task.
    """
    check_password_refs(p12_passwords)
    target = stores_from_settings(settings())[store]
    with db() as s:
        known = inventory.known_files(s, store)
        sealed = inventory.scan_passwords(s) if p12_passwords is None else list(p12_passwords)
    passwords = inventory.unseal_passwords(sealed)
    scanned = scan_store(target.directory, passwords=passwords, known=known)
    with db() as s:
        report = inventory.record_scan(s, [scanned], with_report=False)
    summary = report.stores[store]
    progress(
        f"{store} store: {summary.files} files, {summary.read} read, {summary.unchanged} "
        f"unchanged, {summary.new} new, {summary.gone} gone, {summary.problems} unreadable "
        f"({summary.seconds:.2f} s)"
    )
    return StoreOutcome(summary=summary, problems=report.problems, aliases=report.aliases)


@task(name="report_inventory", **STEP)  # type: ignore[call-overload]
def report_inventory(
    outcomes: list[StoreOutcome], expiring_limit: int = 10
) -> inventory.InventoryReport:
    """The inventory over both stores: counts per issuing CA, duplicates, soonest expiries."""
    with db() as s:
        report = inventory.inventory_report(s, expiring_limit=expiring_limit)
    for outcome in outcomes:
        report.stores[outcome.summary.store] = outcome.summary
        report.problems.extend(outcome.problems)
        report.aliases.extend(outcome.aliases)
    progress(f"certificates per CA: {report.counts_line()}")
    for duplicate in report.duplicates:
        progress(f"warning: {duplicate.warning()}")
    return report


def _table_cell(value: Any) -> Any:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return value


@task(name="publish_inventory", **STEP)  # type: ignore[call-overload]
def publish_inventory(report: inventory.InventoryReport) -> None:
    """Show the counts per CA, the soonest expiries and any warnings in the Prefect UI."""
    create_table_artifact(
        table=[{"CA": label, "certificates": count} for label, count in report.counts.items()],
        key=COUNTS_ARTIFACT,
        description=f"Certificates per issuing CA: {report.counts_line()}",
    )
    create_table_artifact(
        table=[
            {
                "id": row["id"],
                "names": _table_cell(row["names"]),
                "store": row["store"],
                "expires": row["not_after"].strftime("%Y-%m-%d %H:%M"),
                "days left": row["days_left"],
                "issued by": row["issued_by"],
                "renewal": row["renewal"],
            }
            for row in report.expiring
        ],
        key=EXPIRING_ARTIFACT,
        description="Certificates expiring soonest (both stores)",
    )
    lines = [f"- **duplicate**: {d.warning()}" for d in report.duplicates]
    lines += [f"- **unreadable** ({p.store} store): {p.path}: {p.reason}" for p in report.problems]
    if lines:
        create_markdown_artifact(
            markdown="# Scan warnings\n\n" + "\n".join(lines),
            key=WARNINGS_ARTIFACT,
            description="Duplicates across stores and unreadable files",
        )

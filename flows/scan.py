"""Flow ``scan``: read every certificate in both stores into the inventory (F2)."""

from typing import Any, Literal

from acmeflow.core.stores import STORE_KINDS
from acmeflow.flows.hooks import acmeflow_flow
from acmeflow.tasks.alerts import emit_expiry_alerts
from acmeflow.tasks.scan import (
    check_password_refs,
    publish_inventory,
    report_inventory,
    scan_store_task,
)


@acmeflow_flow("scan")
def scan(
    p12_passwords: list[str] | None = None,
    stores: list[Literal["certificate", "zero-touch"]] | None = None,
    expiring_limit: int = 10,
) -> dict[str, Any]:
    """Scan the certificate store and the zero-touch store and classify what they hold.

    ``p12_passwords`` are secret references (``env:NAME``, ``file:PATH``,
    ``prefect-block:NAME``) or sealed values, tried in order on PKCS#12 files; ``None`` uses
    the remembered ones. Rescanning is idempotent: unchanged files are not read again and a
    removed file is marked gone. Returns the inventory report (JSON-ready).

    Args:
        p12_passwords: Secret references (env:NAME, file:PATH, prefect-block:NAME) tried on
            PKCS#12 files; empty uses the remembered ones. Never a password itself.
        stores: The stores to scan (empty: both).
        expiring_limit: How many of the soonest-expiring certificates the report lists.
    """
    check_password_refs(p12_passwords)
    outcomes = [
        scan_store_task(store=kind, p12_passwords=p12_passwords) for kind in stores or STORE_KINDS
    ]
    report = report_inventory(outcomes, expiring_limit=expiring_limit)
    publish_inventory(report)
    emit_expiry_alerts()
    return report.to_dict()

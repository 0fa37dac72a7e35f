"""Prefect tasks that emit acmeflow's alerts as Prefect events (:mod:`core.alerts`).

An alert never fails the run that emits it: a database or event error is logged as a
warning. Without a Prefect server to receive them (a temporary one), events go nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from acmeflow.core import alerts
from acmeflow.core.renewal_plan import RenewalOutcome, parse_now
from acmeflow.tasks.common import current_flow_run_id, progress, settings

STEP = {"cache_policy": NO_CACHE, "persist_result": False}


def _emit(found: list[alerts.Alert]) -> int:
    run_id = current_flow_run_id()
    related = (
        [{"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"}]
        if run_id
        else None
    )
    for alert in found:
        emit_event(
            event=alert.event, resource=alert.resource(), related=related, payload=alert.payload()
        )
    return len(found)


def _safely(collect: str, find: Callable[[], list[alerts.Alert]]) -> int:
    try:
        return _emit(find())
    except Exception as exc:  # an alert never fails the run
        progress(f"alerts of {collect} not emitted: {exc}", problem=True)
        return 0


@task(name="emit_renewal_alerts", **STEP)  # type: ignore[call-overload]
def emit_renewal_alerts(
    outcomes: Sequence[RenewalOutcome],
    *,
    now: str,
    ca: str | None,
    certificate_ids: list[int] | None,
    expiring: bool = True,
) -> int:
    """Emit a renewal's succeeded/failed events and (``expiring``) the expiring ones of the
    run's scope."""
    at = parse_now(now)
    return _safely(
        "the renewals",
        lambda: alerts.renewal_alerts(
            outcomes, at=at, ca=ca, certificate_ids=certificate_ids, expiring=expiring
        ),
    )


@task(name="emit_expiry_alerts", **STEP)  # type: ignore[call-overload]
def emit_expiry_alerts(now: str | None = None) -> int:
    """Emit an expiring event per manual certificate near its expiry."""
    at = parse_now(now)
    days = settings().expiry_warning_days
    return _safely("the inventory", lambda: alerts.manual_expiry_alerts(at=at, warning_days=days))


@task(name="emit_deploy_alerts", **STEP)  # type: ignore[call-overload]
def emit_deploy_alerts(failures: list[tuple[int, str, str, str | None]]) -> int:
    """Emit a deploy.failed event per (certificate id, target, message, detail)."""
    at = parse_now(None)
    return _safely("the deployments", lambda: alerts.deploy_alerts(failures, at=at))

"""Prefect task of the ``renew`` flow's planning: select the due certificates, ask ARI, check
the DNS mapping. The renewals themselves go through the issuance steps in batches
(:mod:`tasks.pipeline`), the same steps as ``issue``."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from acmeflow.core import renewal_plan
from acmeflow.core.renewal_plan import (
    RenewalPlan,
    parse_now,
)
from acmeflow.tasks.common import (
    current_flow_run_id,
    progress,
)

STEP = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="plan_renewals", **STEP)  # type: ignore[call-overload]
def plan_renewals(
    *, ca: str | None, certificate_ids: list[int] | None, now: str, due_only: bool = False
) -> RenewalPlan:
    """Select the certificates to renew at ``now`` (see :func:`core.renewal_plan.plan_renewals`)."""
    return renewal_plan.plan_renewals(
        ca=ca,
        certificate_ids=certificate_ids,
        at=parse_now(now),
        flow_run_id=current_flow_run_id(),
        progress=progress,
        due_only=due_only,
    )

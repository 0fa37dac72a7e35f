"""Spreading one ``renew`` run over the workers of its pool: the run hands all but its first
batch out as child runs of the ``renew/share`` deployment (on the same work pool), renews its
own batch, then renews itself every share no worker started within
``ACMEFLOW_SHARE_PICKUP_SECONDS`` (a pool with one free worker never waits on itself) and
waits for the others. Each share renews the certificates of its batch that are still due,
under the same leases, so a share that starts late does nothing twice.

Only a run started from a deployment on a work pool, with ``renew/share`` on that pool,
hands shares out (``schedules sync --work-pool`` creates it); any other run renews every
batch itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled

from acmeflow.core.renewal_plan import RenewalJob, RenewalOutcome, outcomes_of_run
from acmeflow.tasks.common import order_timeouts, progress, settings

SHARE_DEPLOYMENT = "renew/share"
POLL_SECONDS = 1.0


@dataclass
class Share:
    """A batch handed out as a child run."""

    jobs: list[RenewalJob]
    flow_run_id: UUID
    handed_at: float  # time.monotonic()

    @property
    def ids(self) -> list[int]:
        return [job.certificate_id for job in self.jobs]


def share_deployment() -> str | None:
    """``renew/share`` when this run came from a deployment on a work pool that has it (and
    is not itself a share), else ``None``: the run renews every batch itself."""
    run_id = flow_run.get_id()
    if not run_id or not PREFECT_API_URL.value():
        return None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(str(run_id)))
        if run.deployment_id is None or run.work_pool_name is None:
            return None
        try:
            share = client.read_deployment_by_name(SHARE_DEPLOYMENT)
        except ObjectNotFound:
            return None
    if share.id == run.deployment_id or share.work_pool_name != run.work_pool_name:
        return None
    return SHARE_DEPLOYMENT


def hand_out(batches: list[list[RenewalJob]]) -> list[Share]:
    """One child run of ``renew/share`` per batch (started by whichever worker is free)."""
    shares = []
    for jobs in batches:
        child: Any = run_deployment(
            SHARE_DEPLOYMENT,
            parameters={"certificate_ids": [job.certificate_id for job in jobs]},
            timeout=0,
            as_subflow=True,
        )
        shares.append(Share(jobs, child.id, time.monotonic()))
    if shares:
        progress(f"handed {len(shares)} batch(es) out to the pool's workers ({SHARE_DEPLOYMENT})")
    return shares


def _take_back(client: Any, share: Share) -> bool:
    """Cancel ``share``'s run if no worker started it; whether it was taken back."""
    result = client.set_flow_run_state(
        share.flow_run_id,
        Cancelled(message="taken back: the run that handed it out renewed it itself"),
    )
    return str(result.status.value).upper() == "ACCEPT"


def collect(
    shares: list[Share], renew_here: Callable[[list[RenewalJob]], list[RenewalOutcome]]
) -> tuple[list[RenewalOutcome], list[RenewalOutcome]]:
    """Wait for the shares: a share no worker started within the pickup time is taken back
    and renewed here (``renew_here``). Returns (outcomes renewed here, outcomes of the
    shares' runs); a share's run that does not end within its deadline is reported failed."""
    pickup = settings().share_pickup_seconds
    deadline = time.monotonic() + order_timeouts().total * (len(shares) + 1)
    here: list[RenewalOutcome] = []
    theirs: list[RenewalOutcome] = []
    pending = list(shares)
    with get_client(sync_client=True) as client:
        while pending:
            for share in list(pending):
                state = client.read_flow_run(share.flow_run_id).state
                kind = state.type if state is not None else StateType.SCHEDULED
                if state is not None and state.is_final():
                    pending.remove(share)
                    theirs += _outcomes(share, kind)
                elif (
                    kind == StateType.SCHEDULED
                    and time.monotonic() - share.handed_at >= pickup
                    and _take_back(client, share)
                ):
                    pending.remove(share)
                    progress(f"no worker started share {share.flow_run_id}: renewing it here")
                    here += renew_here(share.jobs)
            if pending and time.monotonic() > deadline:
                for share in pending:
                    theirs += _late(share)
                return here, theirs
            if pending:
                time.sleep(POLL_SECONDS)
    return here, theirs


def _outcomes(share: Share, kind: StateType) -> list[RenewalOutcome]:
    """What the share's run did. A certificate it has no entry for was no longer due when
    it ran (a Completed run: skipped) or never reached (any other end: failed)."""
    found = outcomes_of_run(str(share.flow_run_id))
    done = {o.certificate_id for o in found}
    missing = [job for job in share.jobs if job.certificate_id not in done]
    if kind == StateType.COMPLETED:
        why = f"no longer due when share run {share.flow_run_id} ran"
        return found + [_not_renewed(job, why, "skipped") for job in missing]
    why = f"share run {share.flow_run_id} ended {kind.value} before renewing it"
    return found + [_not_renewed(job, why) for job in missing]


def _late(share: Share) -> list[RenewalOutcome]:
    why = f"share run {share.flow_run_id} did not end within its deadline"
    return [_not_renewed(job, why) for job in share.jobs]


def _not_renewed(job: RenewalJob, why: str, status: str = "failed") -> RenewalOutcome:
    return RenewalOutcome(
        certificate_id=job.certificate_id,
        names=job.names,
        ca=job.ca,
        status=status,
        message=why,
        old_serial=job.serial,
    )

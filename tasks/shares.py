"""Spreading one ``renew`` run over the workers of its pool: the run deals its batches into
one group per online worker of its pool, keeps the first group and hands every other out as
a child run of the ``renew/share`` deployment (on the same work pool), renews its own group,
then renews itself every share no worker started within ``ACMEFLOW_SHARE_PICKUP_SECONDS``
(a pool whose workers are busy never waits on itself) and waits for the others. Each share
renews the certificates of its group that are still due, under the same leases, so a share
that starts late does nothing twice.

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
from prefect.client.schemas.objects import StateType, WorkerStatus
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled

from acmeflow.core.pipeline import job_outcome
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


def pool_workers() -> int:
    """How many workers of this run's pool are online when this run came from a deployment
    on a work pool that has ``renew/share`` (and is not itself a share); else 0: the run
    renews every batch itself."""
    run_id = flow_run.get_id()
    if not run_id or not PREFECT_API_URL.value():
        return 0
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(str(run_id)))
        if run.deployment_id is None or run.work_pool_name is None:
            return 0
        try:
            share = client.read_deployment_by_name(SHARE_DEPLOYMENT)
        except ObjectNotFound:
            return 0
        if share.id == run.deployment_id or share.work_pool_name != run.work_pool_name:
            return 0
        workers = client.read_workers_for_work_pool(run.work_pool_name)
    return sum(1 for worker in workers if worker.status == WorkerStatus.ONLINE)


def hand_out(groups: list[list[RenewalJob]]) -> list[Share]:
    """One child run of ``renew/share`` per group (started by whichever worker is free)."""
    shares = []
    for jobs in groups:
        child: Any = run_deployment(
            SHARE_DEPLOYMENT,
            parameters={"certificate_ids": [job.certificate_id for job in jobs]},
            timeout=0,
            as_subflow=True,
        )
        shares.append(Share(jobs, child.id, time.monotonic()))
    if shares:
        count = sum(len(share.jobs) for share in shares)
        progress(
            f"handed {len(shares)} share(s) of {count} certificate(s) out to the pool's "
            f"workers ({SHARE_DEPLOYMENT})"
        )
    return shares


def _take_back(client: Any, share: Share) -> bool:
    """Cancel ``share``'s run if no worker started it; whether it was taken back."""
    result = client.set_flow_run_state(
        share.flow_run_id,
        Cancelled(message="taken back: the run that handed it out renewed it itself"),
    )
    return str(result.status.value).upper() == "ACCEPT"


def collect(
    shares: list[Share],
    renew_here: Callable[[list[RenewalJob]], list[RenewalOutcome]],
    rounds: int,
) -> tuple[list[RenewalOutcome], list[RenewalOutcome]]:
    """Wait for the shares: a share no worker started within the pickup time is taken back
    and renewed here (``renew_here``). Returns (outcomes renewed here, outcomes of the
    shares' runs); a share's run that does not end within ``rounds`` + 1 order deadlines is
    reported failed (``rounds``: the most batches one share has)."""
    pickup = settings().share_pickup_seconds
    deadline = time.monotonic() + order_timeouts().total * (rounds + 1)
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
        return found + [job_outcome(job, why) for job in missing]
    why = f"share run {share.flow_run_id} ended {kind.value} before renewing it"
    return found + [job_outcome(job, why, "failed") for job in missing]


def _late(share: Share) -> list[RenewalOutcome]:
    why = f"share run {share.flow_run_id} did not end within its deadline"
    return [job_outcome(job, why, "failed") for job in share.jobs]

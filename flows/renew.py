"""Flow ``renew``: renew every enrolled certificate whose renewal is due, in parallel (F6)."""

import datetime as dt
from contextlib import ExitStack
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.states import State

from acmeflow.core.errors import LimitSlotsBusy
from acmeflow.core.pipeline import (
    job_outcome,
    renewal_batches,
    renewal_outcome,
    spread_batches,
)
from acmeflow.core.renewal_plan import RenewalJob, RenewalOutcome, parse_now
from acmeflow.flows.deploy import deploy_after_renewals
from acmeflow.flows.hooks import acmeflow_flow
from acmeflow.flows.pipeline import run_sequence
from acmeflow.tasks.alerts import emit_renewal_alerts
from acmeflow.tasks.common import end_run, markdown_table, progress, publish_artifact, settings
from acmeflow.tasks.limits import ca_batch_caps, ca_slots, renew_run_slot
from acmeflow.tasks.pipeline import open_renewals, recover_orders
from acmeflow.tasks.renew import plan_renewals
from acmeflow.tasks.shares import collect, hand_out, pool_workers


def _summary(outcomes: list[RenewalOutcome], not_due: int, considered: int) -> dict[str, Any]:
    counts = {
        s: sum(1 for o in outcomes if o.status == s) for s in ("renewed", "failed", "skipped")
    }
    return {
        **counts,
        "not_due": not_due,
        "considered": considered,
        "results": [o.as_row() for o in sorted(outcomes, key=lambda o: o.certificate_id)],
    }


@acmeflow_flow("renew")
def renew(
    ca: str | None = None,
    certificate_ids: list[int] | None = None,
) -> dict[str, Any] | State[Any]:
    """Renew the certificates that are due, or given certificates now.

    The certificates of each CA vendor go through the issuance steps in batches
    (``ACMEFLOW_RENEW_BATCH_SIZE``), the orders of a batch in parallel within the per-CA limit;
    a renewal that fails drops out of its batch and never stops the others. Started from a
    deployment on a work pool, a run of several batches spreads them over the pool's online
    workers as ``renew/share`` runs and reports them all. The run ends Failed (after its
    artifacts) when a renewal failed.

    Args:
        ca: Only the due certificates of this CA vendor (empty: every active CA vendor's).
            With certificate_ids: the CA vendor for certificates that have none.
        certificate_ids: Renew exactly these certificates now, due or not, manual ones
            included ("renew now"). Empty: the certificates whose renewal is due.
    """
    return _renew(ca, certificate_ids, parse_now(None))


@acmeflow_flow("renew")
def renew_as_of(
    now: str, ca: str | None = None, certificate_ids: list[int] | None = None
) -> dict[str, Any] | State[Any]:
    """The ``renew`` flow with its clock replaced by ``now`` (ISO 8601): what-if runs of the
    CLI (``acmeflow renew --at``), tests and benchmarks. Never deployed: a clock typed into a
    form could renew everything."""
    return _renew(ca, certificate_ids, parse_now(now))


@acmeflow_flow("renew")
def renew_share(certificate_ids: list[int]) -> dict[str, Any] | State[Any]:
    """Renew a share of a larger ``renew`` run: those of ``certificate_ids`` still due (a
    certificate another run renewed meanwhile is left alone). The ``renew/share`` deployment
    on a work pool; a ``renew`` run started on that pool hands its batches out to it, so one
    run spreads over the pool's workers.

    Args:
        certificate_ids: The certificates of the share (renewed only while still due).
    """
    return _renew(None, certificate_ids, parse_now(None), share=True)


def _renew_batch(jobs: list[RenewalJob], at: dt.datetime) -> list[RenewalOutcome]:
    """One batch through the sequence, holding its CA's pool-wide slots; what happened to
    each certificate (a batch that got no slot in time is not started: skipped)."""
    try:
        with ca_slots(jobs[0].ca, len(jobs)):
            batch = open_renewals(jobs, at.isoformat())
            try:
                run_sequence(batch)
            except Exception as exc:  # its items are failed and recorded; the next batch goes on
                progress(f"a batch of {len(jobs)} renewal(s) stopped: {exc}", problem=True)
            return [renewal_outcome(item) for item in batch.items]
    except LimitSlotsBusy as busy:  # the pool's slots stayed taken: the next run renews them
        return _not_started(jobs, busy)


def _not_started(jobs: list[RenewalJob], busy: LimitSlotsBusy) -> list[RenewalOutcome]:
    """``jobs`` reported skipped: a pool-wide limit had no slot for them in time."""
    why = f"not started: {busy.message} {busy.detail}"
    progress(f"{len(jobs)} renewal(s) {why}", problem=True)
    return [job_outcome(job, why) for job in jobs]


def _renew(
    ca: str | None, certificate_ids: list[int] | None, at: dt.datetime, *, share: bool = False
) -> dict[str, Any] | State[Any]:
    recover_orders()
    plan = plan_renewals(ca=ca, certificate_ids=certificate_ids, now=at.isoformat(), due_only=share)
    outcomes: list[RenewalOutcome] = list(plan.skipped)
    with ExitStack() as run_slot:
        jobs = plan.jobs
        if jobs and not share:  # a share's run is part of the run that holds the slot
            try:
                run_slot.enter_context(renew_run_slot())
            except LimitSlotsBusy as busy:  # the pool runs its maximum: the next run renews
                outcomes += _not_started(jobs, busy)
                jobs = []
        renewed_here, of_shares = _renew_jobs(jobs, at)
        outcomes += renewed_here
    # zero-touch certificates go to their targets now, and the alerts go out, for what this
    # run renewed (a share's run does both for its own)
    deploy_after_renewals([o.certificate_id for o in outcomes if o.status == "renewed"])
    emit_renewal_alerts(
        outcomes,
        now=at.isoformat(),
        ca=ca,
        certificate_ids=certificate_ids,
        expiring=not share,  # the run that handed the share out reports its whole scope
    )
    return _report([*outcomes, *of_shares], plan.not_due, plan.considered)


def _renew_jobs(
    jobs: list[RenewalJob], at: dt.datetime
) -> tuple[list[RenewalOutcome], list[RenewalOutcome]]:
    """Renew ``jobs`` in batches, spread over the pool's workers: what happened to those this
    run renewed (or took back), and to those the shares' runs renewed."""
    outcomes: list[RenewalOutcome] = []
    total = len(jobs)
    progress_id = publish_artifact(
        create_progress_artifact,
        progress=0.0 if total else 100.0,
        key="renew-progress",
        description=f"Renewing {total} certificate(s)",
    )
    done = 0

    def renew_here(jobs: list[RenewalJob]) -> list[RenewalOutcome]:
        nonlocal done
        found = _renew_batch(jobs, at)
        done += len(jobs)
        if progress_id:
            publish_artifact(
                update_progress_artifact,
                artifact_id=progress_id,
                progress=100.0 * done / total,
                description=f"{done} of {total} renewal(s) done",
            )
        return found

    caps = ca_batch_caps({job.ca for job in jobs})

    def batches_of(jobs: list[RenewalJob]) -> list[list[RenewalJob]]:
        return renewal_batches(jobs, settings().renew_batch_size, caps)

    def renew_group(jobs: list[RenewalJob]) -> list[RenewalOutcome]:
        return [outcome for batch in batches_of(jobs) for outcome in renew_here(batch)]

    batches = batches_of(jobs)
    groups = spread_batches(batches, pool_workers() if len(batches) > 1 else 1)
    shares = hand_out([[job for batch in group for job in batch] for group in groups[1:]])
    for batch in groups[0]:
        outcomes.extend(renew_here(batch))
    taken_back, of_shares = collect(shares, renew_group, rounds=len(groups[0]))
    return [*outcomes, *taken_back], of_shares


def _report(
    outcomes: list[RenewalOutcome], not_due: int, considered: int
) -> dict[str, Any] | State[Any]:
    """Publish the run's summary and failures as artifacts; the run's result."""
    summary = _summary(outcomes, not_due, considered)
    rows = summary["results"]
    if rows:
        publish_artifact(
            create_table_artifact,
            table=rows,
            key="renew-summary",
            description=(
                f"Renewed {summary['renewed']}, failed {summary['failed']}, skipped "
                f"{summary['skipped']}, not due {summary['not_due']}"
            ),
        )
    failures = [r for r in rows if r["status"] == "failed"]
    if failures:
        publish_artifact(
            create_markdown_artifact,
            markdown=markdown_table(
                ["id", "names", "error", "next attempt"],
                [[r["id"], r["names"], r["message"], r["next_attempt_at"]] for r in failures],
            ),
            key="renew-failures",
            description=f"{len(failures)} renewal(s) failed",
        )
    text = (
        f"renew: {summary['renewed']} renewed, {summary['failed']} failed, "
        f"{summary['skipped']} skipped, {summary['not_due']} not due"
    )
    progress(text)
    return end_run(summary, summary["failed"], text)

"""Prefect tasks of the issuance sequence: one task per step of
:data:`core.pipeline.SEQUENCE`, each acting on a whole :class:`~core.pipeline.Batch`.

A step whose items met a retryable error fails its attempt with :class:`StepIncomplete`, and
Prefect retries it: the retry acts only on the items still pending (the batch object is the
same one). On the last attempt, or once the batch's deadline is spent, those items drop out with
their own error and the task completes, so the other items go on. No task takes or returns a
private key or a secret.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run
from sqlalchemy.orm import Session

from acmeflow.core import errors, order_recovery, pipeline
from acmeflow.core.dnsprovider import DNSProvider
from acmeflow.core.pipeline import Batch, OrderItem
from acmeflow.core.renewal_plan import RenewalJob, parse_now
from acmeflow.core.state import leases
from acmeflow.core.storage import stores_from_settings
from acmeflow.providers.configured import ConfiguredProviders
from acmeflow.tasks.common import (
    challenge_journal,
    current_flow_run_id,
    db,
    dns_lookup,
    order_timeouts,
    progress,
    retry_if_retryable,
    settings,
)

STEP_RETRIES = 2


class StepIncomplete(errors.AcmeflowError):
    """Some items of a batch met a retryable error at a step: the step is retried for them."""

    message = "Some orders of the batch wait for a retry of this step."
    retryable = True


def _load_provider(s: Session, name: str) -> DNSProvider:
    return ConfiguredProviders(s).get(name)


def pipeline_context() -> pipeline.Context:
    """What the steps use, from this process's settings."""
    conf = settings()
    return pipeline.Context(
        settings=conf,
        database=db,
        load_provider=_load_provider,
        lookup=dns_lookup(),
        timeouts=order_timeouts(),
        journal=challenge_journal(),
        stores=stores_from_settings(conf),
        progress=progress,
        flow_run_id=current_flow_run_id(),
    )


def start_batch(
    items: Sequence[OrderItem], now: dt.datetime | None = None, size: int | None = None
) -> Batch:
    """A batch of ``items`` (``size`` of them, when they are added later) with its one
    deadline, starting now."""
    at = now or dt.datetime.now(dt.UTC)
    return Batch.start(items, order_timeouts(), pipeline.ca_workers(settings()), at, size=size)


@task(name="open_renewals", cache_policy=NO_CACHE, persist_result=False)
def open_renewals(jobs: list[RenewalJob], now: str) -> Batch:
    """Check each renewal again and open its history entry; a failed check drops out."""
    ctx = pipeline_context()
    batch = start_batch([], parse_now(now), size=len(jobs))
    pipeline.open_renewals(jobs, ctx, batch)
    pipeline.record_failures(batch, ctx)
    return batch


def _run_step(step: pipeline.Step, batch: Batch) -> Batch:
    ctx = pipeline_context()
    step.run(batch, ctx)
    waiting = pipeline.settle(batch, ctx, final=task_run.get_run_count() > STEP_RETRIES)
    if waiting:
        first = batch.waiting()[0]
        raise StepIncomplete(
            detail=f"{step.name}: {waiting} order(s) to retry, e.g. {first.label}: "
            f"{first.pending_error}"
        )
    return batch


def _step_task(step: pipeline.Step) -> Task[[Batch], Batch]:
    def run_step(batch: Batch) -> Batch:
        return _run_step(step, batch)

    run_step.__doc__ = step.run.__doc__
    return task(  # type: ignore[call-overload,no-any-return]
        name=step.name,
        cache_policy=NO_CACHE,
        persist_result=False,
        retries=STEP_RETRIES,
        retry_delay_seconds=[1, 5],
        retry_condition_fn=retry_if_retryable,
    )(run_step)


STEP_TASKS: tuple[Task[[Batch], Batch], ...] = tuple(_step_task(s) for s in pipeline.SEQUENCE)


@task(name="clean_up", cache_policy=NO_CACHE, persist_result=False)
def clean_up(batch: Batch, interrupted: BaseException | None = None) -> list[str]:
    """Remove every TXT value the batch wrote; record the items the run left unfinished."""
    return pipeline.clean_up(batch, pipeline_context(), interrupted)


@task(name="open_issue", cache_policy=NO_CACHE, persist_result=False)
def open_issue(item: OrderItem) -> Batch:
    """A batch of one: the name set's lease taken (held by another run: this run stops and
    says by whom), an interrupted earlier run of the same request recovered first."""
    batch = start_batch([item])
    pipeline.open_issue(batch, pipeline_context())
    return batch


@task(name="recover_orders", cache_policy=NO_CACHE, persist_result=False)
def recover_orders() -> list[str]:
    """Store the certificates of orders a crash left between finalize and the store (runs
    that are over: their lease is free); drop the orders the CA did not finish."""
    ctx = pipeline_context()
    now = dt.datetime.now(dt.UTC)
    owner = f"{leases.this_process()}:recovery"
    return [r.line for r in order_recovery.recover_orders(ctx, now=now, owner=owner)]

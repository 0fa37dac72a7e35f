"""The pool-wide limits held while the flows run (:mod:`acmeflow.core.limits` names them,
``acmeflow schedules sync`` creates them): Prefect global concurrency limits, so every
worker of a pool counts against the same numbers.

A limit that does not exist (none configured, no sync yet, or no Prefect server:
``PREFECT_API_URL`` unset) is not waited for; the process-local limits
(``ACMEFLOW_PER_CA_CONCURRENCY``, ``ACMEFLOW_PER_DNS_PROVIDER_CONCURRENCY``) always apply.
Slots are taken in one order (the CA's, then the DNS providers' by name), so two workers
never wait on each other. Held slots are leased for :data:`SLOT_LEASE_SECONDS` and renewed
while held: a killed worker's slots come back when the lease runs out (plus the server's
15 s sweep).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency, rate_limit
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from acmeflow.core.errors import LimitSlotsBusy
from acmeflow.core.limits import RENEW_RUNS_LIMIT, ca_rate_name, ca_slots_name, dns_slots_name
from acmeflow.core.pipeline import Batch
from acmeflow.tasks.common import order_timeouts, progress, settings

SLOW_WAIT_SECONDS = 1.0  # a wait longer than this is reported
SLOT_LEASE_SECONDS = 60  # the shortest lease the Prefect server grants


def _active_limits(names: list[str]) -> dict[str, Any]:
    """The active limits among ``names`` on the Prefect server, by name."""
    if not names or not PREFECT_API_URL.value():
        return {}
    found: dict[str, Any] = {}
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                continue
            if limit.active:
                found[name] = limit
    return found


def ca_batch_caps(cas: set[str]) -> dict[str, int]:
    """Per CA vendor with a pool-wide limit, the most orders one batch may hold (a batch
    holds one slot per order, so it can never ask for more than the limit has)."""
    caps: dict[str, int] = {}
    names = {ca: (ca_slots_name(ca), ca_rate_name(ca)) for ca in sorted(cas)}
    limits = _active_limits([n for pair in names.values() for n in pair])
    for ca, pair in names.items():
        sizes = [limits[n].limit for n in pair if n in limits]
        if sizes:
            caps[ca] = max(1, min(sizes))
    return caps


@contextmanager
def _waiting(what: str, timeout: float) -> Iterator[None]:
    """Report a wait for slots that took long; a wait that ran out raises LimitSlotsBusy."""
    started = time.monotonic()
    try:
        yield
    except TimeoutError:
        raise LimitSlotsBusy(detail=f"{what}: not free within {timeout:.0f} s") from None
    waited = time.monotonic() - started
    if waited > SLOW_WAIT_SECONDS:
        progress(f"waited {waited:.1f} s for {what}")


@contextmanager
def _held(name: str, occupy: int, what: str, timeout: float) -> Iterator[None]:
    """``occupy`` slots of limit ``name`` held while the block runs."""
    label = f"{occupy} slot(s) of {name} ({what})"
    with ExitStack() as stack:
        with _waiting(label, timeout):
            stack.enter_context(
                concurrency(
                    name,
                    occupy=occupy,
                    timeout_seconds=timeout,
                    lease_duration=SLOT_LEASE_SECONDS,
                    strict=True,
                )
            )
        yield


@contextmanager
def ca_slots(ca: str, orders: int) -> Iterator[None]:
    """Hold ``orders`` slots of CA vendor ``ca``'s pool-wide limit on orders in flight (and
    take as many from its new-order rate limit) while the block runs; waits at most one
    order's deadline, then raises :class:`~acmeflow.core.errors.LimitSlotsBusy`."""
    timeout = order_timeouts().total
    slots, rate = ca_slots_name(ca), ca_rate_name(ca)
    limits = _active_limits([slots, rate])
    with ExitStack() as stack:
        if slots in limits:
            stack.enter_context(_held(slots, orders, f"CA {ca}'s orders in flight", timeout))
        if rate in limits:
            with _waiting(f"{orders} new order(s) of {rate} (CA {ca}'s order rate)", timeout):
                rate_limit(rate, occupy=orders, timeout_seconds=timeout, strict=True)
        yield


@contextmanager
def renew_run_slot() -> Iterator[None]:
    """Hold one slot of the pool's limit on renew runs at once (shared by every renew
    deployment) while the block runs; waits at most ``ACMEFLOW_POOL_RENEW_WAIT`` seconds, then
    raises :class:`~acmeflow.core.errors.LimitSlotsBusy`."""
    with ExitStack() as stack:
        if _active_limits([RENEW_RUNS_LIMIT]):
            wait = settings().pool_renew_wait
            stack.enter_context(_held(RENEW_RUNS_LIMIT, 1, "renew runs at once", wait))
        yield


def _record_writes(batch: Batch) -> Mapping[str, int]:
    """How many records of each DNS provider the batch's live items write."""
    return Counter(r.provider for item in batch.going() for r in item.records if r.provider)


@contextmanager
def dns_slots(batch: Batch) -> Iterator[None]:
    """Hold, for each DNS provider the batch writes to, one slot per record (at most the
    limit) of its pool-wide limit while the block runs; waits within the batch's deadline."""
    writes = _record_writes(batch)
    names = {dns_slots_name(p): n for p, n in writes.items()}
    limits = _active_limits(sorted(names))
    with ExitStack() as stack:
        for name in sorted(limits):
            occupy = min(names[name], limits[name].limit)
            timeout = max(1.0, batch.deadline.remaining())
            stack.enter_context(_held(name, occupy, "DNS record writes", timeout))
        yield

"""The one issuance sequence, run on a batch of orders of one CA: ``issue`` runs a batch of one,
``renew`` runs batches of many.

:data:`SEQUENCE` lists the steps in order (order, TXT plan, TXT add, propagation, answer, key,
finalize, store); :func:`clean_up` always runs after them. Every step acts on all the batch's
items still going, in parallel, and records an outcome per item: an item that fails drops out
with its catalog message (its history entry is closed with the step and the message, a renewal
is backed off) while the others go on. An item whose error is retryable stays pending at that
step: running the step again (a Prefect retry) acts only on the items still pending, until the
batch's one deadline is spent. The Prefect tasks in ``tasks/pipeline.py`` wrap each step;
:func:`run_steps` runs them without Prefect (scripts, benchmarks).

Batching is where the speed is: every TXT value of the batch goes through its provider at once
(an RFC 2136 provider sends one UPDATE per zone), propagation is checked once for all of them,
and the history is written in one transaction per step.

A new private key is made only after the CA validated the names (a failed validation leaves no
key behind) and is staged in the store's private folder until the certificate is stored; the
order is journaled with it before ``finalize`` (see :mod:`core.state.orders_in_flight`), so a
crash between finalize and store loses nothing: ``sweep`` or the next run of the same request
downloads the certificate instead of ordering again.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from acmeflow.config.settings import Settings
from acmeflow.core import errors, issuance
from acmeflow.core.accounts import open_session
from acmeflow.core.acme_client import AcmeSession, DNSChallenge, IssuedCertificate, OrderHandle
from acmeflow.core.deadline import Deadline
from acmeflow.core.dns01 import ChallengeRecord, DNSLookup
from acmeflow.core.dnsprovider import DNSProvider
from acmeflow.core.issuance import ChallengeJournal, Progress, Timeouts, no_progress
from acmeflow.core.keys import (
    DEFAULT_KEY_TYPE,
    CSRFields,
    build_csr,
    generate_private_key,
    load_csr,
)
from acmeflow.core.order_recovery import Recovered, issued_set_from, recover_orders
from acmeflow.core.orders import (
    SavedCertificate,
    check_names_ca_and_dns,
    log_failure,
    save_issued,
)
from acmeflow.core.renewal_files import adopt_loose_file, place_folder, reused_key
from acmeflow.core.renewal_plan import RenewalJob, RenewalOutcome
from acmeflow.core.state import history, leases, orders_in_flight, provider_index, renewals
from acmeflow.core.state.models import Certificate
from acmeflow.core.state.orders_in_flight import OrderInFlight
from acmeflow.core.storage import Store

log = logging.getLogger(__name__)

LEASE_MARGIN = dt.timedelta(minutes=5)
STORE_WORKERS = 4  # certificates written at once (fsyncs overlap; database commits queue)


# --- the batch -------------------------------------------------------------------------------


@dataclass(eq=False)
class OrderItem:
    """One certificate going through the sequence (no secret: keys wait in the store's staging
    folder under ``ref``, credentials are loaded where they are used)."""

    ref: str  # the request id: names the staged key and the journaled order
    ca: str
    names: list[str]
    store: str
    log_id: int  # its history entry
    key_type: str = DEFAULT_KEY_TYPE
    csr_fields: dict[str, Any] = field(default_factory=dict)
    enrollment: str = "manual"
    key_staged: bool = False  # an uploaded key waits in staging under ``ref``
    uploaded_csr: str | None = None  # an uploaded CSR, checked against the staged key
    renewal: RenewalJob | None = None
    lease_key: str | None = None  # the lease this item holds (certificate or name set)
    skipped: str | None = None  # why it was not run (its lease is held by another run)
    # what the steps produced
    done: str = "opened"  # the last step completed
    order: OrderHandle | None = None
    challenges: list[DNSChallenge] = field(default_factory=list)
    records: list[ChallengeRecord] = field(default_factory=list)
    csr_pem: bytes | None = None
    issued: IssuedCertificate | None = None
    saved: SavedCertificate | None = None
    # how it failed
    error: BaseException | None = None
    failed_at: str | None = None
    recorded: bool = False  # the failure is in the history
    next_attempt_at: dt.datetime | None = None  # a failed renewal's backoff
    pending_error: BaseException | None = None  # a retryable error met at the current step
    cleaned: bool = False

    @property
    def label(self) -> str:
        """How logs name the item."""
        prefix = f"certificate {self.renewal.certificate_id} " if self.renewal else ""
        return f"{prefix}({', '.join(self.names)})"

    @property
    def holds_new_key(self) -> bool:
        """Whether a key is staged under ``ref`` for this item (uploaded or made here)."""
        return self.key_staged or (self.csr_pem is not None and not self._reuses_key)

    @property
    def _reuses_key(self) -> bool:
        return self.renewal is not None and self.renewal.reuse_key

    @property
    def done_next(self) -> str:
        """The step this item is at (the one after the last it completed)."""
        position = STEP_POSITION[self.done]
        return SEQUENCE[min(position, len(SEQUENCE) - 1)].name

    def fail(self, step: str, exc: BaseException) -> None:
        """Drop out of the batch at ``step`` with ``exc``."""
        self.error, self.failed_at, self.pending_error = exc, step, None


class Batch:
    """Orders of one CA that go through the sequence together, with one deadline.

    A plain class, not a dataclass: Prefect hands the same object to every attempt of a step
    task, so a retried step sees what its earlier attempt did and acts on the rest only.
    """

    def __init__(self, items: Sequence[OrderItem], *, deadline: Deadline, now: dt.datetime):
        self.items = list(items)
        self.deadline = deadline
        self.now = now
        self.owner = f"{leases.this_process()}:{uuid.uuid4().hex[:8]}"  # holds the leases

    @property
    def lease_ttl(self) -> dt.timedelta:
        """How long the batch's leases last: its deadline, and time to store and clean up."""
        return dt.timedelta(seconds=self.deadline.budget) + LEASE_MARGIN

    @classmethod
    def start(
        cls,
        items: Sequence[OrderItem],
        timeouts: Timeouts,
        workers: int,
        now: dt.datetime,
        *,
        size: int | None = None,
    ) -> Batch:
        """A batch whose deadline is the order deadline once per round of ``workers`` items
        (a CA's concurrency limit makes a large batch take several rounds per step); ``size``:
        how many items it will hold, when they are added later."""
        count = len(items) if size is None else size
        rounds = max(1, math.ceil(count / max(1, workers)))
        return cls(items, deadline=Deadline.after(timeouts.total * rounds), now=now)

    def going(self) -> list[OrderItem]:
        """Items that have not failed (nor been skipped)."""
        return [item for item in self.items if item.error is None and item.skipped is None]

    def due(self, step: str) -> list[OrderItem]:
        """Items that have not failed and not yet done ``step``."""
        position = STEP_POSITION[step]
        return [i for i in self.going() if STEP_POSITION[i.done] < position]

    def waiting(self) -> list[OrderItem]:
        """Items that met a retryable error at their current step."""
        return [item for item in self.going() if item.pending_error is not None]

    def failed(self) -> list[OrderItem]:
        """Items that dropped out."""
        return [item for item in self.items if item.error is not None]


# --- what the steps use ----------------------------------------------------------------------


@dataclass
class Context:
    """What the steps use: the database, DNS providers (built by ``load_provider``, which lives
    above core), the DNS lookup, the order timeouts, the challenge journal and the settings."""

    settings: Settings
    database: Callable[[], AbstractContextManager[Session]]
    load_provider: Callable[[Session, str], DNSProvider]
    lookup: DNSLookup
    timeouts: Timeouts
    journal: ChallengeJournal
    stores: dict[str, Store]
    progress: Progress = no_progress
    flow_run_id: str | None = None
    _providers: dict[str, DNSProvider] = field(default_factory=dict)
    _index: provider_index.ProviderIndex | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: threading.local = field(default_factory=threading.local)

    def acme(self, ca: str) -> AcmeSession:
        """This thread's ACME session at ``ca``, loaded once per thread and context."""
        sessions: dict[str, AcmeSession] = self._threads.__dict__.setdefault("acme", {})
        if ca not in sessions:
            with self.database() as s:
                sessions[ca] = open_session(s, ca, self.settings)
        return sessions[ca]

    def provider(self, name: str) -> DNSProvider:
        """The DNS provider ``name`` (built once per context)."""
        with self._lock:
            if name not in self._providers:
                with self.database() as s:
                    self._providers[name] = self.load_provider(s, name)
            return self._providers[name]

    def providers(self, records: Sequence[ChallengeRecord]) -> dict[str, DNSProvider]:
        """The provider of every record, by name."""
        return {r.provider: self.provider(r.provider) for r in records}

    def provider_for(self, fqdn: str) -> str:
        """The provider name that writes ``fqdn`` (the domain mappings, loaded once)."""
        with self._lock:
            if self._index is None:
                with self.database() as s:
                    self._index = provider_index.provider_index(s)
            index = self._index
        return index.provider_for(fqdn)

    @property
    def workers(self) -> int:
        """How many items of one CA a step works on at once."""
        return ca_workers(self.settings)


def ca_workers(settings: Settings) -> int:
    """How many orders of one CA a step works on at once."""
    return max(1, min(settings.per_ca_concurrency, settings.max_workers))


_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _shared_pool(size: int) -> ThreadPoolExecutor:
    """One thread pool per process for the steps (threads and their ACME sessions live on
    from step to step instead of being started again for each)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] < size:
            if _pool is not None:
                _pool[1].shutdown(wait=False)
            _pool = (size, ThreadPoolExecutor(max_workers=size, thread_name_prefix="acmeflow"))
        return _pool[1]


def _parallel(
    action: Callable[[OrderItem], None], items: Sequence[OrderItem], workers: int
) -> None:
    """``action`` on every item, at most ``workers`` at once."""
    if len(items) <= 1 or workers <= 1:
        for item in items:
            action(item)
        return
    queue = iter(items)
    lock = threading.Lock()

    def drain() -> None:
        while True:
            with lock:
                item = next(queue, None)
            if item is None:
                return
            action(item)

    runners = min(workers, len(items))
    pool = _shared_pool(runners)
    for future in [pool.submit(drain) for _ in range(runners)]:
        future.result()


def _met(item: OrderItem, step: str, exc: BaseException, batch: Batch) -> None:
    """Record ``exc`` for ``item``: retryable and time left: pending; else it drops out."""
    retryable = isinstance(exc, errors.AcmeflowError) and exc.retryable
    if retryable and not batch.deadline.expired():
        item.pending_error = exc
        log.info("%s: %s: %s (will retry)", item.label, step, exc)
    else:
        item.fail(step, exc)


def _each_item(
    batch: Batch, step: str, ctx: Context, work: Callable[[OrderItem], None], workers: int
) -> list[OrderItem]:
    """Run ``work`` on every item due at ``step`` (in parallel); returns the items done."""
    done: list[OrderItem] = []
    lock = threading.Lock()

    def one(item: OrderItem) -> None:
        try:
            batch.deadline.check(step.replace("_", " "))
            work(item)
        except Exception as exc:
            _met(item, step, exc, batch)
            return
        item.done, item.pending_error = step, None
        with lock:
            done.append(item)

    _parallel(one, batch.due(step), workers)
    return done


def _say(
    ctx: Context,
    batch: Batch,
    done: Sequence[OrderItem],
    one: Callable[[OrderItem], str],
    many: str,
) -> None:
    """Progress of a step: the item's own line in a batch of one, a count otherwise."""
    if len(batch.items) == 1:
        for item in done:
            ctx.progress(one(item))
    elif done:
        ctx.progress(many.format(count=len(done), total=len(batch.items)))


# --- the steps -------------------------------------------------------------------------------


def place_orders(batch: Batch, ctx: Context) -> None:
    """Create each order at the CA and read the DNS-01 challenges still to solve."""

    def place(item: OrderItem) -> None:
        session = ctx.acme(item.ca)
        replaces = item.renewal.replaces if item.renewal else None
        with session.within(batch.deadline), session.deadline(ctx.timeouts.order):
            if item.order is None:  # never resent: a retry after an answer only reads
                item.order = session.place_order(item.names, replaces=replaces)
            item.challenges = session.dns_challenges(item.order)

    done = _each_item(batch, "place_orders", ctx, place, ctx.workers)
    _say(
        ctx,
        batch,
        done,
        lambda i: f"order placed at {i.ca}: {', '.join(i.names)}",
        "orders placed: {count} of {total}",
    )
    reused = sum(len(i.order.authorization_urls) - len(i.challenges) for i in done if i.order)
    if reused:
        ctx.progress(f"{reused} authorization(s) reused")


def plan_txt_records(batch: Batch, ctx: Context) -> None:
    """Where each TXT value goes (CNAME delegation followed) and which provider writes it."""

    def plan(item: OrderItem) -> None:
        item.records = issuance.plan_challenge_records(
            item.challenges, ctx.lookup, ctx.provider_for, ctx.provider
        )

    _each_item(batch, "plan_txt_records", ctx, plan, ctx.settings.max_workers)


def add_txt_records(batch: Batch, ctx: Context) -> None:
    """Write every TXT value of the batch, journaled first: all of a provider's values in one
    exchange when it batches (RFC 2136: one UPDATE per zone), else one call each."""
    items = batch.due("add_txt_records")
    records = [r for item in items for r in item.records]
    failures: dict[tuple[str, str], errors.AcmeflowError] = {}

    def failed(record: ChallengeRecord, exc: errors.AcmeflowError) -> None:
        failures.setdefault(_record_key(record), exc)

    try:
        batch.deadline.check("adding TXT records")
        providers = ctx.providers(records)
    except Exception as exc:
        for item in items:
            _met(item, "add_txt_records", exc, batch)
        return
    ctx.journal.record(records)
    issuance.add_txt_records(
        records,
        providers,
        progress=ctx.progress if len(batch.items) == 1 else no_progress,
        on_error=failed,
        per_provider=ctx.settings.per_dns_provider_concurrency,
    )
    for item in items:
        error = next((failures[k] for k in map(_record_key, item.records) if k in failures), None)
        if error is None:
            item.done, item.pending_error = "add_txt_records", None
        else:
            _met(item, "add_txt_records", error, batch)
    written = sum(1 for item in items if item.error is None and item.pending_error is None)
    if len(batch.items) > 1:
        ctx.progress(
            f"TXT records written: {written} of {len(items)} order(s) ({len(records)} values)"
        )


def _record_key(record: ChallengeRecord) -> tuple[str, str]:
    return (record.target, record.value)


def await_propagation(batch: Batch, ctx: Context) -> None:
    """Wait until every authoritative nameserver serves every value of the batch (one check
    per zone for all of them); an item whose values are still missing at the timeout drops
    out with the reason (a silent server, or which values are missing where)."""
    items = batch.due("await_propagation")
    if not items:
        return
    records = [r for item in items for r in item.records]
    try:
        batch.deadline.check("propagation check")
        result = issuance.check_propagation(
            records, ctx.providers(records), ctx.lookup, ctx.timeouts, batch.deadline
        )
    except Exception as exc:
        for item in items:
            _met(item, "await_propagation", exc, batch)
        return
    for item in items:
        error = result.error_for(item.records)
        if error is None:
            item.done, item.pending_error = "await_propagation", None
        else:
            _met(item, "await_propagation", error, batch)
    seen = [i for i in items if i.done == "await_propagation"]
    values = sum(len(i.records) for i in seen)
    ctx.progress(f"propagation seen: {values} value(s) at every authoritative nameserver")


def answer_challenges(batch: Batch, ctx: Context) -> None:
    """Tell the CA each order's records are there and wait until it validated them."""

    def answer(item: OrderItem) -> None:
        session = ctx.acme(item.ca)
        with session.within(batch.deadline):
            session.answer_challenges(item.challenges, timeout=ctx.timeouts.validation)

    done = _each_item(batch, "answer_challenges", ctx, answer, ctx.workers)
    _say(
        ctx,
        batch,
        done,
        lambda i: f"validated: {len(i.challenges)} challenge(s)",
        "validated: {count} of {total} order(s)",
    )


def prepare_keys(batch: Batch, ctx: Context) -> None:
    """Now that the CA validated the names: each order's key and CSR (an uploaded CSR checked
    against its key; the stored key of a renewal that reuses it; else a new key, staged in the
    store's private folder), then the order journaled with its key reference."""

    def prepare(item: OrderItem) -> None:
        store = ctx.stores[item.store]
        if item.uploaded_csr is not None:
            parsed = load_csr(item.uploaded_csr.encode(), store.read_staging_key(item.ref))
            if sorted(parsed.names) != sorted(item.names):
                raise errors.InvalidCSR(detail="the CSR's names differ from the requested names")
            item.csr_pem = parsed.pem
        else:
            fields = CSRFields(**{**item.csr_fields, "names": item.names})
            if item.renewal is not None and item.renewal.reuse_key:
                key_pem = reused_key(store, item.renewal.folder)
            elif item.key_staged:
                key_pem = store.read_staging_key(item.ref)
            else:
                key_pem = generate_private_key(item.key_type)  # type: ignore[arg-type]
                store.write_staging_key(item.ref, key_pem)
            item.csr_pem = build_csr(key_pem, fields)

    done = _each_item(batch, "prepare_keys", ctx, prepare, ctx.settings.max_workers)
    journaled = [item for item in done if item.order is not None]
    if journaled:
        with ctx.database() as s:
            orders_in_flight.record(
                s,
                [_in_flight(i, ctx.stores[i.store]) for i in journaled],
                flow_run_id=ctx.flow_run_id,
            )
    _say(ctx, batch, done, _key_message, "keys ready: {count} of {total}")


def _key_message(item: OrderItem) -> str:
    if item.uploaded_csr is not None:
        return "uploaded CSR verified against its key"
    if item.renewal is not None and item.renewal.reuse_key:
        return "reusing the certificate's key"
    if item.key_staged:
        return "using the uploaded key"
    return f"generated a new {item.key_type} key"


def _in_flight(item: OrderItem, store: Store) -> orders_in_flight.OrderInFlight:
    assert item.order is not None
    return orders_in_flight.OrderInFlight(
        ref=item.ref,
        ca=item.ca,
        order_url=item.order.url,
        key_staged=item.holds_new_key,
        fields=_issued_set_fields(item, store),
    )


def finalize_orders(batch: Batch, ctx: Context) -> None:
    """Finalize each order with its CSR and download the certificate chain."""

    def finalize(item: OrderItem) -> None:
        assert item.order is not None and item.csr_pem is not None
        session = ctx.acme(item.ca)
        with session.within(batch.deadline):
            item.issued = session.finalize(item.order, item.csr_pem, timeout=ctx.timeouts.finalize)

    done = _each_item(batch, "finalize_orders", ctx, finalize, ctx.workers)
    _say(
        ctx,
        batch,
        done,
        lambda _i: "finalized: certificate downloaded",
        "finalized: {count} of {total}",
    )


def store_certificates(batch: Batch, ctx: Context) -> None:
    """Write each certificate (with its staged key) into its store and record it; a renewal
    replaces the set in service only now, in the same folder, and clears its backoff."""

    def store(item: OrderItem) -> None:
        assert item.issued is not None
        target = ctx.stores[item.store]
        fields = _issued_set_fields(item, target)
        key_pem = target.read_staging_key(item.ref) if item.holds_new_key else None
        renewal = item.renewal

        def also(cert_id: int) -> None:
            if renewal is not None:
                renewals.record_success(s, cert_id, now=batch.now, renew_days=renewal.renew_days)
            orders_in_flight.forget(s, [item.ref])

        with ctx.database() as s:
            if item.lease_key is not None:  # another run took over: it must not write
                leases.ensure_held(s, item.lease_key, owner=batch.owner)
            item.saved = save_issued(s, issued_set_from(fields, item.issued, key_pem), also)
        target.discard_staging_key(item.ref)
        if item.renewal is not None:
            loose = place_folder(item.renewal, target)[1]
            if loose is not None:
                adopt_loose_file(target, item.saved.folder, loose, item.renewal.serial)

    done = _each_item(batch, "store_certificates", ctx, store, STORE_WORKERS)
    if len(batch.items) == 1:
        for item in done:
            assert item.saved is not None
            ctx.progress(
                f"stored in the {item.store} store: {item.saved.folder} "
                f"(certificate {item.saved.certificate_id})"
            )
    elif done:
        ctx.progress(f"stored: {len(done)} of {len(batch.items)}")


def _issued_set_fields(item: OrderItem, store: Store) -> dict[str, Any]:
    """What :func:`save_issued` needs besides the certificate and the key (JSON-ready: it is
    journaled with the order)."""
    renewal = item.renewal
    return {
        "ca": item.ca,
        "store": item.store,
        "names": item.names,
        "log_id": item.log_id,
        "enrollment": item.enrollment,
        "csr_fields": item.csr_fields,
        "reuse_key": renewal.reuse_key if renewal else False,
        "certificate_id": renewal.certificate_id if renewal else None,
        "folder": str(place_folder(renewal, store)[0]) if renewal else None,
        "renew_days": renewal.renew_days if renewal else None,
        "lease_key": item.lease_key,
    }


@dataclass(frozen=True)
class Step:
    """One step of the sequence: its name (the Prefect task's) and what it does."""

    name: str
    run: Callable[[Batch, Context], None]


SEQUENCE: tuple[Step, ...] = (
    Step("place_orders", place_orders),
    Step("plan_txt_records", plan_txt_records),
    Step("add_txt_records", add_txt_records),
    Step("await_propagation", await_propagation),
    Step("answer_challenges", answer_challenges),
    Step("prepare_keys", prepare_keys),
    Step("finalize_orders", finalize_orders),
    Step("store_certificates", store_certificates),
)
STEP_POSITION = {"opened": 0, **{step.name: n for n, step in enumerate(SEQUENCE, start=1)}}


# --- after each step, and at the end ---------------------------------------------------------


def settle(batch: Batch, ctx: Context, *, final: bool) -> int:
    """After a step: with ``final`` (no retry left, or the deadline spent) the items still
    pending drop out with their last error; every item that dropped out is recorded (history
    closed with its step and catalog message, a renewal backed off, its staged key deleted) in
    one transaction. Returns how many items still wait for a retry."""
    for item in batch.waiting():
        if final or batch.deadline.expired():
            assert item.pending_error is not None
            item.fail(item.done_next, item.pending_error)
    record_failures(batch, ctx)
    return len(batch.waiting())


def record_failures(batch: Batch, ctx: Context) -> None:
    """Write what newly failed items need: history, backoff, no staged key, no journal row.

    An item the CA already issued (it failed storing) keeps its journal row and staged key:
    the certificate is stored by :func:`recover_orders` later, never lost.
    """
    fresh = [item for item in batch.failed() if not item.recorded]
    if not fresh:
        return
    dropped = [item for item in fresh if item.issued is None]
    with ctx.database() as s:
        for item in fresh:
            assert item.error is not None
            log_failure(s, item.log_id, item.error, step=item.failed_at)
            if item.renewal is not None:
                item.next_attempt_at = renewals.record_failure(
                    s,
                    item.renewal.certificate_id,
                    errors.describe_failure(item.error)[0],
                    now=batch.now,
                    retry_after=getattr(item.error, "retry_after", None),
                )
        orders_in_flight.forget(s, [item.ref for item in dropped])
    for item in fresh:
        item.recorded = True
        if item.issued is None and item.holds_new_key:
            ctx.stores[item.store].discard_staging_key(item.ref)
        message, detail, _cause = errors.describe_failure(item.error)  # type: ignore[arg-type]
        kept = "" if item.issued is None else "; the issued certificate is kept for recovery"
        ctx.progress(
            f"{item.label} failed at {item.failed_at}: {message}"
            + (f" ({detail})" if detail else "")
            + kept,
            problem=True,
        )


def clean_up(batch: Batch, ctx: Context, interrupted: BaseException | None = None) -> list[str]:
    """Always, after the steps: remove every TXT value the batch wrote (journal updated); an
    item the run left unfinished (``interrupted``: the exception that stopped the run) is
    failed and recorded. Never raises; returns the cleanup problems."""
    for item in batch.going():
        if item.saved is None and STEP_POSITION[item.done] < len(SEQUENCE):
            cause = interrupted or errors.RunInterrupted()
            item.fail(item.done_next, cause)
    try:
        record_failures(batch, ctx)
    except Exception as exc:  # the sweep closes what could not be recorded here
        log.warning("could not record the failed orders: %s", type(exc).__name__)
    try:
        release_leases(batch, ctx)
    except Exception as exc:  # an unreleased lease expires by itself
        log.warning("could not release the batch's leases: %s", type(exc).__name__)
    records = [r for item in batch.items if not item.cleaned for r in item.records]
    if not records:
        return []
    try:
        providers = ctx.providers(records)
    except Exception as exc:
        ctx.progress(
            f"TXT records not cleaned up: {exc} (`acmeflow sweep` removes them later)", problem=True
        )
        return [str(exc)]
    problems = issuance.cleanup_txt_records(
        records,
        providers,
        ctx.progress,
        ctx.journal,
        per_provider=ctx.settings.per_dns_provider_concurrency,
    )
    for item in batch.items:
        item.cleaned = True
    return problems


def run_steps(batch: Batch, ctx: Context, retries: int = 2) -> Batch:
    """The whole sequence without Prefect (scripts, benchmarks): each step, retried up to
    ``retries`` times for its pending items, then the cleanup."""
    interrupted: BaseException | None = None
    try:
        for step in SEQUENCE:
            for attempt in range(retries + 1):
                step.run(batch, ctx)
                if not settle(batch, ctx, final=attempt == retries):
                    break
    except BaseException as exc:
        interrupted = exc
        raise
    finally:
        clean_up(batch, ctx, interrupted)
    return batch


# --- opening ---------------------------------------------------------------------------------


def open_renewals(jobs: Sequence[RenewalJob], ctx: Context, batch: Batch) -> None:
    """Add an item per job to ``batch``: its lease taken (held by another run: skipped, and
    the history says by whom), checked again (names, CA, DNS mapping: the configuration may
    have changed since the plan) and its history entry opened, all in one transaction. A job
    that fails its check is an item failed at ``check_request``."""
    with ctx.database() as s:
        unclaimed = renewals.lock_unclaimed(s, [job.certificate_id for job in jobs])
        # leases in certificate order: two runs opening overlapping batches at once can never
        # deadlock on each other's lease rows
        for job in sorted(jobs, key=lambda job: job.certificate_id):
            entry = history.log_start(
                s,
                kind="renew",
                names=job.names,
                ca_name=job.ca,
                store=job.store,
                certificate_id=job.certificate_id,
                flow_run_id=ctx.flow_run_id,
            )
            item = OrderItem(
                ref=f"renew-{job.certificate_id}-{uuid.uuid4().hex[:12]}",
                ca=job.ca,
                names=job.names,
                store=job.store,
                log_id=entry.id,
                key_type=job.key_type,
                csr_fields=dict(job.csr_fields),
                enrollment=job.enrollment,
                renewal=job,
            )
            batch.items.append(item)
            why: str | None
            if job.certificate_id not in unclaimed:  # another run is opening it right now
                why = errors.LeaseHeld(
                    f"certificate {job.certificate_id}", "another run (claiming it now)"
                ).message
            else:
                try:
                    leases.acquire(
                        s,
                        leases.certificate_key(job.certificate_id),
                        what=f"certificate {job.certificate_id}",
                        owner=batch.owner,
                        flow_run_id=ctx.flow_run_id,
                        ttl=batch.lease_ttl,
                    )
                    item.lease_key = leases.certificate_key(job.certificate_id)
                    # a run that held the lease before us may have renewed it
                    why = _renewed_since_plan(s, job)
                except errors.LeaseHeld as held:
                    why = held.message
            if why is not None:
                item.skipped = why
                history.log_finish(s, entry, status="skipped", message=why)
                continue
            try:
                item.names = check_names_ca_and_dns(
                    s, ca=job.ca, names=job.names, store=job.store
                ).names
            except Exception as exc:
                item.fail("check_request", exc)
    leased = {i.renewal.certificate_id: i for i in batch.going() if i.renewal is not None}
    recovered = recover_orders(
        ctx,
        now=batch.now,
        owner=batch.owner,
        match=lambda o: o.fields.get("certificate_id") in leased,
        keep_leases=True,
    )
    for done in recovered:
        _finish_recovered(leased[done.order.fields["certificate_id"]], done, ctx, batch)


def _renewed_since_plan(s: Session, job: RenewalJob) -> str | None:
    """Why ``job`` must not run when its certificate was renewed after the run planned it (a
    run that finished and gave the lease back between this run's plan and its lease), else
    ``None``."""
    current = s.get(Certificate, job.certificate_id)
    if current is None or current.serial == job.serial:
        return None
    return (
        f"certificate {job.certificate_id} already renewed by another run since this run "
        f"planned it (serial {current.serial})"
    )


def open_issue(batch: Batch, ctx: Context) -> None:
    """Take the lease of each item's name set (held by another run: raises
    :class:`~core.errors.LeaseHeld`, the history says it was skipped), then recover the
    order of an earlier run of the same request that a crash interrupted after finalize (its
    certificate is stored instead of ordering again)."""
    for item in batch.going():
        key = leases.names_key(item.names)
        try:
            with ctx.database() as s:
                leases.acquire(
                    s,
                    key,
                    what=", ".join(item.names),
                    owner=batch.owner,
                    flow_run_id=ctx.flow_run_id,
                    ttl=batch.lease_ttl,
                )
        except errors.LeaseHeld as held:
            with ctx.database() as s:  # its own transaction: the failed one rolled back
                entry = history.get_log_entry(s, item.log_id)
                history.log_finish(s, entry, status="skipped", message=held.message)
            item.skipped = held.message
            raise
        item.lease_key = key

    def same_request(order: OrderInFlight) -> OrderItem | None:
        fields = order.fields
        return next(
            (
                i
                for i in batch.going()
                if fields.get("lease_key") == i.lease_key
                and fields.get("ca") == i.ca
                and fields.get("store") == i.store
                and not fields.get("certificate_id")
            ),
            None,
        )

    recovered = recover_orders(
        ctx,
        now=batch.now,
        owner=batch.owner,
        match=lambda o: same_request(o) is not None,
        keep_leases=True,
    )
    for done in recovered:
        owner = same_request(done.order)
        if owner is not None:
            _finish_recovered(owner, done, ctx, batch)


def _finish_recovered(item: OrderItem, done: Recovered, ctx: Context, batch: Batch) -> None:
    """``item`` is done by an interrupted run's order: its certificate, or nothing to do."""
    if done.saved is None:
        return  # the order was dropped: this run orders anew
    item.saved = done.saved
    item.done = SEQUENCE[-1].name
    with ctx.database() as s:
        history.log_finish(
            s,
            history.get_log_entry(s, item.log_id),
            status="skipped",
            message=f"certificate {done.saved.certificate_id} recovered from an interrupted run",
        )


def release_leases(batch: Batch, ctx: Context) -> None:
    """Give back every lease the batch's items hold."""
    keys = [item.lease_key for item in batch.items if item.lease_key is not None]
    if keys:
        with ctx.database() as s:
            leases.release(s, keys, owner=batch.owner)
        for item in batch.items:
            item.lease_key = None


# --- results ---------------------------------------------------------------------------------


def job_outcome(job: RenewalJob, why: str, status: str = "skipped") -> RenewalOutcome:
    """A renewal that did not go through this run's steps: ``status`` and why (skipped: a
    run did not start it, another run holds it, or it is no longer due)."""
    return RenewalOutcome(
        certificate_id=job.certificate_id,
        names=job.names,
        ca=job.ca,
        status=status,
        message=why,
        old_serial=job.serial,
    )


def renewal_outcome(item: OrderItem) -> RenewalOutcome:
    """What happened to a renewal item."""
    job = item.renewal
    assert job is not None
    if item.skipped is not None:
        return job_outcome(job, item.skipped)
    if item.saved is not None:
        return RenewalOutcome(
            certificate_id=job.certificate_id,
            names=job.names,
            ca=job.ca,
            status="renewed",
            message=job.reason,
            old_serial=job.serial,
            serial=item.saved.info.serial,
            not_after=item.saved.info.not_after,
        )
    message, detail, _cause = errors.describe_failure(item.error or errors.RunInterrupted())
    return RenewalOutcome(
        certificate_id=job.certificate_id,
        names=job.names,
        ca=job.ca,
        status="failed",
        message=message,
        detail=f"at {item.failed_at}: {detail}" if detail else f"at {item.failed_at}",
        old_serial=job.serial,
        next_attempt_at=item.next_attempt_at,
    )


def spread_batches(batches: Sequence[list[RenewalJob]], ways: int) -> list[list[list[RenewalJob]]]:
    """``batches`` dealt round-robin into at most ``ways`` groups (one per worker)."""
    groups: list[list[list[RenewalJob]]] = [[] for _ in range(max(1, min(ways, len(batches))))]
    for n, batch in enumerate(batches):
        groups[n % len(groups)].append(batch)
    return groups


def renewal_batches(
    jobs: Sequence[RenewalJob], size: int, caps: Mapping[str, int] | None = None
) -> list[list[RenewalJob]]:
    """``jobs`` grouped by CA vendor, in batches of at most ``size`` (and at most
    ``caps[ca]`` for a CA whose pool-wide limits allow fewer orders at once)."""
    by_ca: dict[str, list[RenewalJob]] = {}
    for job in jobs:
        by_ca.setdefault(job.ca, []).append(job)
    batches = []
    for ca, group in by_ca.items():
        step = max(1, min(size, (caps or {}).get(ca, size)))
        batches += [group[n : n + step] for n in range(0, len(group), step)]
    return batches

"""Prefect tasks of the ``renew`` flow: plan (select, ask ARI, check DNS mapping) and renew one
certificate with the same core steps as ``issue``.

One certificate is one task run (``renew_certificate-<id>``) whose log shows every step. The
steps are the core's (:func:`core.issuance.issue_certificate`), the same code the ``issue``
flow's tasks call one by one, without eleven nested task runs per certificate (which cost a
third of the wall time of a 200-certificate run and flood the API server of a large
inventory). Checks and loading happen in one transaction, the result is stored and recorded
in another: a bulk run spends its time at the CA, not on small queries. A failed renewal is
not retried by Prefect: it is backed off per certificate.

Concurrency limits are process-local ``threading.BoundedSemaphore`` objects sized from the
settings (``per_ca_concurrency``, ``per_dns_provider_concurrency``): they need no server-side
setup and hold for every flow run in this process. A renewal holds its CA's slot and the slot
of every DNS provider its names use (taken in sorted order, so two renewals never deadlock).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from acmeflow.core import errors, issuance, renewal_plan
from acmeflow.core.accounts import session_for_ca
from acmeflow.core.acme_client import AcmeSession
from acmeflow.core.dnsprovider import DNSProvider
from acmeflow.core.keys import (
    CSRFields,
    build_csr,
    generate_private_key,
)
from acmeflow.core.orders import IssuedSet, check_names_ca_and_dns, log_failure, save_issued
from acmeflow.core.renewal_plan import (
    RenewalJob,
    RenewalOutcome,
    RenewalPlan,
    log_outcome,
    parse_now,
    renew_log,
)
from acmeflow.core.state import certificates, history, provider_index, renewals
from acmeflow.core.stores import (
    CERT_FILE,
    PREVIOUS_DIR,
    CertificateStore,
    stores_from_settings,
)
from acmeflow.providers.configured import ConfiguredProviders
from acmeflow.tasks.common import (
    challenge_journal,
    current_flow_run_id,
    db,
    dns_lookup,
    order_timeouts,
    progress,
    settings,
)

STEP = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="plan_renewals", **STEP)  # type: ignore[call-overload]
def plan_renewals(*, ca: str | None, certificate_ids: list[int] | None, now: str) -> RenewalPlan:
    """Select the certificates to renew at ``now`` (see :func:`core.renewal_plan.plan_renewals`)."""
    return renewal_plan.plan_renewals(
        ca=ca,
        certificate_ids=certificate_ids,
        at=parse_now(now),
        flow_run_id=current_flow_run_id(),
        progress=progress,
    )


# --- concurrency limits ------------------------------------------------------------------------

_limits: dict[tuple[str, str, int], threading.BoundedSemaphore] = {}
_limits_lock = threading.Lock()


def _semaphore(kind: str, name: str, size: int) -> threading.BoundedSemaphore:
    with _limits_lock:
        key = (kind, name, size)
        if key not in _limits:
            _limits[key] = threading.BoundedSemaphore(size)
        return _limits[key]


@contextlib.contextmanager
def concurrency_slots(ca: str, providers: Sequence[str]) -> Iterator[None]:
    """Hold one slot of the CA and one of each DNS provider (sorted: no deadlock)."""
    conf = settings()
    wanted = [_semaphore("ca", ca, conf.per_ca_concurrency)] + [
        _semaphore("dns", p, conf.per_dns_provider_concurrency) for p in sorted(set(providers))
    ]
    taken: list[threading.BoundedSemaphore] = []
    try:
        for sem in wanted:
            sem.acquire()
            taken.append(sem)
        yield
    finally:
        for sem in reversed(taken):
            sem.release()


# --- one renewal -------------------------------------------------------------------------------


def _managed_folder(target: CertificateStore, folder: str) -> Path | None:
    """The acmeflow folder a certificate lives in, or ``None`` for a loose file."""
    path = Path(folder)
    if path.name == CERT_FILE:
        path = path.parent
    if path.is_dir() and path.parent.resolve() == target.root.resolve():
        return path
    return None


def _reused_key(target: CertificateStore, folder: str) -> bytes:
    """The certificate's current key, for a renewal that reuses it (it stays on disk)."""
    managed = _managed_folder(target, folder)
    if managed is None:
        raise errors.InvalidKey(
            detail=f"{folder}: the certificate is set to reuse its key, but no privkey.pem is "
            "stored with it"
        )
    try:
        return target.read(managed).privkey.read_bytes()
    except FileNotFoundError:
        raise errors.InvalidKey(detail=f"no private key to reuse in {managed}") from None


def _place_folder(job: RenewalJob, target: CertificateStore) -> tuple[Path, Path | None]:
    """The folder the renewed set goes to, and the loose file it replaces (if any).

    A certificate the scan found in acmeflow's layout renews in its folder; a loose file
    (placed by hand) moves into a new acmeflow folder of the same store on its first renewal.
    """
    managed = _managed_folder(target, job.folder)
    if managed is not None:
        return managed, None
    return target.folder_for(job.names), Path(job.folder)


def _adopt_loose_file(target_folder: Path, loose: Path, serial: str | None) -> None:
    """Keep a replaced loose certificate file as a previous version of its new folder."""
    if not loose.is_file():
        return
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    dest = target_folder / PREVIOUS_DIR / f"{stamp}-{serial or 'unknown'}-adopted"
    dest.mkdir(parents=True, mode=0o700)
    shutil.move(str(loose), dest / loose.name)


@dataclass
class _Started:
    """A renewal past its checks: history entry, ACME session, DNS providers, all loaded in
    one transaction (a bulk run would otherwise spend its time on small queries)."""

    log_id: int
    names: list[str]
    acme: AcmeSession
    index: provider_index.ProviderIndex
    providers: dict[str, DNSProvider]

    def provider_for(self, fqdn: str) -> str:
        """The provider writing ``fqdn`` (a CNAME target may use one the names do not)."""
        name = self.index.providers_for([fqdn])[fqdn]
        if name not in self.providers:
            with db() as s:
                self.providers[name] = ConfiguredProviders(s).get(name)
        return name


class _CheckFailed(Exception):
    """A check failed before anything was ordered (already logged in the history)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _start(job: RenewalJob) -> _Started:
    """Check names, CA and DNS mapping again (the configuration may have changed since the
    plan), load the ACME session and the DNS providers, then open the history entry, in one
    transaction. A failed check is logged in the history and raised as :class:`_CheckFailed`.

    The entry is written last, so no write lock is held while a missing ACME account is
    registered at the CA.
    """
    conf = settings()
    failure: Exception | None = None
    with db() as s:
        try:
            checked = check_names_ca_and_dns(s, ca=job.ca, names=job.names, store=job.store)
            names, index = checked.names, checked.index
            wanted = set(checked.providers.values())
            acme = session_for_ca(s, checked.ca, conf)
            configured = ConfiguredProviders(s)
            providers = {name: configured.get(name) for name in sorted(wanted)}
        except Exception as exc:
            failure = exc
        entry = history.log_start(
            s,
            kind="renew",
            names=job.names,
            ca_name=job.ca,
            store=job.store,
            certificate_id=job.certificate_id,
            flow_run_id=current_flow_run_id(),
        )
        if failure is not None:
            log_failure(s, entry.id, failure)
        log_id = entry.id
    if failure is not None:
        raise _CheckFailed(failure)
    progress(f"request checked: {', '.join(names)} via {', '.join(sorted(wanted))}")
    return _Started(log_id=log_id, names=names, acme=acme, index=index, providers=providers)


def _renewal_csr(
    job: RenewalJob, names: list[str], target: CertificateStore
) -> tuple[bytes, bytes | None]:
    """(CSR, new key): a new ``key_type`` key, or the stored key (``reuse_key``; new key None).

    A new key stays in memory until the store writes it with the certificate.
    """
    fields = CSRFields(**{**job.csr_fields, "names": names})
    if job.reuse_key:
        progress("reusing the certificate's key")
        return build_csr(_reused_key(target, job.folder), fields), None
    key_pem = generate_private_key(job.key_type)  # type: ignore[arg-type]
    progress(f"generated a new {job.key_type} key")
    return build_csr(key_pem, fields), key_pem


def _record_failed_attempt(
    job: RenewalJob, exc: BaseException, log_id: int | None, at: dt.datetime
) -> None:
    """Close the history entry (if still open), count the failure and back off."""
    message = (
        exc.message
        if isinstance(exc, errors.AcmeflowError)
        else f"Unexpected failure: {type(exc).__name__}"
    )
    with db() as s:
        if log_id is not None:
            log_failure(s, log_id, exc)
        next_at = renewals.record_failure(
            s, job.certificate_id, message, now=at, retry_after=getattr(exc, "retry_after", None)
        )
    renew_log.warning(
        "failed: certificate %s (%s): %s; next attempt after %s",
        job.certificate_id,
        ", ".join(job.names),
        message,
        f"{next_at:%Y-%m-%d %H:%M}" if next_at else "?",
    )


@task(name="renew_certificate", task_run_name="renew_certificate-{job.certificate_id}", **STEP)  # type: ignore[call-overload]
def renew_certificate(job: RenewalJob, now: str) -> RenewalOutcome:
    """Renew one certificate: same names, CSR fields, store, enrollment; a new key unless it
    reuses its key; ``replaces`` sent when the CA knows the old certificate (ARI).

    The steps are the core's (:func:`core.issuance.issue_certificate`: order, present every
    TXT value, check every authoritative nameserver, answer, finalize, always clean up). The
    certificate in service is replaced only after the CA issued the new one, and its record
    is updated in the same transaction. A failure is logged, counted and backed off, then
    raised (this task fails, the other renewals of the run go on).
    """
    at = parse_now(now)
    log_id: int | None = None
    with concurrency_slots(job.ca, job.providers):
        try:
            started = _start(job)
            log_id = started.log_id
            target = stores_from_settings(settings())[job.store]
            folder, loose = _place_folder(job, target)
            csr, key_pem = _renewal_csr(job, started.names, target)
            issued = issuance.issue_certificate(
                started.acme,
                csr,
                lookup=dns_lookup(),
                provider_for=started.provider_for,
                providers=started.providers,
                timeouts=order_timeouts(),
                replaces=job.replaces,
                progress=progress,
                journal=challenge_journal(),
            )
            with db() as s:
                saved = save_issued(
                    s,
                    IssuedSet(
                        ca=job.ca,
                        store=job.store,
                        names=started.names,
                        issued=issued,
                        key_pem=key_pem,
                        log_id=log_id,
                        enrollment=job.enrollment,
                        csr_fields=job.csr_fields,
                        reuse_key=job.reuse_key,
                        certificate_id=job.certificate_id,
                        folder=folder,
                    ),
                )
                renewals.record_success(s, job.certificate_id, now=at, renew_days=job.renew_days)
            progress(f"stored in the {job.store} store: {saved.folder}")
            if loose is not None:
                _adopt_loose_file(folder, loose, job.serial)
        except _CheckFailed as failed:
            _record_failed_attempt(job, failed.cause, None, at)
            raise failed.cause from None
        except BaseException as exc:
            _record_failed_attempt(job, exc, log_id, at)
            raise
    outcome = RenewalOutcome(
        certificate_id=job.certificate_id,
        names=job.names,
        ca=job.ca,
        status="renewed",
        message=job.reason,
        old_serial=job.serial,
        serial=saved.info.serial,
        not_after=saved.info.not_after,
    )
    log_outcome(outcome)
    return outcome


def failed_outcome(job: RenewalJob, exc: BaseException) -> RenewalOutcome:
    """The outcome of a renewal whose task failed with ``exc`` (next attempt from the row)."""
    with db() as s:
        cert = certificates.get_certificate(s, job.certificate_id)
        next_at = cert.next_attempt_at
    message, detail, _cause = errors.describe_failure(exc)
    return RenewalOutcome(
        certificate_id=job.certificate_id,
        names=job.names,
        ca=job.ca,
        status="failed",
        message=message,
        detail=detail,
        old_serial=job.serial,
        next_attempt_at=next_at,
    )

"""Renewal planning (F6): which certificates renew now, which are skipped and why, and the
plain data handed from the plan to the renewal steps (no secrets: names, CA, store, choices).

A certificate is due inside its CA's ARI window (RFC 9773) when the CA offers ARI, else at
``not_after - renew_days``; names mapped to no DNS provider, or no active provider at all,
skip it (logged in the history).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from acmeflow.config.settings import get_settings
from acmeflow.core import ari, errors, renewal
from acmeflow.core.accounts import endpoint_for
from acmeflow.core.keys import DEFAULT_KEY_TYPE, KEY_TYPES, CSRFields
from acmeflow.core.state import certificates, history, provider_index, renewals
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import CAVendor

Progress = Callable[[str], None]
renew_log = logging.getLogger("acmeflow.renew")

_CSR_SUBJECT_FIELDS = frozenset(CSRFields.model_fields) - {"names"}


# --- plain data passed between the flow and its tasks ----------------------------------------


@dataclass(frozen=True)
class RenewalJob:
    """One certificate to renew now (no secrets: names, CA, store and choices only)."""

    certificate_id: int
    names: list[str]
    ca: str
    store: str
    folder: str
    enrollment: str
    key_type: str
    reuse_key: bool
    csr_fields: dict[str, Any]
    replaces: str | None  # the ARI id of the certificate being replaced (RFC 9773)
    providers: list[str]  # DNS providers the names use (for the concurrency limits)
    renew_days: int | None
    reason: str
    serial: str | None = None


@dataclass(frozen=True)
class RenewalOutcome:
    """What happened to one certificate in a run."""

    certificate_id: int
    names: list[str]
    ca: str | None
    status: str  # renewed | failed | skipped
    message: str
    detail: str | None = None
    old_serial: str | None = None
    serial: str | None = None
    not_after: dt.datetime | None = None
    next_attempt_at: dt.datetime | None = None

    def as_row(self) -> dict[str, Any]:
        """A JSON-ready row for tables and ``--json``."""
        return {
            "id": self.certificate_id,
            "names": ", ".join(self.names),
            "ca": self.ca or "",
            "status": self.status,
            "message": self.message,
            "detail": self.detail or "",
            "old_serial": self.old_serial or "",
            "serial": self.serial or "",
            "not_after": self.not_after.isoformat() if self.not_after else "",
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else "",
        }


@dataclass(frozen=True)
class RenewalPlan:
    """The plan of a run: who renews now, who is skipped and why, how many are not due."""

    jobs: list[RenewalJob]
    skipped: list[RenewalOutcome] = field(default_factory=list)
    not_due: int = 0
    considered: int = 0
    ari_checked: int = 0


def parse_now(now: str | None) -> dt.datetime:
    """The run's clock: ``now`` (ISO 8601; naive means UTC) or the current time."""
    if now is None:
        return dt.datetime.now(dt.UTC)
    try:
        value = dt.datetime.fromisoformat(now)
    except ValueError:
        raise errors.ConfigError(detail=f"now must be an ISO 8601 time (got {now!r})") from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# --- planning ----------------------------------------------------------------------------------


def log_outcome(outcome: RenewalOutcome) -> None:
    """Log what happened to one certificate (logger ``acmeflow.renew``, shown by the CLI)."""
    text = f"{outcome.status}: certificate {outcome.certificate_id} ({', '.join(outcome.names)})"
    if outcome.status == "renewed":
        text += f", serial {outcome.serial}"
    else:
        text += f": {outcome.message}"
    progress_level = logging.INFO if outcome.status == "renewed" else logging.WARNING
    renew_log.log(progress_level, text)


def _skip(
    cand: renewals.RenewalCandidate,
    exc: errors.AcmeflowError,
    at: dt.datetime,
    flow_run_id: str | None,
) -> RenewalOutcome:
    status = "skipped"
    with session_scope(open_database()) as s:
        entry = history.log_start(
            s,
            kind="renew",
            names=cand.names,
            ca_name=cand.ca_name,
            store=cand.store,
            certificate_id=cand.id,
            flow_run_id=flow_run_id,
        )
        history.log_finish(
            s, entry, status=status, message=exc.message, detail=exc.detail, root_cause=exc.code
        )
        renewals.record_skip(s, cand.id, exc.message, now=at)
    outcome = RenewalOutcome(cand.id, cand.names, cand.ca_name, status, exc.message, exc.detail)
    log_outcome(outcome)
    return outcome


def _key_type(cand: renewals.RenewalCandidate) -> str:
    return cand.key_type if cand.key_type in KEY_TYPES else DEFAULT_KEY_TYPE


def _csr_fields(cand: renewals.RenewalCandidate) -> dict[str, Any]:
    fields = {k: v for k, v in cand.csr_fields.items() if k in _CSR_SUBJECT_FIELDS}
    if not fields.get("common_name") and cand.common_name in cand.names:
        fields["common_name"] = cand.common_name
    return fields


def _check_ari(
    work: list[tuple[renewals.RenewalCandidate, Any]], at: dt.datetime
) -> dict[int, renewal.AriResult]:
    """Ask the CAs for the ARI windows of ``work`` ((candidate, endpoint) pairs) in parallel."""
    if not work:
        return {}
    workers = max(1, min(get_settings().max_workers, len(work)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ari") as pool:
        futures = {
            cand.id: pool.submit(ari.fetch_renewal_info, endpoint, str(cand.ari_cert_id), at)
            for cand, endpoint in work
        }
        return {cert_id: f.result() for cert_id, f in futures.items()}


def plan_renewals(
    *,
    ca: str | None,
    certificate_ids: list[int] | None,
    at: dt.datetime,
    flow_run_id: str | None,
    progress: Progress,
    due_only: bool = False,
) -> RenewalPlan:
    """Select the certificates to renew at ``now``: due ones (ARI window or ``renew_days``),
    or exactly ``certificate_ids`` (on demand, any enrollment; with ``due_only`` those of
    them still due: a share another run handed out). Names mapped to no DNS provider, or no
    active provider at all, skip a certificate (logged in the history)."""
    conf = get_settings()
    by_id = certificate_ids is not None
    forced = by_id and not due_only
    with session_scope(open_database()) as s:
        if by_id:
            cands = renewals.candidates_by_id(s, certificate_ids or [], ca=ca)
            cas = {c.id: c for c in renewals.renewal_cas(s) if c.id in {x.ca_id for x in cands}}
        else:
            cas = {c.id: c for c in renewals.renewal_cas(s, ca)}
        endpoints = {ca_id: endpoint_for(row, conf) for ca_id, row in cas.items()}
        ari_cas = {ca_id for ca_id, ep in endpoints.items() if ari.ca_offers_ari(ep)}
        if not by_id:
            cands = renewals.due_candidates(s, now=at, cas=list(cas.values()), ari_ca_ids=ari_cas)
        index = provider_index.provider_index(s)
        ca_rows: dict[int, CAVendor] = dict(cas)

    # ARI: ask where the stored answer is stale (Retry-After passed) or missing
    work = [
        (c, endpoints[c.ca_id])
        for c in cands
        if c.ca_id in ari_cas
        and renewal.ari_check_needed(c.ari_cert_id, c.ari_checked_at, c.ari_retry_after, at)
    ]
    fresh = _check_ari(work, at)
    for result in fresh.values():
        if result.error:
            progress(f"ARI check failed, falling back to renew_days: {result.error}")

    jobs: list[RenewalJob] = []
    skipped: list[RenewalOutcome] = []
    not_due = 0
    due_times: dict[int, dt.datetime | None] = {}
    ari_updates: list[tuple[int, renewal.AriResult, dt.datetime | None]] = []
    for cand in cands:
        if cand.ca_id is None or cand.ca_id not in ca_rows:
            exc = errors.CAConfigMissing(
                detail=f"certificate {cand.id} has no active CA vendor to renew through"
            )
            skipped.append(_skip(cand, exc, at, flow_run_id))
            continue
        ca_row = ca_rows[cand.ca_id]
        answer = fresh.get(cand.id)
        window = answer.window if answer is not None else cand.ari_window
        if cand.ca_id not in ari_cas:
            window = None
        decision = renewal.is_due(cand, ca_row, window, at)
        if answer is not None:
            ari_updates.append((cand.id, answer, decision.due_at))
        else:
            due_times[cand.id] = decision.due_at
        if not decision.due and not forced:
            not_due += 1
            continue
        try:
            providers = index.providers_for(cand.names)
        except errors.AcmeflowError as exc:
            skipped.append(_skip(cand, exc, at, flow_run_id))
            continue
        jobs.append(
            RenewalJob(
                certificate_id=cand.id,
                names=cand.names,
                ca=ca_row.name,
                store=cand.store,
                folder=cand.folder,
                enrollment=cand.enrollment,
                key_type=_key_type(cand),
                reuse_key=cand.reuse_key,
                csr_fields=_csr_fields(cand),
                # `replaces` only when this CA answered ARI for the certificate: it knows it
                replaces=cand.ari_cert_id if window is not None else None,
                providers=sorted(set(providers.values())),
                renew_days=ca_row.renew_days,
                reason="renewal requested" if forced and not decision.due else decision.reason,
                serial=None,
            )
        )
    with session_scope(open_database()) as s:
        for cert_id, result, due_at in ari_updates:
            renewals.record_ari(s, cert_id, result, renewal_due_at=due_at)
        renewals.record_due(s, due_times)
        serials = {
            j.certificate_id: certificates.get_certificate(s, j.certificate_id).serial for j in jobs
        }
    jobs = [RenewalJob(**{**j.__dict__, "serial": serials.get(j.certificate_id)}) for j in jobs]
    progress(
        f"renewal plan: {len(jobs)} due, {len(skipped)} skipped, {not_due} not due yet "
        f"({len(cands)} considered, {len(fresh)} ARI check(s))"
    )
    return RenewalPlan(
        jobs=jobs, skipped=skipped, not_due=not_due, considered=len(cands), ari_checked=len(fresh)
    )


_OUTCOME_OF_STATUS = {"success": "renewed", "failed": "failed", "skipped": "skipped"}


def outcomes_of_run(flow_run_id: str) -> list[RenewalOutcome]:
    """What run ``flow_run_id`` did to the certificates it renewed, from the history (the
    run of a share another run handed out); an entry still running counts as failed."""
    with session_scope(open_database()) as s:
        entries = history.entries_of_run(s, flow_run_id, kind="renew")
        return [
            RenewalOutcome(
                certificate_id=e.certificate_id,
                names=list(e.names),
                ca=e.ca_name,
                status=_OUTCOME_OF_STATUS.get(e.status, "failed"),
                message=e.message or f"interrupted: run {flow_run_id} did not finish it",
                detail=e.detail,
                serial=e.serial if e.status == "success" else None,
            )
            for e in entries
            if e.certificate_id is not None
        ]

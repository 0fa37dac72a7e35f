"""Prefect tasks of the ``deploy`` flow: plan the deployments of a certificate to its bound
targets, deploy to one target, record each outcome in the history (LogEntry kind ``deploy``)
and on the binding.

Parameters and results carry names and ids only: a deploy task reads the target's secrets
from the database and the private key from the certificate's store folder itself.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run
from sqlalchemy.orm import Session

from acmeflow.core import errors
from acmeflow.core.errors import mask_secrets
from acmeflow.core.state import certificates, history, targets
from acmeflow.core.state.models import Certificate, LogEntry
from acmeflow.core.storage import stores_from_settings
from acmeflow.providers.deploy import CertificateBundle, DeployTarget, build_target
from acmeflow.tasks.common import current_flow_run_id, db, progress, settings

STEP = {"cache_policy": NO_CACHE, "persist_result": False}
deploy_log = logging.getLogger("acmeflow.deploy")

_RETRY_NOTE = " failed, retrying"


def retry_policy() -> tuple[int, list[float]]:
    """Retries and their delays from ``ACMEFLOW_DEPLOY_RETRIES`` and
    ``ACMEFLOW_DEPLOY_RETRY_DELAY`` (delays grow 1x, 5x, 15x; the last one repeats)."""
    conf = settings()
    delays = [conf.deploy_retry_delay * f for f in (1, 5, 15)]
    delays = (delays + [delays[-1]] * conf.deploy_retries)[: max(conf.deploy_retries, 1)]
    return conf.deploy_retries, delays


# --- plain data passed between the flow and its tasks ----------------------------------------


@dataclass(frozen=True)
class DeployJob:
    """One deployment: a certificate to one bound target (no secrets, no key)."""

    certificate_id: int
    names: list[str]
    store: str
    serial: str | None
    target: str
    target_type: str
    binding_id: int
    log_id: int
    max_attempts: int = 1


@dataclass(frozen=True)
class DeployResult:
    """What happened to one deployment."""

    certificate_id: int
    target: str
    target_type: str
    status: str  # deployed | unchanged | failed | skipped
    message: str
    detail: str | None = None
    serial: str | None = None
    location: str | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        """Whether the target holds the certificate now (or was rightly skipped)."""
        return self.status != "failed"

    def as_row(self) -> dict[str, Any]:
        """A JSON-ready row for tables and ``--json``."""
        return {
            "certificate_id": self.certificate_id,
            "target": self.target,
            "type": self.target_type,
            "status": self.status,
            "message": self.message,
            "detail": self.detail or "",
            "serial": self.serial or "",
            "location": self.location or "",
            "attempts": self.attempts,
        }


@dataclass(frozen=True)
class DeployPlan:
    """The deployments of a run, and the bound targets skipped (disabled)."""

    jobs: list[DeployJob] = field(default_factory=list)
    skipped: list[DeployResult] = field(default_factory=list)


@dataclass(frozen=True)
class AutoDeploy:
    """Whether a just-stored certificate is deployed now (zero-touch with bound targets)."""

    deploy: bool
    store: str
    targets: list[str]
    reason: str


# --- history helpers ---------------------------------------------------------------------------


def _open_entry(s: Session, cert: Certificate, flow_run_id: str | None) -> LogEntry:
    """A running history entry for deploying ``cert``."""
    return history.log_start(
        s,
        kind="deploy",
        names=list(cert.names),
        ca_name=None,
        store=cert.store,
        certificate_id=cert.id,
        flow_run_id=flow_run_id,
    )


def _log_skip(
    s: Session, cert: Certificate, message: str, detail: str | None, flow_run_id: str | None
) -> int:
    entry = _open_entry(s, cert, flow_run_id)
    history.log_finish(s, entry, status="skipped", message=message, detail=detail)
    return entry.id


def _record_failure(
    job: DeployJob, message: str, detail: str, code: str, attempts: int
) -> DeployResult:
    """Close the job's history entry as failed and note the error on the binding."""
    summary = f"deployment to target {job.target} ({job.target_type}) failed"
    if attempts > 1:
        summary += f" after {attempts} attempts"
    with db() as s:
        entry = history.get_log_entry(s, job.log_id)
        full = "\n".join(x for x in (entry.detail, detail) if x)
        if entry.status == "running":
            history.log_finish(
                s,
                entry,
                status="failed",
                message=f"{message} ({summary})",
                detail=full,
                root_cause=code,
            )
        targets.record_deploy_error(s, job.binding_id, f"{message} {detail}".strip())
    deploy_log.warning("%s: %s", summary, detail or message)
    return _failed_result(job, message, full, attempts)


def _failed_result(job: DeployJob, message: str, detail: str | None, attempts: int) -> DeployResult:
    return DeployResult(
        certificate_id=job.certificate_id,
        target=job.target,
        target_type=job.target_type,
        status="failed",
        message=message,
        detail=detail,
        serial=job.serial,
        attempts=attempts,
    )


def _retries_noted(detail: str | None) -> int:
    return (detail or "").count(_RETRY_NOTE)


def record_deploy_failure(job: DeployJob, exc: BaseException) -> DeployResult:
    """The result of a deployment whose task failed with ``exc``; closes its history entry
    when the task could not (a crash), else reads what the task recorded."""
    with db() as s:
        entry = history.get_log_entry(s, job.log_id)
        status, detail = entry.status, entry.detail
    attempts = _retries_noted(detail) + 1
    message, text, code = errors.describe_failure(exc, [])
    if status == "running":
        return _record_failure(job, message, text, code, attempts)
    return _failed_result(job, message, detail, attempts)


# --- planning ----------------------------------------------------------------------------------


def check_targets(names: list[str]) -> list[str]:
    """Every name must be a configured, active deploy target (checked before issuing)."""
    with db() as s:
        for name in names:
            targets.get_target(s, name, include_inactive=False)
    return list(dict.fromkeys(names))


@task(name="bind_targets", **STEP)  # type: ignore[call-overload]
def bind_targets(certificate_id: int, target_names: list[str]) -> list[str]:
    """Bind the certificate to the named targets (idempotent)."""
    with db() as s:
        for name in dict.fromkeys(target_names):
            targets.bind(s, name, [certificate_id])
    progress(f"certificate {certificate_id} bound to target(s) {', '.join(target_names)}")
    return list(target_names)


def auto_deploy_decision(certificate_id: int) -> AutoDeploy:
    """After a certificate was stored: zero-touch ones with bound targets are deployed now;
    certificate-store ones wait for ``acmeflow deploy`` (said in the log and the history)."""
    return auto_deploy_decisions([certificate_id])[certificate_id]


def auto_deploy_decisions(certificate_ids: list[int]) -> dict[int, AutoDeploy]:
    """:func:`auto_deploy_decision` for many certificates (a renewal run) in one transaction."""
    decisions: dict[int, AutoDeploy] = {}
    flow_run_id = current_flow_run_id()
    with db() as s:
        bound_by_id = targets.bound_target_names(s, certificate_ids)
        for certificate_id in certificate_ids:
            cert = certificates.get_certificate(s, certificate_id)
            bound = bound_by_id.get(certificate_id, [])
            if cert.store != "zero-touch":
                reason = (
                    f"certificate {certificate_id} is in the {cert.store} store: the new "
                    f"certificate awaits manual deployment (`acmeflow deploy {certificate_id}`)"
                )
                if bound:
                    _log_skip(
                        s,
                        cert,
                        "The new certificate awaits manual deployment.",
                        f"{reason}; bound target(s): {', '.join(bound)}",
                        flow_run_id,
                    )
            elif not bound:
                reason = f"certificate {certificate_id}: no deploy target bound, nothing to deploy"
            else:
                reason = "zero-touch"
            decisions[certificate_id] = AutoDeploy(
                deploy=reason == "zero-touch", store=cert.store, targets=bound, reason=reason
            )
    for decision in decisions.values():
        if not decision.deploy:
            progress(decision.reason)
    return decisions


@task(name="plan_deployments", **STEP)  # type: ignore[call-overload]
def plan_deployments(*, certificate_ids: list[int] | None, target: str | None = None) -> DeployPlan:
    """One job per (certificate, bound active target), each with its history entry opened; a
    disabled target is skipped (logged). ``target`` restricts to that bound target.
    ``certificate_ids=None`` plans the pending deployments of zero-touch certificates (bound
    targets that do not hold the current serial)."""
    flow_run_id = current_flow_run_id()
    attempts = retry_policy()[0] + 1
    jobs: list[DeployJob] = []
    skipped: list[DeployResult] = []
    with db() as s:
        if certificate_ids is None:
            bindings = targets.pending_bindings(s)
        else:
            bindings = []
            for certificate_id in certificate_ids:
                cert = certificates.get_certificate(s, certificate_id)
                if cert.status != "active":
                    raise errors.NotFound(
                        detail=f"certificate {certificate_id} is gone from its store"
                    )
                bindings += targets.bindings_for_certificate(s, certificate_id, target_name=target)
        for binding in bindings:
            tgt, cert = binding.target, binding.certificate
            entry = _open_entry(s, cert, flow_run_id)
            if not tgt.active:
                text = f"target {tgt.name} is disabled: not deployed"
                history.log_finish(s, entry, status="skipped", message=text, serial=cert.serial)
                skipped.append(
                    DeployResult(cert.id, tgt.name, tgt.type, "skipped", text, serial=cert.serial)
                )
                continue
            entry.message = f"deploying to target {tgt.name} ({tgt.type})"
            entry.serial = cert.serial
            jobs.append(
                DeployJob(
                    certificate_id=cert.id,
                    names=list(cert.names),
                    store=cert.store,
                    serial=cert.serial,
                    target=tgt.name,
                    target_type=tgt.type,
                    binding_id=binding.id,
                    log_id=entry.id,
                    max_attempts=attempts,
                )
            )
    progress(f"deployment plan: {len(jobs)} deployment(s), {len(skipped)} skipped")
    return DeployPlan(jobs=jobs, skipped=skipped)


# --- one deployment ----------------------------------------------------------------------------


def _build(name: str) -> tuple[DeployTarget, list[str]]:
    """The live target ``name`` and its unsealed secret values (for masking only)."""
    with db() as s:
        config = targets.get_target(s, name, include_inactive=False)
        type_name, conf = config.type, {k: str(v) for k, v in config.settings.items()}
        secrets = targets.target_secrets(config)
    return build_target(type_name, conf, secrets), list(secrets.values())


def load_bundle(certificate_id: int) -> CertificateBundle:
    """The certificate's live set as a bundle (key included), from whichever backend of its
    store holds it."""
    with db() as s:
        cert = certificates.get_certificate(s, certificate_id)
        store, folder = cert.store, Path(cert.folder)
    holder = stores_from_settings(settings())[store]
    if not holder.holds(folder):
        raise errors.DeployError(
            f"certificate {certificate_id}: {folder} is a loose file, not an acmeflow folder; "
            "it can be deployed once acmeflow has renewed it"
        )
    try:
        live = holder.read_set(folder)
    except FileNotFoundError as exc:
        raise errors.DeployError(
            f"certificate {certificate_id}: {Path(str(exc.filename)).name} is missing from {folder}"
        ) from None
    except errors.NotFound as exc:
        raise errors.DeployError(f"certificate {certificate_id}: {exc.detail}") from None
    return CertificateBundle.from_fullchain(folder.name, live.fullchain, live.key)


@task(  # type: ignore[call-overload]
    name="deploy_to_target",
    task_run_name="deploy_to_target-{job.certificate_id}-{job.target}",
    **STEP,
)
def deploy_to_target(job: DeployJob) -> DeployResult:
    """Deploy the certificate's current files to one target.

    Each failed attempt is noted in the history entry; the last one (or a failure that a retry
    cannot help) closes it as failed and notes the error on the binding, then raises.
    """
    attempt = max(task_run.get_run_count(), 1)
    secrets: list[str] = []
    try:
        target, secrets = _build(job.target)
        bundle = load_bundle(job.certificate_id)
        progress(
            f"deploying certificate {job.certificate_id} (serial {bundle.serial}) to target "
            f"{job.target} ({job.target_type})"
            + (f", attempt {attempt} of {job.max_attempts}" if attempt > 1 else "")
        )
        outcome = target.deploy(bundle)
    except BaseException as exc:
        message, detail, code = errors.describe_failure(exc, secrets)
        if getattr(exc, "retryable", False) and attempt < job.max_attempts:
            with db() as s:
                entry = history.get_log_entry(s, job.log_id)
                line = f"attempt {attempt}{_RETRY_NOTE}: {detail or message}"
                entry.detail = "\n".join(x for x in (entry.detail, line) if x)
            deploy_log.warning(
                "target %s: attempt %s of %s failed, retrying: %s",
                job.target,
                attempt,
                job.max_attempts,
                detail or message,
            )
        else:
            _record_failure(job, message, detail, code, attempt)
        if isinstance(exc, errors.AcmeflowError):
            exc.detail = detail  # what Prefect logs and shows: masked
        raise
    status = "deployed" if outcome.changed else "unchanged"
    text = (
        f"deployed to target {job.target} ({job.target_type})"
        if outcome.changed
        else f"target {job.target} ({job.target_type}) already holds this certificate"
    )
    if attempt > 1:
        text += f" (attempt {attempt})"
    detail = mask_secrets(outcome.detail, secrets)
    with db() as s:
        entry = history.get_log_entry(s, job.log_id)
        full = "\n".join(x for x in (entry.detail, detail) if x)
        history.log_finish(
            s, entry, status="success", message=text, detail=full, serial=bundle.serial
        )
        targets.record_deployed(s, job.binding_id, bundle.serial, at=dt.datetime.now(dt.UTC))
    deploy_log.info("%s: serial %s %s", job.target, bundle.serial, outcome.location or "")
    return DeployResult(
        certificate_id=job.certificate_id,
        target=job.target,
        target_type=job.target_type,
        status=status,
        message=text,
        detail=detail,
        serial=bundle.serial,
        location=outcome.location,
        attempts=attempt,
    )

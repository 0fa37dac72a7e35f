"""Flow ``deploy``: put a certificate on every target bound to it, in parallel (F7).

Each deployment is its own task run (retried on transient errors), recorded in the history
(kind ``deploy``) and on its binding. One failing target never stops the others; the flow ends
Failed when any target failed, after every outcome is recorded. :func:`deploy_after_store`
(``issue``) and :func:`deploy_after_renewals` (``renew``) run once certificates are stored:
zero-touch certificates are deployed at once, certificate-store ones wait for
``acmeflow deploy``.
"""

from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture, as_completed
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from acmeflow.core import errors
from acmeflow.core.errors import mask_secrets
from acmeflow.flows.hooks import acmeflow_flow
from acmeflow.tasks.alerts import emit_deploy_alerts
from acmeflow.tasks.common import (
    end_run,
    markdown_table,
    progress,
    publish_artifact,
    retry_if_retryable,
    settings,
)
from acmeflow.tasks.deploy import (
    AutoDeploy,
    DeployJob,
    DeployPlan,
    DeployResult,
    auto_deploy_decision,
    auto_deploy_decisions,
    bind_targets,
    deploy_to_target,
    plan_deployments,
    record_deploy_failure,
    retry_policy,
)

STATUSES = ("deployed", "unchanged", "failed", "skipped")


def run_deployments(plan: DeployPlan) -> list[DeployResult]:
    """Run the plan's jobs in parallel (``max_workers`` threads), each retried on retryable
    errors; every job yields a result, failed ones included."""
    results: list[DeployResult] = list(plan.skipped)
    if not plan.jobs:
        return results
    retries, delays = retry_policy()
    step = deploy_to_target.with_options(
        retries=retries, retry_delay_seconds=delays, retry_condition_fn=retry_if_retryable
    )
    workers = max(1, min(settings().max_workers, len(plan.jobs)))
    runner: ThreadPoolTaskRunner[Any]
    with ThreadPoolTaskRunner(max_workers=workers) as runner:
        futures: dict[PrefectFuture[DeployResult], DeployJob] = {
            runner.submit(step, {"job": job}): job for job in plan.jobs
        }
        for future in as_completed(list(futures)):
            job = futures[future]
            try:
                results.append(future.result())
            except Exception as exc:  # one failing target never stops the others
                results.append(record_deploy_failure(job, exc))
    return sorted(results, key=lambda r: (r.certificate_id, r.target))


def summarize(results: list[DeployResult]) -> dict[str, Any]:
    """Counts per status and one row per deployment."""
    return {
        **{status: sum(1 for r in results if r.status == status) for status in STATUSES},
        "results": [r.as_row() for r in results],
    }


def _finish(results: list[DeployResult], what: str) -> dict[str, Any] | State[Any]:
    summary = summarize(results)
    rows = summary["results"]
    if rows:
        publish_artifact(
            create_table_artifact,
            table=rows,
            key="deploy-summary",
            description=f"Deployments of {what}",
        )
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        emit_deploy_alerts(
            [(r.certificate_id, r.target, r.message, r.detail) for r in results if not r.ok]
        )
        table = markdown_table(
            ["certificate", "target", "error"],
            [[r["certificate_id"], r["target"], f"{r['message']} {r['detail']}"] for r in failed],
        )
        publish_artifact(
            create_markdown_artifact,
            markdown=table.replace("\n\n", "\n"),
            key="deploy-failures",
            description=f"{len(failed)} deployment(s) failed",
        )
    text = (
        f"deploy {what}: {summary['deployed']} deployed, {summary['unchanged']} already in "
        f"place, {summary['failed']} failed, {summary['skipped']} skipped"
    )
    progress(text)
    names = ", ".join(sorted({str(r["target"]) for r in failed}))
    return end_run(summary, len(failed), f"{text} (failed: {names})")


@acmeflow_flow("deploy")
def deploy(certificate_id: int, target: str | None = None) -> dict[str, Any] | State[Any]:
    """Deploy certificate ``certificate_id`` to every target bound to it (or only to the bound
    ``target``), in parallel. Ends Failed when any target failed; the summary (counts and one
    row per target) is the result either way.

    Args:
        certificate_id: The certificate to deploy (`acmeflow certs list`).
        target: Only this bound deploy target (empty: every target bound to it).
    """
    plan = plan_deployments(certificate_ids=[certificate_id], target=target)
    return _finish(run_deployments(plan), f"certificate {certificate_id}")


@acmeflow_flow("deploy_pending")
def deploy_pending() -> dict[str, Any] | State[Any]:
    """Deploy every zero-touch certificate to the bound targets that do not hold its current
    serial yet (a target that was down, a binding added later)."""
    plan = plan_deployments(certificate_ids=None)
    return _finish(run_deployments(plan), "pending certificates")


def summary_of(state: State[Any]) -> dict[str, Any]:
    """The summary a ``deploy`` run left, whether it completed or failed."""
    data = state.result(raise_on_failure=False)
    if isinstance(data, dict):
        return data
    if isinstance(data, errors.AcmeflowError):
        error = {"message": data.message, "detail": data.detail or ""}
    else:
        error = {"message": "Unexpected failure.", "detail": mask_secrets(str(data), [])}
    return {**dict.fromkeys(STATUSES, 0), "failed": 1, "results": [], "error": error}


def deploy_after_store(
    certificate_id: int, targets: list[str] | None = None
) -> dict[str, Any] | None:
    """After ``issue`` / ``renew`` stored a certificate: bind it to ``targets`` (names of
    configured targets), then deploy it now when it is in the zero-touch store.

    Never raises for a deployment problem (the certificate is stored: issuance succeeded);
    failures are in the history and on the bindings. Returns the deploy summary, or None
    when nothing was deployed (certificate store, or no bound target).
    """
    try:
        if targets:
            bind_targets(certificate_id, targets)
        decision = auto_deploy_decision(certificate_id)
    except Exception as exc:  # the certificate is stored: a deploy problem never undoes that
        _not_deployed([certificate_id], exc)
        return None
    return _deploy_now(certificate_id, decision)


def deploy_after_renewals(certificate_ids: list[int]) -> None:
    """:func:`deploy_after_store` for the certificates a ``renew`` run stored: one look at
    their stores and bindings, then a ``deploy`` run for each zero-touch one with targets."""
    if not certificate_ids:
        return
    try:
        decisions = auto_deploy_decisions(certificate_ids)
    except Exception as exc:  # the certificates are stored: never undo that
        _not_deployed(certificate_ids, exc)
        return
    for certificate_id in certificate_ids:
        _deploy_now(certificate_id, decisions[certificate_id])


def _not_deployed(certificate_ids: list[int], exc: Exception) -> None:
    if isinstance(exc, errors.AcmeflowError):
        why = f"{exc.message} {exc.detail or ''}".strip()
    else:
        why = f"unexpected {type(exc).__name__}"
    for certificate_id in certificate_ids:
        progress(f"certificate {certificate_id} not deployed: {why}")


def _deploy_now(certificate_id: int, decision: AutoDeploy) -> dict[str, Any] | None:
    if not decision.deploy:
        return None
    progress(f"zero-touch: deploying certificate {certificate_id} to {', '.join(decision.targets)}")
    try:
        state = deploy(certificate_id=certificate_id, return_state=True)
    except Exception as exc:  # the deploy run could not even start: issuance still stands
        progress(f"certificate {certificate_id} not deployed: {type(exc).__name__}")
        return None
    return summary_of(state)

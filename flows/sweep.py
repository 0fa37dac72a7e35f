"""Flow ``sweep``: remove DNS-01 challenge values that a crashed run left behind (daily).

Every value acmeflow presents is journaled before it is written and forgotten after cleanup;
journal rows older than the grace period are values nobody will clean up any more. The sweep
removes exactly those values, provider by provider, and reports (never deletes) challenge
values it sees at mapped domains that acmeflow did not write. It also removes what else a killed
run leaves: staged private keys, history entries still ``running`` and expired leases.
"""

from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import PrefectFuture
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from acmeflow.flows.hooks import acmeflow_flow
from acmeflow.tasks.common import end_run, markdown_table, progress, publish_artifact, settings
from acmeflow.tasks.pipeline import recover_orders
from acmeflow.tasks.sweep import (
    ProviderJob,
    ProviderSweep,
    clean_leftovers,
    close_crashed_run,
    failed_sweep,
    plan_sweep,
    sweep_provider,
)

DEFAULT_GRACE_SECONDS = 3600.0
# after a crash, unjournaled staged keys go sooner: a live run journals its key within seconds
CRASHED_KEY_GRACE_SECONDS = 600.0


def _artifacts(results: list[ProviderSweep]) -> None:
    rows: list[dict[str, Any]] = []
    for r in results:
        rows += [
            {"provider": r.provider, "fqdn": e["fqdn"], "outcome": "removed", "detail": e["note"]}
            for e in r.removed
        ]
        rows += [
            {"provider": r.provider, "fqdn": e["fqdn"], "outcome": "failed", "detail": e["error"]}
            for e in r.failed
        ]
        rows += [
            {"provider": r.provider, "fqdn": e["fqdn"], "outcome": "not acmeflow's", "detail": ""}
            for e in r.unjournaled
        ]
    if rows:
        publish_artifact(
            create_table_artifact,
            table=rows,
            key="sweep-summary",
            description="Stale DNS-01 challenge values found by the sweep",
        )
    failed = [(r.provider, e) for r in results for e in r.failed]
    problems = [(r.provider, p) for r in results for p in r.problems]
    if failed or problems:
        failure_rows = [[p, e["fqdn"], e["error"]] for p, e in failed]
        failure_rows += [[p, "", text] for p, text in problems]
        publish_artifact(
            create_markdown_artifact,
            markdown=markdown_table(["provider", "record", "error"], failure_rows),
            key="sweep-failures",
            description=f"{len(failed)} stale value(s) could not be removed",
        )


@acmeflow_flow("sweep")
def sweep(
    older_than_seconds: float = DEFAULT_GRACE_SECONDS,
    inspect_limit: int = 100,
    crashed_run: str | None = None,
) -> dict[str, Any] | State[Any]:
    """Remove challenge values journaled more than ``older_than_seconds`` ago (default one
    hour: longer than any order takes) and not cleaned up, through their DNS provider.

    ``inspect_limit`` caps, per provider, the ``_acme-challenge`` names read to report values
    acmeflow did not write (0: no report). Providers are swept in parallel; a provider that
    fails keeps its journal rows for the next sweep. Returns counts and per-provider results;
    the run ends Failed (with the same summary) when a value could not be removed.

    Args:
        older_than_seconds: Grace period: only values journaled (and keys staged, history
            entries opened) longer ago than this are leftovers of crashed runs.
        inspect_limit: Per DNS provider, how many _acme-challenge names to read for values
            acmeflow did not write (reported, never removed; 0: none).
        crashed_run: The id of a flow run that crashed or was cancelled (the automation
            `acmeflow: sweep after a crash` passes it): what that run left is removed now,
            whatever its age.
    """
    crashed = close_crashed_run(crashed_run) if crashed_run else None
    recovered = recover_orders()
    plan = plan_sweep(older_than_seconds, inspect_limit, crashed_run)
    cleaned = clean_leftovers(
        older_than_seconds, CRASHED_KEY_GRACE_SECONDS if crashed_run else None
    )
    results: list[ProviderSweep] = []
    if plan.jobs:
        workers = max(1, min(settings().max_workers, len(plan.jobs)))
        runner: ThreadPoolTaskRunner[Any]
        with ThreadPoolTaskRunner(max_workers=workers) as runner:
            futures: dict[PrefectFuture[ProviderSweep], ProviderJob] = {
                runner.submit(sweep_provider, {"job": job}): job for job in plan.jobs
            }
            for future, job in futures.items():
                try:
                    results.append(future.result())
                except Exception as exc:  # one provider must not stop the others
                    results.append(failed_sweep(job, exc))
    _artifacts(results)
    summary = {
        "older_than_seconds": older_than_seconds,
        "cutoff": plan.cutoff,
        "stale": plan.stale,
        "removed": sum(len(r.removed) for r in results),
        "failed": sum(len(r.failed) for r in results),
        "unjournaled": sum(len(r.unjournaled) for r in results),
        "leftovers": cleaned.as_dict(),
        "crashed_run": crashed.as_dict() if crashed else None,
        "recovered_orders": recovered,
        "providers": [
            r.as_dict() for r in results if r.removed or r.failed or r.unjournaled or r.problems
        ],
    }
    text = (
        f"sweep: {summary['removed']} removed, {summary['failed']} not removed, "
        f"{summary['unjournaled']} not acmeflow's (left in place)"
    )
    progress(text)
    return end_run(summary, summary["failed"], text)

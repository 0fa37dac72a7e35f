"""The Prefect automations acmeflow keeps on the server, written by name (create, update or
leave unchanged), and the two that recover from crashed runs, installed by ``schedules sync``
and ``serve``:

- ``acmeflow: mark silent runs crashed``: an acmeflow run whose heartbeats stop (its worker
  or process was killed) without a final state is marked Crashed after three missed
  heartbeats (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, Prefect's default 180 s: 9 minutes);
- ``acmeflow: sweep after a crash``: an ``issue``, ``renew``, ``deploy`` or ``deploy_pending``
  run that ends Crashed or Cancelled starts a run of ``sweep/daily`` with ``crashed_run`` set
  to its id, which removes that run's TXT values, closes its history entries and releases its
  leases at once.

Prefect is imported only inside the functions (the CLI's everyday commands stay fast).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.events.schemas.automations import AutomationCore

SWEPT_FLOWS = ("issue", "renew", "deploy", "deploy_pending")  # what their crash can leave
SWEEP_DEPLOYMENT = "sweep/daily"
ZOMBIE = "acmeflow: mark silent runs crashed"
CRASH_SWEEP = "acmeflow: sweep after a crash"
MISSED_HEARTBEATS = 3
_FINAL = ("Completed", "Failed", "Cancelled", "Crashed")


def _without_ids(value: Any) -> Any:
    """``value`` (a model dump) without the ids the server fills in."""
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def _comparable(automation: Any) -> Any:
    fields = {"name", "description", "enabled", "trigger", "actions"}
    return _without_ids(automation.model_dump(mode="json", include=fields))


async def upsert(client: PrefectClient, wanted: AutomationCore) -> str:
    """Write ``wanted`` by its name: "created", "updated" or "unchanged" (duplicates of the
    name are removed)."""
    existing = await client.read_automations_by_name(wanted.name)
    if not existing:
        await client.create_automation(wanted)
        return "created"
    for duplicate in existing[1:]:
        await client.delete_automation(duplicate.id)
    if _comparable(existing[0]) == _comparable(wanted):
        return "unchanged"
    await client.update_automation(existing[0].id, wanted)
    return "updated"


def _acmeflow_runs() -> dict[str, Any]:
    """Related-resource filter: flow runs of acmeflow's flows that can leave debris."""
    return {"prefect.resource.role": "flow", "prefect.resource.name": list(SWEPT_FLOWS)}


def zombie_automation(heartbeat_seconds: int) -> AutomationCore:
    """Mark an acmeflow run Crashed when no heartbeat or final state came for three beats."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    silence = dt.timedelta(seconds=MISSED_HEARTBEATS * heartbeat_seconds)
    return AutomationCore(
        name=ZOMBIE,
        description=(
            f"an acmeflow run silent for {MISSED_HEARTBEATS} heartbeats "
            f"({int(silence.total_seconds())} s) without a final state crashed"
        ),
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in _FINAL)},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_acmeflow_runs(),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=silence,
        ),
        actions=[
            ChangeFlowRunState(
                name="Crashed",
                state=StateType.CRASHED,
                message=f"no heartbeat for {int(silence.total_seconds())} s: the process died",
                force=False,
            )
        ],
    )


def crash_sweep_automation(sweep_deployment_id: UUID) -> AutomationCore:
    """Run the sweep for an acmeflow run as soon as it ends Crashed or Cancelled."""
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    return AutomationCore(
        name=CRASH_SWEEP,
        description="remove what a crashed or cancelled acmeflow run left, at once",
        enabled=True,
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed", "prefect.flow-run.Cancelled"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_acmeflow_runs(),
            posture=Posture.Reactive,
            threshold=1,
            within=dt.timedelta(0),
        ),
        actions=[
            RunDeployment(
                source="selected",
                deployment_id=sweep_deployment_id,
                parameters={
                    "crashed_run": "{{ event.resource.id | replace('prefect.flow-run.', '') }}"
                },
                job_variables=None,
            )
        ],
    )


async def sync_recovery(client: PrefectClient) -> dict[str, str]:
    """Write the two crash-recovery automations; name -> created/updated/unchanged (the sweep
    one only when the ``sweep/daily`` deployment exists)."""
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import get_current_settings

    heartbeat = get_current_settings().flows.heartbeat_frequency or 180
    done = {ZOMBIE: await upsert(client, zombie_automation(heartbeat))}
    try:
        sweep = await client.read_deployment_by_name(SWEEP_DEPLOYMENT)
    except ObjectNotFound:
        return done
    done[CRASH_SWEEP] = await upsert(client, crash_sweep_automation(sweep.id))
    return done

"""acmeflow's Prefect deployments and their schedules (F9).

The desired set, built from the database:

* ``renew/renew-<ca>`` for every active CA vendor, on the interval derived from the CA's renewal
  window (:mod:`core.schedule_policy`), parameters ``{"ca": "<name>"}`` only;
* ``scan/daily`` and ``sweep/daily`` once a day;
* ``issue/ad-hoc``, ``renew/ad-hoc`` and ``deploy/ad-hoc`` without a schedule, for runs triggered
  from the UI or the CLI (sync leaves any schedule a user adds to them alone).

Every deployment acmeflow owns carries the tag ``acmeflow``. :func:`sync_schedules` reconciles the
Prefect API with that set: it creates missing deployments, updates the schedule, parameters,
description and tags of changed ones, and deletes the ``renew-*`` deployments of CA vendors that
were removed (or deactivated). :func:`serve` runs all of them in one process (a Prefect runner, no
work pool) and re-syncs periodically so CAs added or removed later are picked up.

Flows are imported lazily by module (``flows.<name>``): a flow that is not importable is skipped
and reported, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import importlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from acmeflow import automations, limits
from acmeflow.config.settings import get_settings
from acmeflow.core.schedule_policy import (
    DEPLOY_PENDING_INTERVAL,
    SCAN_INTERVAL,
    SWEEP_INTERVAL,
    Cadence,
    anchor_for,
    cadence_for_ca,
    format_interval,
)
from acmeflow.core.state.cadence_facts import CAFacts, ca_facts
from acmeflow.core.state.db import open_database, session_scope

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.orchestration import PrefectClient
    from prefect.runner import Runner

log = logging.getLogger(__name__)

OWNER_TAG = "acmeflow"
RENEW_PREFIX = "renew-"
PAGE_SIZE = 200
TRIGGER_POLL_SECONDS = (
    2.0  # the runner's query interval: Prefect's default of 10 s delays triggered runs
)
BANNED_NAME_CHARACTERS = ("/", "%", "&", ">", "<")  # Prefect rejects them in deployment names
SERVER_HINT = (
    "start a server with `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api"
)

Action = Literal["create", "update", "delete", "unchanged"]
PAUSED_CHANGE = "paused -> resumed"


# --- flows -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowSpec:
    """Where one acmeflow flow lives."""

    key: str
    module: str
    function: str

    @property
    def entrypoint(self) -> str:
        """The module entrypoint every acmeflow deployment uses, in ``prefect.yaml`` too
        (``acmeflow.flows.renew.renew``): the installed package, whatever the working folder."""
        return f"{self.module}.{self.function}"


FLOW_SPECS: dict[str, FlowSpec] = {
    key: FlowSpec(key=key, module=f"acmeflow.flows.{module}", function=key)
    for key, module in (
        ("issue", "issue"),
        ("renew", "renew"),
        ("renew_share", "renew"),
        ("deploy", "deploy"),
        ("deploy_pending", "deploy"),
        ("scan", "scan"),
        ("sweep", "sweep"),
    )
}

FlowLoader = Callable[[str], "Flow[Any, Any]"]


def form_of(flow: Flow[Any, Any]) -> tuple[str, ...]:
    """The names of ``flow``'s parameters, sorted (what its run form asks for)."""
    from prefect.utilities.callables import parameter_schema

    return tuple(sorted(parameter_schema(flow.fn).properties))


def module_entrypoint(flow: Flow[Any, Any]) -> str:
    """The module entrypoint Prefect records for ``flow`` (``acmeflow.flows.renew.renew``)."""
    return f"{flow.__module__}.{flow.fn.__name__}"


def load_flow(key: str) -> Flow[Any, Any]:
    """Import the flow ``key`` (``renew``, ``scan``, ...) from its module."""
    from prefect import Flow

    spec = FLOW_SPECS[key]
    module = importlib.import_module(spec.module)
    obj = getattr(module, spec.function)
    if not isinstance(obj, Flow):
        raise TypeError(f"{spec.entrypoint} is not a Prefect flow")
    return obj


# --- the desired set ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticDeployment:
    """A deployment that does not depend on the configuration."""

    flow: str
    name: str
    interval: dt.timedelta | None
    description: str


SHARE_DESCRIPTION = (
    "A share of a larger renew run, started by the run itself on a work pool (its batches "
    "spread over the pool's workers): renews those of certificate_ids still due."
)

STATIC_DEPLOYMENTS: tuple[StaticDeployment, ...] = (
    StaticDeployment(
        "scan",
        "daily",
        SCAN_INTERVAL,
        "Scan both certificate stores once a day: inventory, issuing CAs, duplicates (F2).",
    ),
    StaticDeployment(
        "sweep",
        "daily",
        SWEEP_INTERVAL,
        "Remove stale _acme-challenge TXT values left behind by interrupted runs, once a day.",
    ),
    StaticDeployment(
        "deploy_pending",
        "hourly",
        DEPLOY_PENDING_INTERVAL,
        "Deploy zero-touch certificates to bound targets that missed them (a target that was "
        "down catches up within the hour) (F7).",
    ),
    StaticDeployment(
        "issue",
        "ad-hoc",
        None,
        "Issue a certificate on demand (F5): give ca and names.",
    ),
    StaticDeployment(
        "renew",
        "ad-hoc",
        None,
        "Renew on demand (F6): certificate_ids for 'renew now' (manual ones included), "
        "or ca for one CA's due certificates, or nothing for every due certificate.",
    ),
    StaticDeployment(
        "renew_share",
        "share",
        None,
        SHARE_DESCRIPTION,
    ),
    StaticDeployment(
        "deploy",
        "ad-hoc",
        None,
        "Deploy a certificate to its targets on demand (F7): give certificate_id "
        "(and target for only one).",
    ),
)


@dataclass(frozen=True)
class DesiredDeployment:
    """One deployment acmeflow wants in the Prefect API."""

    flow_key: str
    flow_name: str
    name: str
    interval: dt.timedelta | None
    anchor: dt.datetime | None
    parameters: dict[str, Any]
    description: str
    tags: tuple[str, ...]
    entrypoint: str
    ca: str | None = None
    cadence: Cadence | None = None
    form: tuple[str, ...] = ()  # the flow's parameter names (the UI's run form)

    @property
    def full_name(self) -> str:
        """``flow/deployment`` as Prefect shows it."""
        return f"{self.flow_name}/{self.name}"

    @property
    def schedule_text(self) -> str:
        """``daily``, ``every 6 h`` or ``ad hoc``."""
        return format_interval(self.interval) if self.interval else "ad hoc"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "deployment": self.full_name,
            "flow": self.flow_name,
            "name": self.name,
            "schedule": self.schedule_text,
            "interval_seconds": int(self.interval.total_seconds()) if self.interval else None,
            "anchor": self.anchor.isoformat() if self.anchor else None,
            "parameters": dict(self.parameters),
            "tags": list(self.tags),
            "entrypoint": self.entrypoint,
            "ca": self.ca,
            "cadence": self.cadence.as_dict() if self.cadence else None,
            "description": self.description,
        }


@dataclass(frozen=True)
class Skipped:
    """A deployment that cannot be built (its flow is missing, a name Prefect refuses, ...)."""

    name: str
    reason: str


@dataclass
class DesiredSet:
    """The deployments acmeflow wants, the ones it had to skip, and the flows behind them."""

    deployments: list[DesiredDeployment] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    flows: dict[str, Flow[Any, Any]] = field(default_factory=dict)

    @property
    def renew_flow_name(self) -> str | None:
        """The Prefect name of the renew flow, when it could be loaded (``None``: unknown, so
        no ``renew-*`` deployment may be deleted)."""
        flow = self.flows.get("renew")
        return flow.name if flow is not None else None


def renew_deployment_name(ca: str) -> str:
    """The deployment of CA vendor ``ca``: ``renew-<ca>``."""
    return f"{RENEW_PREFIX}{ca}"


def build_desired(cas: Iterable[CAFacts], *, loader: FlowLoader = load_flow) -> DesiredSet:
    """The desired deployments for these CA vendors (flows imported with ``loader``)."""
    desired = DesiredSet()
    keys = ["renew", *(d.flow for d in STATIC_DEPLOYMENTS if d.flow != "renew")]
    for key in dict.fromkeys(keys):
        try:
            desired.flows[key] = loader(key)
        except Exception as exc:  # a flow that is not there (yet) is skipped, not fatal
            reason = f"flow {FLOW_SPECS[key].entrypoint} is not available: {exc}"
            desired.skipped.append(Skipped(name=key, reason=reason))
    renew = desired.flows.get("renew")
    for ca in sorted(cas, key=lambda c: c.name):
        name = renew_deployment_name(ca.name)
        if renew is None:
            desired.skipped.append(
                Skipped(name=f"renew/{name}", reason="the renew flow is missing")
            )
            continue
        if any(c in ca.name for c in BANNED_NAME_CHARACTERS):
            desired.skipped.append(
                Skipped(
                    name=f"renew/{name}",
                    reason="Prefect deployment names cannot contain "
                    + " ".join(BANNED_NAME_CHARACTERS)
                    + "; rename the CA vendor",
                )
            )
            continue
        cadence = cadence_for_ca(
            renew_days=ca.renew_days,
            vendor=ca.vendor,
            profile=ca.profile,
            learned_lifetime=ca.learned_lifetime,
            ari_window=ca.ari_window,
        )
        desired.deployments.append(
            DesiredDeployment(
                flow_key="renew",
                flow_name=renew.name,
                name=name,
                interval=cadence.interval,
                anchor=anchor_for(name, cadence.interval),
                parameters={"ca": ca.name},
                description=(
                    f"Renew the due certificates of CA vendor {ca.name} "
                    f"{cadence.interval_text} ({cadence.reason})."
                ),
                tags=(OWNER_TAG, "renew", f"ca:{ca.name}"),
                entrypoint=module_entrypoint(renew),
                ca=ca.name,
                cadence=cadence,
                form=form_of(renew),
            )
        )
    for static in STATIC_DEPLOYMENTS:
        flow = desired.flows.get(static.flow)
        if flow is None:
            continue  # already reported as a skipped flow
        full = f"{flow.name}/{static.name}"
        desired.deployments.append(
            DesiredDeployment(
                flow_key=static.flow,
                flow_name=flow.name,
                name=static.name,
                interval=static.interval,
                anchor=anchor_for(full, static.interval) if static.interval else None,
                parameters={},
                description=static.description,
                tags=(OWNER_TAG, static.flow),
                entrypoint=module_entrypoint(flow),
                form=form_of(flow),
            )
        )
    return desired


def desired_from_database(*, loader: FlowLoader = load_flow) -> DesiredSet:
    """The desired deployments for the configured database (``ACMEFLOW_*`` settings)."""
    engine = open_database(get_settings().resolved_database_url)
    with session_scope(engine) as s:
        facts = ca_facts(s)
    return build_desired(facts, loader=loader)


# --- what exists -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExistingDeployment:
    """The parts of a deployment in the Prefect API that sync manages."""

    id: UUID
    flow_name: str
    name: str
    intervals: tuple[tuple[dt.timedelta, dt.datetime] | None, ...]  # None: not an interval
    parameters: dict[str, Any]
    description: str | None
    tags: tuple[str, ...]
    work_pool_name: str | None
    paused: bool
    entrypoint: str | None = None
    schema: dict[str, Any] | None = None  # its stored parameter schema (the run form)

    @property
    def form(self) -> tuple[str, ...] | None:
        """The parameter names of its stored schema (``None``: no schema stored)."""
        return tuple(sorted(self.schema.get("properties") or {})) if self.schema else None

    @property
    def full_name(self) -> str:
        """``flow/deployment``."""
        return f"{self.flow_name}/{self.name}"

    @property
    def schedule_text(self) -> str:
        """The existing schedules for humans."""
        if not self.intervals:
            return "ad hoc"
        return ", ".join(format_interval(i[0]) if i else "other" for i in self.intervals)


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def read_owned_deployments(client: PrefectClient) -> list[ExistingDeployment]:
    """Every deployment in the Prefect API tagged ``acmeflow``."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        FlowFilter,
        FlowFilterId,
    )
    from prefect.client.schemas.schedules import IntervalSchedule

    found = []
    offset = 0
    while True:
        page = await client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[OWNER_TAG])),
            limit=PAGE_SIZE,
            offset=offset,
        )
        found.extend(page)
        if len(page) < PAGE_SIZE:
            break
        offset += PAGE_SIZE
    flow_ids = list({d.flow_id for d in found})
    flow_names: dict[UUID, str] = {}
    for start in range(0, len(flow_ids), PAGE_SIZE):
        chunk = flow_ids[start : start + PAGE_SIZE]
        flows = await client.read_flows(
            flow_filter=FlowFilter(id=FlowFilterId(any_=chunk)), limit=len(chunk)
        )
        flow_names.update({f.id: f.name for f in flows})
    existing = []
    for d in found:
        intervals: list[tuple[dt.timedelta, dt.datetime] | None] = []
        for sched in d.schedules:
            if isinstance(sched.schedule, IntervalSchedule):
                intervals.append((sched.schedule.interval, _utc(sched.schedule.anchor_date)))
            else:
                intervals.append(None)
        existing.append(
            ExistingDeployment(
                id=d.id,
                flow_name=flow_names.get(d.flow_id, "?"),
                name=d.name,
                intervals=tuple(intervals),
                parameters=dict(d.parameters or {}),
                description=d.description,
                tags=tuple(d.tags or ()),
                work_pool_name=d.work_pool_name,
                paused=bool(d.paused),
                entrypoint=d.entrypoint,
                schema=dict(d.parameter_openapi_schema or {}) or None,
            )
        )
    return sorted(existing, key=lambda e: e.full_name)


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanItem:
    """What sync does (or would do) with one deployment."""

    action: Action
    full_name: str
    desired: DesiredDeployment | None
    existing: ExistingDeployment | None
    changes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "deployment": self.full_name,
            "action": self.action,
            "changes": list(self.changes),
            "desired": self.desired.as_dict() if self.desired else None,
            "existing": (
                {
                    "id": str(self.existing.id),
                    "schedule": self.existing.schedule_text,
                    "parameters": self.existing.parameters,
                    "tags": list(self.existing.tags),
                    "work_pool": self.existing.work_pool_name,
                    "paused": self.existing.paused,
                }
                if self.existing
                else None
            ),
        }


def _changes(d: DesiredDeployment, e: ExistingDeployment, work_pool: str | None) -> tuple[str, ...]:
    changes: list[str] = []
    if d.interval is not None:
        wanted = ((d.interval, _utc(d.anchor or anchor_for(d.full_name, d.interval))),)
        if e.intervals != wanted:
            changes.append(f"schedule: {e.schedule_text} -> {d.schedule_text}")
    if e.parameters != d.parameters:
        changes.append(f"parameters: {e.parameters} -> {d.parameters}")
    if (e.description or "") != d.description:
        changes.append("description")
    if set(e.tags) != set(d.tags):
        changes.append(f"tags: {sorted(e.tags)} -> {sorted(d.tags)}")
    if work_pool is not None and e.work_pool_name != work_pool:
        changes.append(f"work pool: {e.work_pool_name} -> {work_pool}")
    if e.entrypoint is not None and e.entrypoint != d.entrypoint:
        changes.append(f"entrypoint: {e.entrypoint} -> {d.entrypoint}")
    if e.form is not None and d.form and e.form != d.form:  # the flow's signature changed
        changes.append(f"form: {', '.join(e.form)} -> {', '.join(d.form)}")
    if e.paused:  # a stopped `serve` pauses its schedules; acmeflow's are meant to run
        changes.append(PAUSED_CHANGE)
    return tuple(changes)


def plan_sync(
    desired: DesiredSet, existing: Iterable[ExistingDeployment], *, work_pool: str | None = None
) -> list[PlanItem]:
    """Compare the desired set with what exists: create, update, unchanged, and delete for
    ``renew-*`` deployments whose CA vendor is gone. Nothing else is ever deleted."""
    by_name = {e.full_name: e for e in existing}
    wanted = {d.full_name for d in desired.deployments}
    plan: list[PlanItem] = []
    for d in desired.deployments:
        e = by_name.get(d.full_name)
        if e is None:
            plan.append(PlanItem("create", d.full_name, d, None))
            continue
        changes = _changes(d, e, work_pool)
        plan.append(PlanItem("update" if changes else "unchanged", d.full_name, d, e, changes))
    renew_flow = desired.renew_flow_name
    if renew_flow is not None:
        for e in by_name.values():
            if (
                e.flow_name == renew_flow
                and e.name.startswith(RENEW_PREFIX)
                and e.full_name not in wanted
                and OWNER_TAG in e.tags
            ):
                plan.append(
                    PlanItem("delete", e.full_name, None, e, ("its CA vendor is gone or inactive",))
                )
    return plan


# --- applying it -------------------------------------------------------------------------------


@dataclass
class SyncReport:
    """What :func:`sync_schedules` did."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[Skipped] = field(default_factory=list)
    changes: dict[str, list[str]] = field(default_factory=dict)
    automations: dict[str, str] = field(default_factory=dict)  # name -> created/updated/...
    limits: dict[str, str] = field(default_factory=dict)  # global limit -> created/updated/...
    ca_choices: list[str] = field(default_factory=list)  # forms given the current CA list

    @property
    def ok(self) -> bool:
        """Whether every planned change was applied."""
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "skipped": [{"name": s.name, "reason": s.reason} for s in self.skipped],
            "failed": [{"name": s.name, "error": s.reason} for s in self.failed],
            "changes": self.changes,
            "automations": self.automations,
            "limits": self.limits,
            "ca_choices": self.ca_choices,
        }


ApplyFn = Callable[[DesiredDeployment, "Flow[Any, Any]"], Awaitable[None]]


def _schedule_kwargs(d: DesiredDeployment) -> dict[str, Any]:
    """``to_deployment`` keyword arguments for the schedule and the concurrency of ``d``."""
    if d.interval is None:
        return {}
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Interval

    return {
        "schedule": Interval(d.interval, anchor_date=d.anchor, timezone="UTC"),
        # one run at a time per scheduled deployment: a run that would overlap is cancelled
        "concurrency_limit": ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
        ),
    }


def _deployment_kwargs(d: DesiredDeployment) -> dict[str, Any]:
    from prefect.deployments.runner import EntrypointType

    return {
        "name": d.name,
        "parameters": dict(d.parameters),
        "description": d.description,
        "tags": list(d.tags),
        "entrypoint_type": EntrypointType.MODULE_PATH,
        **_schedule_kwargs(d),
    }


async def create_deployment(
    d: DesiredDeployment, flow: Flow[Any, Any], *, work_pool: str | None = None
) -> UUID:
    """Create (upsert) deployment ``d`` of ``flow`` through the Prefect API."""
    deployment = await flow.ato_deployment(**_deployment_kwargs(d))
    deployment_id: UUID = await deployment.aapply(work_pool_name=work_pool)
    return deployment_id


async def update_deployment(
    client: PrefectClient,
    item: PlanItem,
    *,
    work_pool: str | None = None,
    flow: Flow[Any, Any] | None = None,
) -> None:
    """Update the managed fields of an existing deployment (an outdated entrypoint included)
    and resume it when it is paused; anything else is left as it is."""
    from prefect.client.schemas.actions import DeploymentScheduleUpdate, DeploymentUpdate
    from prefect.client.schemas.schedules import IntervalSchedule

    d, e = item.desired, item.existing
    assert d is not None and e is not None
    fields: dict[str, Any] = {
        "parameters": dict(d.parameters),
        "description": d.description,
        "tags": list(d.tags),
    }
    if d.interval is not None and any(c.startswith("schedule") for c in item.changes):
        fields["schedules"] = [
            DeploymentScheduleUpdate(
                schedule=IntervalSchedule(
                    interval=d.interval,
                    anchor_date=d.anchor or anchor_for(d.full_name, d.interval),
                    timezone="UTC",
                ),
                active=True,
            )
        ]
    if work_pool is not None and e.work_pool_name != work_pool:
        fields["work_pool_name"] = work_pool
    if PAUSED_CHANGE in item.changes:
        fields["paused"] = False
    if any(c.startswith("entrypoint") for c in item.changes):
        # an entrypoint from before the acmeflow namespace (``flows/renew.py:renew``)
        fields["entrypoint"] = d.entrypoint
    if flow is not None and any(c.startswith("form") for c in item.changes):
        from prefect.utilities.callables import parameter_schema

        fields["parameter_openapi_schema"] = parameter_schema(flow.fn).model_dump(
            exclude_unset=True
        )
    await client.update_deployment(e.id, DeploymentUpdate(**fields))


async def sync_schedules(
    client: PrefectClient,
    desired: DesiredSet | None = None,
    *,
    work_pool: str | None = None,
    apply: ApplyFn | None = None,
) -> SyncReport:
    """Reconcile the Prefect API with the desired deployments (from the database when
    ``desired`` is None); returns what was created, updated, deleted and left unchanged.

    New deployments go to ``work_pool`` when given (run by a worker) and otherwise have none
    (run by ``acmeflow serve``); ``work_pool`` also moves existing ones. ``apply`` replaces how a
    created or changed deployment is written (``serve`` registers it with its runner). One
    failure does not stop the rest: it is reported in ``failed``.
    """
    from prefect.exceptions import ObjectNotFound

    if desired is None:
        desired = await asyncio.to_thread(desired_from_database)
    existing = await read_owned_deployments(client)
    report = SyncReport(skipped=list(desired.skipped))
    for item in plan_sync(desired, existing, work_pool=work_pool):
        try:
            if item.action == "unchanged":
                report.unchanged.append(item.full_name)
                continue
            if item.action == "delete":
                assert item.existing is not None
                with contextlib.suppress(ObjectNotFound):  # already gone is fine
                    await client.delete_deployment(item.existing.id)
                report.deleted.append(item.full_name)
                continue
            assert item.desired is not None
            flow = desired.flows[item.desired.flow_key]
            if apply is not None:
                await apply(item.desired, flow)
            elif item.action == "create":
                await create_deployment(item.desired, flow, work_pool=work_pool)
            else:
                await update_deployment(client, item, work_pool=work_pool, flow=flow)
            (report.created if item.action == "create" else report.updated).append(item.full_name)
        except Exception as exc:
            log.warning("could not %s deployment %s: %s", item.action, item.full_name, exc)
            report.failed.append(Skipped(name=item.full_name, reason=f"{item.action}: {exc}"))
            continue
        if item.changes:
            report.changes[item.full_name] = list(item.changes)
    for item_list in (report.created, report.updated, report.deleted, report.unchanged):
        item_list.sort()
    report.ca_choices = await write_ca_choices(client, ca_choices(desired))
    try:
        report.automations = await automations.sync_recovery(client)
    except Exception as exc:
        log.warning("could not write the crash-recovery automations: %s", exc)
        report.failed.append(Skipped(name="crash-recovery automations", reason=str(exc)))
    try:
        wanted = await asyncio.to_thread(limits.limits_from_database)
        report.limits = await limits.sync_limits(client, wanted)
    except Exception as exc:
        log.warning("could not write the global concurrency limits: %s", exc)
        report.failed.append(Skipped(name="global concurrency limits", reason=str(exc)))
    return report


def ca_choices(desired: DesiredSet) -> list[str]:
    """The CA vendors a run form offers: the active ones (each has its renew deployment)."""
    return sorted({d.ca for d in desired.deployments if d.ca})


def with_ca_choices(schema: dict[str, Any], choices: list[str]) -> dict[str, Any]:
    """``schema`` whose ``ca`` parameter (if any) offers exactly ``choices`` (none: free text)."""
    properties = schema.get("properties") or {}
    if "ca" not in properties:
        return schema
    prop = copy.deepcopy(properties["ca"])
    branches = prop.get("anyOf")  # optional: [{type: string}, {type: null}]
    for target in [b for b in branches if b.get("type") == "string"] if branches else [prop]:
        if choices:
            target["enum"] = list(choices)
        else:
            target.pop("enum", None)
    return {**schema, "properties": {**properties, "ca": prop}}


async def write_ca_choices(client: PrefectClient, choices: list[str]) -> list[str]:
    """Make the ``ca`` field of the run form of every owned deployment that leaves ``ca`` to
    the form (``issue/ad-hoc``, ``renew/ad-hoc``) a choice of ``choices``; the deployments
    changed. A ``renew-<ca>`` deployment keeps its fixed ``ca`` and a free-text field (the
    server checks stored parameters against the form, and the CA list changes)."""
    from prefect.client.schemas.actions import DeploymentUpdate

    changed: list[str] = []
    for e in await read_owned_deployments(client):
        if e.schema is None or "ca" in e.parameters:
            continue
        wanted = with_ca_choices(e.schema, choices)
        if wanted != e.schema:
            await client.update_deployment(e.id, DeploymentUpdate(parameter_openapi_schema=wanted))
            changed.append(e.full_name)
    return changed


async def plan_from_api(
    client: PrefectClient, desired: DesiredSet | None = None, *, work_pool: str | None = None
) -> list[PlanItem]:
    """What :func:`sync_schedules` would do, without doing it."""
    if desired is None:
        desired = await asyncio.to_thread(desired_from_database)
    return plan_sync(desired, await read_owned_deployments(client), work_pool=work_pool)


# --- the Prefect API and serve -----------------------------------------------------------------


def api_url() -> str | None:
    """The configured ``PREFECT_API_URL`` (environment, profile or settings context)."""
    from prefect.settings import PREFECT_API_URL

    value = PREFECT_API_URL.value()
    return str(value) if value else None


async def api_problem(timeout: float = 10.0) -> str | None:
    """Why the Prefect API cannot be used (``None`` when it answers its health check).

    Without ``PREFECT_API_URL`` Prefect would start a throw-away server inside this process,
    which neither keeps deployments nor runs schedules: that is a problem too.
    """
    url = api_url()
    if not url:
        return "PREFECT_API_URL is not set"
    from prefect.client.orchestration import get_client

    try:
        async with asyncio.timeout(timeout), get_client() as client:
            error = await client.api_healthcheck()
    except Exception as exc:  # unreachable, TLS, timeout, ...
        error = exc
    if error is not None:
        return f"no Prefect server answers at {url} ({type(error).__name__}: {error})"
    return None


@dataclass
class ServeState:
    """What a serving runner has registered, by full deployment name."""

    served: set[str] = field(default_factory=set)
    last_report: SyncReport | None = None


async def _runner_apply(runner: Runner, state: ServeState, d: DesiredDeployment, flow: Any) -> None:
    kwargs = _deployment_kwargs(d)
    kwargs.pop("concurrency_limit", None)
    limit = _schedule_kwargs(d).get("concurrency_limit")
    await runner.aadd_flow(flow, concurrency_limit=limit, **kwargs)
    state.served.add(d.full_name)


async def resync_runner(
    runner: Runner,
    state: ServeState,
    *,
    loader: FlowLoader = load_flow,
    desired: DesiredSet | None = None,
) -> SyncReport:
    """Reconcile the API with the database and register every desired deployment with
    ``runner`` (created, changed, or created meanwhile by ``acmeflow schedules sync``)."""
    from prefect.client.orchestration import get_client

    if desired is None:
        desired = await asyncio.to_thread(desired_from_database, loader=loader)

    async def apply(d: DesiredDeployment, flow: Flow[Any, Any]) -> None:
        await _runner_apply(runner, state, d, flow)

    async with get_client() as client:
        report = await sync_schedules(client, desired, apply=apply)
    registered = [d for d in desired.deployments if d.full_name not in state.served]
    for d in registered:
        await apply(d, desired.flows[d.flow_key])
    if registered:  # registering rewrote their forms: offer the CAs again
        async with get_client() as client:
            await write_ca_choices(client, ca_choices(desired))
    for name in report.deleted:
        state.served.discard(name)
    state.last_report = report
    return report


def runner_poll_seconds() -> float | None:
    """Seconds between the runner's queries for due runs: ``PREFECT_RUNNER_POLL_FREQUENCY`` when
    set (``None`` lets Prefect read it), else 2 s so triggered runs start within about 2 s."""
    if "PREFECT_RUNNER_POLL_FREQUENCY" in os.environ:
        return None
    return TRIGGER_POLL_SECONDS


async def serve(
    *,
    resync_every: float = 300.0,
    limit: int | None = None,
    loader: FlowLoader = load_flow,
    on_report: Callable[[SyncReport], None] | None = None,
    runner: Runner | None = None,
) -> None:
    """Serve every acmeflow deployment in this process until stopped.

    Syncs the API first (so deployments of removed CAs go away), registers every deployment with
    one Prefect runner, then re-syncs every ``resync_every`` seconds so CA vendors added, changed
    or removed meanwhile are picked up. Schedules are paused when the runner stops. ``runner``
    replaces the default one (tests stop it with ``runner.astop()``).
    """
    import anyio
    from prefect.runner import Runner

    if runner is None:
        runner = Runner(
            name="acmeflow",
            pause_on_shutdown=True,
            limit=limit,
            query_seconds=runner_poll_seconds(),
        )
    state = ServeState()
    report = await resync_runner(runner, state, loader=loader)
    if on_report is not None:
        on_report(report)

    async def resync_loop() -> None:
        while True:
            await anyio.sleep(resync_every)
            try:
                again = await resync_runner(runner, state, loader=loader)
            except Exception as exc:  # keep serving; the next round tries again
                log.warning("re-sync of the deployments failed: %s", exc)
                continue
            if on_report is not None and (again.created or again.updated or again.deleted):
                on_report(again)

    async with anyio.create_task_group() as tg:
        tg.start_soon(resync_loop)
        try:
            await runner.start()
        finally:
            tg.cancel_scope.cancel()

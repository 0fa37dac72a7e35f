"""``acmeflow alerts``: Prefect automations that send acmeflow's events through a notification
block the user already has (Slack, Microsoft Teams, email, a custom webhook, ...).

One automation per alert, named ``acmeflow: <alert>``, reacting to each event of that name
(:mod:`acmeflow.core.alerts`) with a ``SendNotification`` action. Setting up again updates
them in place (another block, other alerts); automations of other names are never touched.
Prefect is imported only here, so the CLI's everyday commands stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from acmeflow.automations import upsert
from acmeflow.core import alerts
from acmeflow.core.errors import ConfigError, NotFound

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

PREFIX = "acmeflow: "
_FIELDS = (
    "{{ event.payload.names }} (certificate {{ event.payload.certificate_id }}, "
    "CA {{ event.payload.ca }})"
)


@dataclass(frozen=True)
class AlertKind:
    """One alert a user can route: its CLI name, event and message templates."""

    key: str
    event: str
    title: str
    subject: str
    body: str
    default: bool = True

    @property
    def automation_name(self) -> str:
        """The name of the automation that sends this alert."""
        return PREFIX + self.title


KINDS = (
    AlertKind(
        "renewal-failed",
        alerts.RENEWAL_FAILED,
        "renewal failed",
        "acmeflow: renewal failed for {{ event.payload.names }}",
        f"Renewal failed: {_FIELDS}.\n{{{{ event.payload.message }}}} "
        "{{ event.payload.detail }}\nIt expires in {{ event.payload.days_left }} day(s).",
    ),
    AlertKind(
        "expiring",
        alerts.EXPIRING,
        "certificate expiring",
        "acmeflow: {{ event.payload.names }} expires in {{ event.payload.days_left }} day(s)",
        f"Certificate expiring: {_FIELDS}, not after {{{{ event.payload.not_after }}}}.\n"
        "{{ event.payload.message }} {{ event.payload.detail }}",
    ),
    AlertKind(
        "deploy-failed",
        alerts.DEPLOY_FAILED,
        "deploy failed",
        "acmeflow: deploying {{ event.payload.names }} to {{ event.payload.target }} failed",
        f"Deployment to target {{{{ event.payload.target }}}} failed: {_FIELDS}.\n"
        "{{ event.payload.message }} {{ event.payload.detail }}",
    ),
    AlertKind(
        "renewal-succeeded",
        alerts.RENEWAL_SUCCEEDED,
        "renewal succeeded",
        "acmeflow: renewed {{ event.payload.names }}",
        f"Renewed: {_FIELDS}; the new certificate expires in "
        "{{ event.payload.days_left }} day(s).",
        default=False,
    ),
)
KIND_KEYS = tuple(k.key for k in KINDS)
_ALERT_NAMES = frozenset(k.automation_name for k in KINDS)


def chosen_kinds(keys: list[str] | None) -> list[AlertKind]:
    """The alerts named by ``keys`` (none: every alert on by default)."""
    if not keys:
        return [k for k in KINDS if k.default]
    unknown = sorted(set(keys) - set(KIND_KEYS))
    if unknown:
        raise ConfigError(
            detail=f"unknown alert {', '.join(unknown)} (choose from {', '.join(KIND_KEYS)})"
        )
    return [k for k in KINDS if k.key in keys]


@dataclass(frozen=True)
class NotificationBlock:
    """A Prefect block that can send notifications."""

    id: UUID
    slug: str
    name: str

    @property
    def reference(self) -> str:
        """``type-slug/name``, as Prefect names blocks."""
        return f"{self.slug}/{self.name}"


async def find_notification_block(client: PrefectClient, reference: str) -> NotificationBlock:
    """The notification block ``reference`` (``NAME`` or ``TYPE-SLUG/NAME``)."""
    slug, _, name = reference.rpartition("/")
    found = [
        NotificationBlock(doc.id, doc.block_type.slug, doc.name or "")
        for doc in await client.read_block_documents(include_secrets=False)
        if doc.name == name
        and doc.block_type is not None
        and (not slug or doc.block_type.slug == slug)
    ]
    if not found:
        raise NotFound(detail=f"no Prefect block named {reference!r} (`prefect block ls`)")
    notifying = [b for b in found if await _can_notify(client, b.id)]
    if not notifying:
        raise ConfigError(detail=f"Prefect block {found[0].reference!r} cannot send notifications")
    if len(notifying) > 1:
        choices = ", ".join(b.reference for b in notifying)
        raise ConfigError(detail=f"several blocks are named {name!r}: give one of {choices}")
    return notifying[0]


async def _can_notify(client: PrefectClient, block_id: UUID) -> bool:
    doc = await client.read_block_document(block_id, include_secrets=False)
    return doc.block_schema is not None and "notify" in doc.block_schema.capabilities


def automation_for(kind: AlertKind, block: NotificationBlock) -> Any:
    """The automation that sends ``kind`` through ``block``."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    return AutomationCore(
        name=kind.automation_name,
        description=f"acmeflow alert: each {kind.event} event, sent through {block.reference}",
        enabled=True,
        trigger=EventTrigger(
            expect={kind.event},
            match={"prefect.resource.id": "acmeflow.certificate.*"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(block_document_id=block.id, subject=kind.subject, body=kind.body)
        ],
    )


@dataclass(frozen=True)
class AlertRoute:
    """An acmeflow automation on the server."""

    name: str
    enabled: bool
    event: str
    block_id: str


async def list_routes(client: PrefectClient) -> list[AlertRoute]:
    """acmeflow's alert automations on the server."""
    routes: list[AlertRoute] = []
    for automation in await client.read_automations():
        if automation.name not in _ALERT_NAMES:  # the crash-recovery ones are not alerts
            continue
        expect = sorted(getattr(automation.trigger, "expect", None) or [])
        blocks = [str(getattr(a, "block_document_id", "")) for a in automation.actions]
        routes.append(
            AlertRoute(automation.name, automation.enabled, ", ".join(expect), ", ".join(blocks))
        )
    return sorted(routes, key=lambda r: r.name)


async def set_up(
    client: PrefectClient, kinds: list[AlertKind], block: NotificationBlock
) -> dict[str, list[str]]:
    """Create or update the automations of ``kinds`` (sending through ``block``)."""
    report: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": []}
    for kind in kinds:
        outcome = await upsert(client, automation_for(kind, block))
        report[outcome].append(kind.automation_name)
    return report


async def remove(client: PrefectClient, kinds: list[AlertKind]) -> list[str]:
    """Delete the automations of ``kinds``; the names deleted."""
    removed: list[str] = []
    for kind in kinds:
        for automation in await client.read_automations_by_name(kind.automation_name):
            await client.delete_automation(automation.id)
            removed.append(kind.automation_name)
    return removed

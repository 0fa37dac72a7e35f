"""Writes acmeflow's global concurrency limits (:mod:`acmeflow.core.limits`) to the Prefect
server: ``schedules sync`` and ``serve`` create the missing ones, update changed ones and
delete the ``acmeflow-*`` limits of CA vendors and DNS providers that are gone;
``schedules limits`` shows them next to the wanted ones.

Prefect is imported only inside the functions (the CLI's everyday commands stay fast).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from acmeflow.config.settings import get_settings
from acmeflow.core.limits import PREFIX, GlobalLimit, desired_limits
from acmeflow.core.state.db import open_database, session_scope

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

PAGE = 200


def limits_from_database() -> list[GlobalLimit]:
    """The limits the configured CA vendors and DNS providers call for."""
    with session_scope(open_database()) as s:
        return desired_limits(s, get_settings())


async def _owned(client: PrefectClient) -> dict[str, Any]:
    """The server's ``acmeflow-*`` limits, by name."""
    found: dict[str, Any] = {}
    offset = 0
    while True:
        page = await client.read_global_concurrency_limits(limit=PAGE, offset=offset)
        found.update({limit.name: limit for limit in page if limit.name.startswith(PREFIX)})
        if len(page) < PAGE:
            return found
        offset += PAGE


def _differs(wanted: GlobalLimit, existing: Any) -> bool:
    return (
        existing.limit != wanted.limit
        or not existing.active
        or (existing.slot_decay_per_second or None) != wanted.slot_decay_per_second
    )


@dataclass(frozen=True)
class LimitState:
    """One ``acmeflow-*`` limit: as wanted, as on the server, and what sync would do."""

    name: str
    wanted: GlobalLimit | None
    limit: int | None  # on the server
    slots_in_use: int | None
    action: str  # create, update, delete or unchanged

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "wanted": self.wanted.describe() if self.wanted else None,
            "about": self.wanted.about if self.wanted else "",
            "server_limit": self.limit,
            "slots_in_use": self.slots_in_use,
            "action": self.action,
        }


async def plan_limits(client: PrefectClient, wanted: list[GlobalLimit]) -> list[LimitState]:
    """The wanted limits next to the server's ``acmeflow-*`` limits, by name."""
    existing = await _owned(client)
    states = []
    for limit in wanted:
        current = existing.pop(limit.name, None)
        if current is None:
            states.append(LimitState(limit.name, limit, None, None, "create"))
            continue
        action = "update" if _differs(limit, current) else "unchanged"
        states.append(LimitState(limit.name, limit, current.limit, current.active_slots, action))
    for name, current in existing.items():
        states.append(LimitState(name, None, current.limit, current.active_slots, "delete"))
    return sorted(states, key=lambda state: state.name)


_DONE = {"create": "created", "update": "updated", "delete": "deleted", "unchanged": "unchanged"}


async def sync_limits(client: PrefectClient, wanted: list[GlobalLimit]) -> dict[str, str]:
    """Make the server's ``acmeflow-*`` limits ``wanted``; per name: "created", "updated",
    "unchanged" or "deleted"."""
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )

    outcome: dict[str, str] = {}
    for state in await plan_limits(client, wanted):
        limit = state.wanted
        if limit is not None and state.action != "unchanged":
            fields: dict[str, Any] = {
                "limit": limit.limit,
                "active": True,
                "slot_decay_per_second": limit.slot_decay_per_second or 0.0,
            }
            if state.action == "create":
                await client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=limit.name, **fields)
                )
            else:
                await client.update_global_concurrency_limit(
                    limit.name, GlobalConcurrencyLimitUpdate(**fields)
                )
        elif state.action == "delete":  # a CA vendor or DNS provider removed or deactivated
            await client.delete_global_concurrency_limit_by_name(state.name)
        outcome[state.name] = _DONE[state.action]
    return outcome

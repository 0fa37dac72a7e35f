"""Writes acmeflow's global concurrency limits (:mod:`acmeflow.core.limits`) to the Prefect
server: ``schedules sync`` and ``serve`` create the missing ones, update changed ones and
delete the ``acmeflow-*`` limits of CA vendors and DNS providers that are gone.

Prefect is imported only inside the functions (the CLI's everyday commands stay fast).
"""

from __future__ import annotations

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


async def sync_limits(client: PrefectClient, wanted: list[GlobalLimit]) -> dict[str, str]:
    """Make the server's ``acmeflow-*`` limits ``wanted``; per name: "created", "updated",
    "unchanged" or "deleted"."""
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )

    existing = await _owned(client)
    outcome: dict[str, str] = {}
    for limit in wanted:
        fields: dict[str, Any] = {"limit": limit.limit, "active": True}
        fields["slot_decay_per_second"] = limit.slot_decay_per_second or 0.0
        current = existing.pop(limit.name, None)
        if current is None:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=limit.name, **fields)
            )
            outcome[limit.name] = "created"
        elif _differs(limit, current):
            await client.update_global_concurrency_limit(
                limit.name, GlobalConcurrencyLimitUpdate(**fields)
            )
            outcome[limit.name] = "updated"
        else:
            outcome[limit.name] = "unchanged"
    for name in existing:  # a CA vendor or DNS provider removed or deactivated
        await client.delete_global_concurrency_limit_by_name(name)
        outcome[name] = "deleted"
    return outcome

"""The limits every worker of a pool shares, as data: which Prefect global concurrency limits
acmeflow wants, by name (``acmeflow schedules sync`` writes them, the flows hold them).

* ``acmeflow-ca-<name>``: orders of CA vendor <name> in flight at once, across all workers,
  when the CA sets ``max_in_flight`` (none by default: a pool-wide cap on orders in flight
  also caps how far renewals fan out over workers). A batch of orders holds one slot per
  order from before it takes its leases until its cleanup, and is never larger than the cap.
* ``acmeflow-ca-<name>-orders``: the CA's new-order rate (a Prefect rate limit: at most
  ``orders`` at once, slots freed at ``orders / window`` per second); every order takes one.
* ``acmeflow-dns-<name>``: record writes to DNS provider <name> at once, across all workers,
  when ``ACMEFLOW_POOL_DNS_CONCURRENCY`` is set.
* ``acmeflow-renew-runs``: renew runs at once across all workers, one limit for every renew
  deployment (``renew-<ca>``, ``renew/ad-hoc``), when ``ACMEFLOW_POOL_RENEW_RUNS`` is set. A
  run holds one slot while it renews; its ``renew/share`` runs count as part of it.

No Prefect here: the names and numbers only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.orm import Session

from acmeflow.config.settings import Settings
from acmeflow.core.state import cas, dns_providers

PREFIX = "acmeflow-"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _safe(name: str) -> str:
    return _UNSAFE.sub("-", name)


#: The limit on renew runs at once, shared by every renew deployment.
RENEW_RUNS_LIMIT = f"{PREFIX}renew-runs"


def ca_slots_name(ca: str) -> str:
    """The limit on CA vendor ``ca``'s orders in flight."""
    return f"{PREFIX}ca-{_safe(ca)}"


def ca_rate_name(ca: str) -> str:
    """The rate limit on CA vendor ``ca``'s new orders."""
    return f"{PREFIX}ca-{_safe(ca)}-orders"


def dns_slots_name(provider: str) -> str:
    """The limit on DNS provider ``provider``'s record writes at once."""
    return f"{PREFIX}dns-{_safe(provider)}"


@dataclass(frozen=True)
class GlobalLimit:
    """One Prefect global concurrency limit as acmeflow wants it."""

    name: str
    limit: int
    slot_decay_per_second: float | None = None  # set: a rate limit
    about: str = ""

    def describe(self) -> str:
        if self.slot_decay_per_second:
            return f"{self.limit} at once, {self.slot_decay_per_second:.4g} freed per second"
        return f"{self.limit} at once"


def desired_limits(s: Session, settings: Settings) -> list[GlobalLimit]:
    """The limits of every active CA vendor and DNS provider, and of renew runs, by name."""
    wanted: list[GlobalLimit] = []
    for ca in cas.list_cas(s, include_inactive=False):
        if ca.max_in_flight:
            wanted.append(
                GlobalLimit(
                    ca_slots_name(ca.name),
                    ca.max_in_flight,
                    about=f"orders of CA vendor {ca.name} in flight",
                )
            )
        if ca.rate_orders and ca.rate_window_seconds:
            wanted.append(
                GlobalLimit(
                    ca_rate_name(ca.name),
                    ca.rate_orders,
                    slot_decay_per_second=ca.rate_orders / ca.rate_window_seconds,
                    about=f"new orders at CA vendor {ca.name}",
                )
            )
    if settings.pool_dns_concurrency:
        for provider in dns_providers.list_dns_providers(s, include_inactive=False):
            wanted.append(
                GlobalLimit(
                    dns_slots_name(provider.name),
                    settings.pool_dns_concurrency,
                    about=f"record writes to DNS provider {provider.name}",
                )
            )
    if settings.pool_renew_runs:
        wanted.append(
            GlobalLimit(RENEW_RUNS_LIMIT, settings.pool_renew_runs, about="renew runs at once")
        )
    return sorted(wanted, key=lambda limit: limit.name)

"""Prove a DNS provider end to end (``acmeflow dns check``): write a test TXT value where a
real challenge would go (CNAME delegation followed), see it at every authoritative
nameserver, and always remove it; warn when the domain's mapping would send real challenges
elsewhere."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from acmeflow.core import errors, issuance
from acmeflow.core.dns01 import ChallengeRecord, DNSLookup, await_propagation
from acmeflow.core.dnsprovider import DNSProvider
from acmeflow.core.state import provider_index

CHECK_VALUE_PREFIX = "acmeflow-check-"


@dataclass
class Step:
    """One reported step: ``written``, ``seen`` (one per nameserver) or ``removed``."""

    step: str
    ok: bool
    seconds: float
    detail: str = ""
    nameserver: str | None = None

    def __post_init__(self) -> None:
        self.seconds = round(self.seconds, 3)


@dataclass
class CheckReport:
    """What ``dns check`` found, as printed with ``--json``."""

    provider: str
    type: str
    domain: str
    record_name: str
    target: str
    value: str
    mapped_to: str | None = None
    warnings: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    ok: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (no secret in it: the value is a random test token)."""
        data = asdict(self)
        data["cname"] = self.target != self.record_name
        return data


class _TimedLookup(DNSLookup):
    """A lookup that notes, per nameserver, when it first served the test value."""

    def __init__(self, base: DNSLookup, value: str, start: float) -> None:
        self.__dict__.update(base.__dict__)  # same resolver, port, time-out and caches
        self.value = value
        self.start = start
        self.asked: set[str] = set()
        self.answered: set[str] = set()
        self.seen: dict[str, float] = {}

    def txt_at(
        self, server: tuple[str, int], name: str, *, timeout: float | None = None
    ) -> set[str] | None:
        served = super().txt_at(server, name, timeout=timeout)
        key = f"{server[0]}:{server[1]}"
        self.asked.add(key)
        if served is not None:
            self.answered.add(key)
            if self.value in served and key not in self.seen:
                self.seen[key] = time.monotonic() - self.start
        return served


def mapping_warnings(
    s: Any, provider_name: str, domain: str, target: str
) -> tuple[str | None, list[str]]:
    """Who a real challenge for ``domain`` would be written by, and what is wrong with that.

    Issuance needs ``domain`` mapped (to any provider) and writes the record at ``target``
    (the CNAME end) through the provider ``target`` is mapped to.
    """
    warnings: list[str] = []
    try:
        provider_index.provider_for_name(s, domain)
    except errors.AcmeflowError as exc:
        warnings.append(
            f"{domain}: {exc.message} ({exc.detail}): certificates for it are neither issued "
            f"nor renewed until it is mapped (acmeflow dns map {provider_name} DOMAIN)"
        )
    try:
        mapped: str | None = provider_index.provider_for_name(s, target).name
    except errors.AcmeflowError as exc:
        mapped = None
        warnings.append(
            f"the challenge record of {domain} ({target}) is not mapped to an active DNS "
            f"provider ({exc.detail}): map its domain to {provider_name}"
        )
    if mapped is not None and mapped != provider_name:
        warnings.append(
            f"the challenge record of {domain} ({target}) is mapped to DNS provider "
            f"{mapped}, not {provider_name}: a renewal writes it through {mapped}"
        )
    return mapped, warnings


def run_check(
    provider: DNSProvider,
    report: CheckReport,
    lookup: DNSLookup,
    *,
    journal: issuance.ChallengeJournal | None = None,
    timeout: float = 180.0,
    interval: float = 0.1,
    on_step: Callable[[Step], None] = lambda _s: None,
) -> CheckReport:
    """Write the test value, wait until every nameserver serves it, always remove it.

    Fills ``report.steps`` and ``report.ok``; raises the catalog error of the first failing
    step (``TXTRecordError``, ``PropagationTimeout``) after the value was removed.
    """
    record = ChallengeRecord(
        identifier=report.domain,
        record_name=report.record_name,
        target=report.target,
        value=report.value,
        provider=report.provider,
    )
    providers = {report.provider: provider}

    def add(step: Step) -> None:
        report.steps.append(step)
        on_step(step)

    failure: errors.AcmeflowError | None = None
    start = time.monotonic()
    try:
        issuance.add_txt_records([record], providers, journal=journal)
        add(
            Step(
                "written",
                True,
                time.monotonic() - start,
                f"{record.target} via {provider.type_name}",
            )
        )
        seen_from = time.monotonic()
        timed = _TimedLookup(lookup, record.value, seen_from)
        try:
            await_propagation(
                [record],
                timed,
                nameservers_for=lambda _r: provider.check_nameservers(),
                timeout=timeout,
                interval=interval,
            )
        finally:
            for server in sorted(timed.asked):
                if server in timed.seen:
                    add(Step("seen", True, timed.seen[server], "", server))
                else:
                    why = "served other values" if server in timed.answered else "no answer"
                    add(Step("seen", False, time.monotonic() - seen_from, why, server))
    except errors.AcmeflowError as exc:
        failure = exc
        if not report.steps:
            add(Step("written", False, time.monotonic() - start, exc.detail or exc.message))
    finally:
        removed_from = time.monotonic()
        problems = issuance.cleanup_txt_records([record], providers, journal=journal)
        gone = not problems or _confirmed_absent(provider, record)
        if problems and gone and journal is not None:
            journal.forget([record])  # the value was never written: nothing is left
        detail = "; ".join(problems)
        if problems and gone:
            detail = f"nothing to remove: {provider.type_name} does not hold the value"
        add(Step("removed", gone, time.monotonic() - removed_from, detail))
    if failure is not None:
        raise failure
    if problems and not gone:
        raise errors.TXTRecordError(detail="; ".join(problems))
    report.ok = True
    return report


def _confirmed_absent(provider: DNSProvider, record: ChallengeRecord) -> bool:
    """Whether the provider says the value is not there (False when it cannot tell)."""
    try:
        return record.value not in provider.txt_values(record.target)
    except Exception:
        return False

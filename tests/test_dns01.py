"""Propagation checks: every authoritative nameserver, provider overrides, clear time-outs."""

from __future__ import annotations

import pytest

from acmeflow.core import errors
from acmeflow.core.dns01 import (
    ChallengeRecord,
    DNSLookup,
    _host_port,
    await_propagation,
    plan_records,
)


class FakeLookup(DNSLookup):
    """A stand-in for DNS: zones with nameservers whose answers change over (fake) time."""

    def __init__(self, served_after: dict[tuple[str, str], int], cnames: dict[str, str]) -> None:
        super().__init__(["192.0.2.53"], query_port=5353)
        self.served_after = served_after  # (server, name) -> polls before it serves the value
        self.cnames = cnames
        self.polls: dict[tuple[str, str], int] = {}

    def follow_cnames(self, name: str, nameservers: object = None) -> str:
        while name in self.cnames:
            name = self.cnames[name]
        return name

    def zone_of(self, name: str) -> str:
        return name.split(".", 1)[1].split(".", 1)[1] if name.count(".") > 2 else name

    def authoritative_servers(self, zone: str) -> list[tuple[str, int]]:
        return [("192.0.2.1", 53), ("192.0.2.2", 53)]

    def txt_at(
        self, server: tuple[str, int], name: str, *, timeout: float | None = None
    ) -> set[str] | None:
        key = (server[0], name)
        self.polls[key] = self.polls.get(key, 0) + 1
        return {"v"} if self.polls[key] > self.served_after.get(key, 0) else set()


def record(target: str) -> ChallengeRecord:
    return ChallengeRecord("x", target, target, "v", "p")


def test_waits_for_every_authoritative_nameserver() -> None:
    name = "_acme-challenge.a.example.com"
    lookup = FakeLookup({("192.0.2.2", name): 3}, {})
    sleeps: list[float] = []
    checked = await_propagation([record(name)], lookup, sleep=sleeps.append, interval=0.1)
    assert checked[name] == ["192.0.2.1:53", "192.0.2.2:53"]
    assert lookup.polls[("192.0.2.2", name)] == 4
    assert lookup.polls[("192.0.2.1", name)] == 1  # served at once: not asked again
    assert sleeps == [0.1, 0.1, 0.1]


def test_provider_nameserver_override_wins() -> None:
    name = "_acme-challenge.a.example.com"
    lookup = FakeLookup({}, {})
    checked = await_propagation(
        [record(name)], lookup, nameservers_for=lambda _r: ["10.0.0.53:8053"], sleep=lambda _s: None
    )
    assert checked[name] == ["10.0.0.53:8053"]


def test_timeout_names_what_is_missing_where() -> None:
    name = "_acme-challenge.b.example.com"
    lookup = FakeLookup({("192.0.2.1", name): 10**6}, {})
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(errors.PropagationTimeout) as raised:
        await_propagation(
            [record(name)], lookup, timeout=5, interval=1, sleep=sleep, clock=lambda: now[0]
        )
    assert f"{name} at 192.0.2.1:53" in str(raised.value.detail)
    assert "192.0.2.2" not in str(raised.value.detail)


def test_records_follow_cname_delegation() -> None:
    lookup = FakeLookup({}, {"_acme-challenge.a.example.com": "a.challenges.example.net"})
    records = plan_records([("a.example.com", "_acme-challenge.a.example.com", "v")], lookup)
    assert records[0].target == "a.challenges.example.net"
    assert records[0].record_name == "_acme-challenge.a.example.com"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ns1", ("ns1", 53)),
        ("127.0.0.1:5300", ("127.0.0.1", 5300)),
        ("[::1]:53", ("::1", 53)),
        ("::1", ("::1", 53)),
    ],
)
def test_nameserver_specs(spec: str, expected: tuple[str, int]) -> None:
    assert _host_port(spec, 53) == expected


class CountingLookup(DNSLookup):
    """Counts how often the NS set of a zone is really looked up."""

    def __init__(self, servers_ttl: float) -> None:
        super().__init__(["192.0.2.53"], servers_ttl=servers_ttl)
        self.lookups = 0

    def _lookup_servers(self, zone: str) -> list[tuple[str, int]]:
        self.lookups += 1
        return [("192.0.2.1", 53)]


@pytest.mark.parametrize(("ttl", "expected"), [(60.0, 1), (0.0, 3)])
def test_nameservers_of_a_zone_are_remembered_for_a_while(ttl: float, expected: int) -> None:
    lookup = CountingLookup(ttl)
    for _ in range(3):
        assert lookup.authoritative_servers("example.com") == [("192.0.2.1", 53)]
    assert lookup.lookups == expected

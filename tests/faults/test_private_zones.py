"""Private zones and delegation: CNAMEs followed where the zone is, failed lookups said plainly.

The "public resolver" of these tests knows none of the sandbox's zones (it answers NXDOMAIN
to everything, root included), or never answers at all; BIND stays the zones' server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from acmeflow.config.settings import get_settings
from acmeflow.core import errors
from acmeflow.core.dns01 import DNSLookup
from acmeflow.sandbox import SandboxInfo
from tests.fakes.dns_servers import NxdomainResolver, SilentDNS
from tests.fixtures_acmeflow import Home
from tests.test_issue_e2e import assert_valid_chain, issue_json, san, txt_values

DELEGATED = "_acme-challenge.delegated.example.com"  # a CNAME in the sandbox's example.com
DELEGATION_TARGET = "_acme-challenge.delegated.example.com.challenges.example.net"


@pytest.fixture
def public_resolver() -> Iterator[NxdomainResolver]:
    with NxdomainResolver() as resolver:
        assert isinstance(resolver, NxdomainResolver)
        yield resolver


def bind(sandbox: SandboxInfo) -> str:
    return f"{sandbox.dns_host}:{sandbox.dns_port}"


@pytest.mark.sandbox
def test_zone_discovery_on_a_private_zone_names_the_resolver_and_the_way_out(
    sandbox: SandboxInfo, public_resolver: NxdomainResolver
) -> None:
    lookup = DNSLookup([public_resolver.address], query_port=sandbox.dns_port)
    with pytest.raises(errors.DNSLookupFailed) as raised:
        lookup.zone_of(DELEGATED)
    detail = str(raised.value.detail)
    assert public_resolver.address in detail
    assert "nameservers=" in detail and "ACMEFLOW_DNS_RESOLVERS" in detail
    assert "This should never happen" not in detail


@pytest.mark.sandbox
def test_a_cname_lookup_that_gets_no_answer_fails_naming_the_resolver() -> None:
    """It was taken for "no CNAME", silently."""
    with SilentDNS() as silent:
        lookup = DNSLookup([silent.address], timeout=0.5)
        started = time.monotonic()
        with pytest.raises(errors.DNSLookupFailed) as raised:
            lookup.follow_cnames(DELEGATED)
        assert silent.address in str(raised.value.detail)
        assert silent.queries >= 1
    assert time.monotonic() - started < 5


@pytest.mark.sandbox
def test_cnames_are_followed_at_the_providers_nameservers(
    sandbox: SandboxInfo, public_resolver: NxdomainResolver
) -> None:
    lookup = DNSLookup([public_resolver.address], query_port=sandbox.dns_port)
    assert lookup.follow_cnames(DELEGATED) == DELEGATED  # the public view has no CNAME
    assert lookup.follow_cnames(DELEGATED, [bind(sandbox)]) == DELEGATION_TARGET


def private_home(home_factory, sandbox: SandboxInfo, resolver: str, monkeypatch) -> Home:
    home = home_factory(sandbox)
    monkeypatch.setenv("ACMEFLOW_DNS_RESOLVERS", resolver)
    get_settings.cache_clear()
    assert home.add_sandbox_ca().exit_code == 0
    return home


@pytest.mark.sandbox
@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_a_delegated_challenge_in_private_zones_is_issued(
    home_factory, sandbox, public_resolver, monkeypatch
) -> None:
    home = private_home(home_factory, sandbox, public_resolver.address, monkeypatch)
    for provider, zone in (("bind-com", "example.com"), ("bind-net", "challenges.example.net")):
        assert home.add_zone_provider(provider, zone).exit_code == 0
        home.ok("dns", "edit", provider, "--set", f"nameservers={bind(sandbox)}")
        home.ok("dns", "map", provider, zone)
    issued = issue_json(home, "--name", "delegated.example.com")
    assert san(assert_valid_chain(home, issued)) == {"delegated.example.com"}
    assert txt_values(sandbox, DELEGATION_TARGET) == []


@pytest.mark.sandbox
@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_rfc2136_finds_a_private_zone_at_its_own_server(
    home_factory, sandbox, public_resolver, monkeypatch
) -> None:
    """No nameservers= at all: the RFC 2136 provider asks its server for the zone (certbot's
    rfc2136 plugin does the same) and propagation is checked there."""
    home = private_home(home_factory, sandbox, public_resolver.address, monkeypatch)
    assert home.add_zone_provider("bind-com", "example.com").exit_code == 0
    home.ok("dns", "map", "bind-com", "example.com")
    issued = issue_json(home, "--name", "private.example.com")
    assert san(assert_valid_chain(home, issued)) == {"private.example.com"}
    assert public_resolver.queries > 0  # the public view was asked, and knew nothing

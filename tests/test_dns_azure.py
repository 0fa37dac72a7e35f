"""Azure DNS adapter through the real azure-mgmt-dns client against a transport-level ARM fake."""

from __future__ import annotations

import pytest

from acmeflow.core.errors import ConfigError, TXTRecordError
from acmeflow.providers.dns.azure import AzureDNSProvider
from tests.dns_conformance import VALUE_APEX, VALUE_WILDCARD, DNSProviderConformance
from tests.fakes.azure_dns import FakeAzureDNS, FakeCredential

SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
GROUP = "dns-rg"
CLIENT_SECRET = "azure-client-secret-~1234567890"


@pytest.fixture
def arm() -> FakeAzureDNS:
    fake = FakeAzureDNS(SUBSCRIPTION, tokens={"good-token": "ok", "reader-token": "reader"})
    fake.add_zone(GROUP, "example.com")
    fake.add_zone(GROUP, "sub.example.com")
    return fake


def _provider(arm: FakeAzureDNS, token: str = "good-token", **extra: str) -> AzureDNSProvider:
    settings = {"subscription_id": SUBSCRIPTION, "resource_group": GROUP, **extra}
    return AzureDNSProvider(
        settings,
        {"client_secret": CLIENT_SECRET},
        credential=FakeCredential(token),
        transport=arm.transport(),
    )


class TestAzureConformance(DNSProviderConformance):
    @pytest.fixture
    def zone(self) -> str:
        return "example.com"

    @pytest.fixture
    def provider(self, arm: FakeAzureDNS) -> AzureDNSProvider:
        return _provider(arm)

    @pytest.fixture
    def broken_secret(self) -> str:
        return CLIENT_SECRET

    @pytest.fixture
    def broken_provider(self, arm: FakeAzureDNS) -> AzureDNSProvider:
        # the identity may read the zone but has no write role: ARM answers 403
        return _provider(arm, token="reader-token", zone="example.com")


def test_record_sets_are_relative_and_in_the_longest_zone(arm: FakeAzureDNS) -> None:
    provider = _provider(arm)
    provider.present("_acme-challenge.www.sub.example.com", VALUE_APEX)
    assert arm.txt(GROUP, "sub.example.com", "_acme-challenge.www") == [VALUE_APEX]
    assert arm.txt(GROUP, "example.com", "_acme-challenge.www.sub") == []
    writes = [r for r in arm.requests if r[0] == "PUT"]
    assert writes[-1][1].endswith("/dnsZones/sub.example.com/TXT/_acme-challenge.www")
    assert writes[-1][2].get("If-None-Match") == "*"


def test_concurrent_writer_is_not_lost(arm: FakeAzureDNS) -> None:
    """Someone adds a value between our read and our write: 412, re-read, both values stay."""
    provider = _provider(arm, zone="example.com")
    name = "_acme-challenge.race"
    arm.put_raw(GROUP, "example.com", name, [VALUE_WILDCARD])
    arm.before_write = lambda zone, rel: arm.put_raw(
        GROUP, zone, rel, [VALUE_WILDCARD, "other-writer-value"]
    )
    provider.present(f"{name}.example.com", VALUE_APEX)
    assert sorted(arm.txt(GROUP, "example.com", name)) == sorted(
        [VALUE_WILDCARD, "other-writer-value", VALUE_APEX]
    )
    statuses = [r[0] for r in arm.requests]
    assert statuses.count("PUT") == 2  # the first was refused with 412


def test_cleanup_of_the_last_value_deletes_with_if_match(arm: FakeAzureDNS) -> None:
    provider = _provider(arm)
    name = "_acme-challenge.last.example.com"
    provider.present(name, VALUE_APEX)
    provider.cleanup(name, VALUE_APEX)
    method, _path, headers = arm.requests[-1]
    assert method == "DELETE"
    assert headers.get("If-Match")
    assert arm.txt(GROUP, "example.com", "_acme-challenge.last") == []


def test_apex_record_set_is_at(arm: FakeAzureDNS) -> None:
    provider = _provider(arm)
    provider.present("example.com", VALUE_APEX)
    assert arm.txt(GROUP, "example.com", "@") == [VALUE_APEX]


def test_bad_token_is_an_authentication_error(arm: FakeAzureDNS) -> None:
    provider = _provider(arm, token="expired-token")
    with pytest.raises(TXTRecordError) as info:
        provider.present("_acme-challenge.example.com", VALUE_APEX)
    assert info.value.detail is not None
    assert info.value.detail.startswith("azure: ")
    assert "AuthenticationFailed" in info.value.detail


def test_unknown_zone_is_reported(arm: FakeAzureDNS) -> None:
    provider = _provider(arm, zone="example.org")
    with pytest.raises(TXTRecordError) as info:
        provider.present("_acme-challenge.example.org", VALUE_APEX)
    assert info.value.detail is not None and "ParentResourceNotFound" in info.value.detail


def test_client_secret_credential_needs_tenant_and_client() -> None:
    with pytest.raises(ConfigError) as info:
        AzureDNSProvider(
            {"subscription_id": SUBSCRIPTION, "resource_group": GROUP, "client_id": "app"},
            {"client_secret": CLIENT_SECRET},
        )
    assert info.value.detail == "azure: missing field 'tenant_id'"
    with pytest.raises(ConfigError) as info:
        AzureDNSProvider({"resource_group": GROUP}, {})
    assert info.value.detail == "azure: missing field 'subscription_id'"


def test_repr_hides_the_client_secret() -> None:
    provider = AzureDNSProvider(
        {
            "subscription_id": SUBSCRIPTION,
            "resource_group": GROUP,
            "tenant_id": "tenant",
            "client_id": "app",
        },
        {"client_secret": CLIENT_SECRET},
    )
    assert CLIENT_SECRET not in repr(provider)
    assert "client-secret" in repr(provider)

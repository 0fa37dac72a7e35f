"""Google Cloud DNS adapter through google-cloud-dns against an HTTP fake of the v1 REST API."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from google.auth.credentials import AnonymousCredentials

from acmeflow.core.errors import ConfigError, TXTRecordError
from acmeflow.providers.dns.google import GoogleCloudDNSProvider
from tests.dns_conformance import VALUE_APEX, VALUE_WILDCARD, DNSProviderConformance
from tests.fakes.google_dns import FakeCloudDNS

PROJECT = "acme-project"


@pytest.fixture
def cloud() -> Iterator[FakeCloudDNS]:
    fake = FakeCloudDNS().start()
    fake.add_zone(PROJECT, "example-com", "example.com.")
    fake.add_zone(PROJECT, "sub-example-com", "sub.example.com.")
    try:
        yield fake
    finally:
        fake.stop()


def _provider(cloud: FakeCloudDNS, **settings: str) -> GoogleCloudDNSProvider:
    return GoogleCloudDNSProvider(
        {"project": PROJECT, "api_endpoint": cloud.endpoint, **settings},
        {},
        credentials=AnonymousCredentials(),
    )


class TestGoogleCloudDNSConformance(DNSProviderConformance):
    @pytest.fixture
    def zone(self) -> str:
        return "example.com"

    @pytest.fixture
    def provider(self, cloud: FakeCloudDNS) -> GoogleCloudDNSProvider:
        return _provider(cloud)

    @pytest.fixture
    def broken_secret(self) -> str:
        return "-----BEGIN PRIVATE KEY-----not-a-real-key"

    @pytest.fixture
    def broken_provider(self, cloud: FakeCloudDNS, broken_secret: str) -> GoogleCloudDNSProvider:
        # a project the credentials have no access to: Cloud DNS answers 403
        return GoogleCloudDNSProvider(
            {"project": "someone-elses-project", "api_endpoint": cloud.endpoint},
            {"service_account_json_unused": broken_secret},
            credentials=AnonymousCredentials(),
        )


def test_values_are_quoted_rrdatas_in_the_longest_zone(cloud: FakeCloudDNS) -> None:
    provider = _provider(cloud)
    name = "_acme-challenge.www.sub.example.com"
    provider.present(name, VALUE_APEX)
    provider.present(name, VALUE_WILDCARD)
    assert sorted(cloud.rrdatas(PROJECT, "sub-example-com", name)) == sorted(
        [f'"{VALUE_APEX}"', f'"{VALUE_WILDCARD}"']
    )
    assert cloud.rrdatas(PROJECT, "example-com", name) == []
    # every change was polled until done
    posts = [p for m, p in cloud.requests if m == "POST"]
    polls = [p for m, p in cloud.requests if m == "GET" and "/changes/" in p]
    assert len(posts) == 2 and len(polls) == 2


def test_concurrent_change_is_retried_not_lost(cloud: FakeCloudDNS) -> None:
    provider = _provider(cloud, zone="example-com")
    name = "_acme-challenge.race.example.com"
    cloud.put_raw(PROJECT, "example-com", name, [f'"{VALUE_WILDCARD}"'])
    cloud.before_change = lambda project, zone: cloud.put_raw(
        project, zone, name, [f'"{VALUE_WILDCARD}"', '"other-writer"']
    )
    provider.present(name, VALUE_APEX)
    assert sorted(provider.txt_values(name)) == sorted([VALUE_WILDCARD, "other-writer", VALUE_APEX])
    assert [m for m, _ in cloud.requests].count("POST") == 2  # the first hit 412


def test_cleanup_of_the_last_value_deletes_the_set(cloud: FakeCloudDNS) -> None:
    provider = _provider(cloud)
    name = "_acme-challenge.last.example.com"
    provider.present(name, VALUE_APEX)
    provider.cleanup(name, VALUE_APEX)
    assert (name + ".", "TXT") not in cloud.records[(PROJECT, "example-com")]


def test_configured_zone_must_contain_the_name(cloud: FakeCloudDNS) -> None:
    provider = _provider(cloud, zone="sub-example-com")
    with pytest.raises(TXTRecordError) as info:
        provider.present("_acme-challenge.example.com", VALUE_APEX)
    assert info.value.detail is not None and info.value.detail.startswith("googleclouddns: ")


def test_unknown_managed_zone_is_reported(cloud: FakeCloudDNS) -> None:
    provider = _provider(cloud, zone="nope")
    with pytest.raises(TXTRecordError) as info:
        provider.present("_acme-challenge.example.com", VALUE_APEX)
    assert info.value.detail is not None and "404" in info.value.detail


def test_service_account_json_is_validated_without_echoing_it() -> None:
    bad = json.dumps({"type": "service_account", "private_key": "SECRET-PEM-CONTENT"})
    with pytest.raises(ConfigError) as info:
        GoogleCloudDNSProvider({"project": PROJECT}, {"service_account_json": bad})
    assert info.value.detail is not None
    assert info.value.detail.startswith("googleclouddns: field 'service_account_json'")
    assert "SECRET-PEM-CONTENT" not in str(info.value)


def test_project_is_required() -> None:
    with pytest.raises(ConfigError) as info:
        GoogleCloudDNSProvider({}, {}, credentials=AnonymousCredentials())
    assert info.value.detail == "googleclouddns: missing field 'project'"

"""Route 53 adapter through boto3 against moto in server mode (real HTTP, the AWS wire format)."""

from __future__ import annotations

import boto3
import pytest

from acmeflow.core.errors import ConfigError, TXTRecordError
from acmeflow.providers.dns.registry import build_provider
from acmeflow.providers.dns.route53 import Route53Provider
from tests.dns_conformance import VALUE_APEX, VALUE_WILDCARD, DNSProviderConformance

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture(scope="module")
def aws(moto_url: str) -> object:
    client = boto3.client(
        "route53",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    client.create_hosted_zone(Name="example.com.", CallerReference="public-com")
    client.create_hosted_zone(Name="sub.example.com.", CallerReference="public-sub")
    client.create_hosted_zone(
        Name="example.com.",
        CallerReference="private-com",
        HostedZoneConfig={"PrivateZone": True, "Comment": "split horizon"},
        VPC={"VPCRegion": "us-east-1", "VPCId": "vpc-12345678"},
    )
    return client


def _settings(moto_url: str, **extra: str) -> dict[str, str]:
    return {"access_key_id": ACCESS_KEY, "endpoint_url": moto_url, "region": "us-east-1", **extra}


def _zone_id(aws: object, name: str, private: bool = False) -> str:
    zones = aws.list_hosted_zones()["HostedZones"]  # type: ignore[attr-defined]
    return next(
        z["Id"].rsplit("/", 1)[-1]
        for z in zones
        if z["Name"] == name + "." and z["Config"]["PrivateZone"] == private
    )


def _raw_values(aws: object, zone_id: str, name: str) -> list[str]:
    sets = aws.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]  # type: ignore[attr-defined]
    return sorted(
        r["Value"]
        for s in sets
        if s["Type"] == "TXT" and s["Name"] == name + "."
        for r in s["ResourceRecords"]
    )


class TestRoute53Conformance(DNSProviderConformance):
    @pytest.fixture
    def zone(self) -> str:
        return "example.com"

    @pytest.fixture
    def provider(self, moto_url: str, aws: object) -> Route53Provider:
        provider = build_provider(
            "Amazon Route53", _settings(moto_url), {"secret_access_key": SECRET_KEY}
        )
        assert isinstance(provider, Route53Provider)
        return provider

    @pytest.fixture
    def broken_secret(self) -> str:
        return "brokenSecretKeyThatMustNotLeak1234567890"

    @pytest.fixture
    def broken_provider(self, moto_url: str, aws: object, broken_secret: str) -> Route53Provider:
        # a hosted zone this account does not have: Route 53 answers NoSuchHostedZone
        return Route53Provider(
            _settings(moto_url, hosted_zone_id="Z0000000NOSUCHZONE"),
            {"secret_access_key": broken_secret},
        )


def test_values_are_quoted_txt_strings_in_the_public_zone(moto_url: str, aws: object) -> None:
    provider = Route53Provider(_settings(moto_url), {"secret_access_key": SECRET_KEY})
    name = "_acme-challenge.quoted.example.com"
    provider.present(name, VALUE_APEX)
    provider.present(name, VALUE_WILDCARD)
    public = _zone_id(aws, "example.com")
    assert _raw_values(aws, public, name) == sorted([f'"{VALUE_APEX}"', f'"{VALUE_WILDCARD}"'])
    assert _raw_values(aws, _zone_id(aws, "example.com", private=True), name) == []
    provider.cleanup(name, VALUE_APEX)
    provider.cleanup(name, VALUE_WILDCARD)
    assert _raw_values(aws, public, name) == []


def test_longest_matching_zone_wins(moto_url: str, aws: object) -> None:
    provider = Route53Provider(_settings(moto_url), {"secret_access_key": SECRET_KEY})
    name = "_acme-challenge.www.sub.example.com"
    provider.present(name, VALUE_APEX)
    assert _raw_values(aws, _zone_id(aws, "sub.example.com"), name) == [f'"{VALUE_APEX}"']
    assert _raw_values(aws, _zone_id(aws, "example.com"), name) == []
    provider.cleanup(name, VALUE_APEX)


def test_private_zone_when_asked(moto_url: str, aws: object) -> None:
    provider = Route53Provider(
        _settings(moto_url, private_zone="true", nameservers="10.0.0.2"),
        {"secret_access_key": SECRET_KEY},
    )
    name = "_acme-challenge.private.example.com"
    provider.present(name, VALUE_APEX)
    assert _raw_values(aws, _zone_id(aws, "example.com", private=True), name) == [f'"{VALUE_APEX}"']
    assert _raw_values(aws, _zone_id(aws, "example.com"), name) == []
    assert provider.check_nameservers() == ["10.0.0.2"]
    provider.cleanup(name, VALUE_APEX)


def test_no_hosted_zone_for_the_name(moto_url: str, aws: object) -> None:
    provider = Route53Provider(_settings(moto_url), {"secret_access_key": SECRET_KEY})
    with pytest.raises(TXTRecordError) as info:
        provider.present("_acme-challenge.example.org", VALUE_APEX)
    assert (
        info.value.detail == "route53: no public hosted zone found for _acme-challenge.example.org"
    )


def test_unreachable_endpoint_is_a_txt_record_error() -> None:
    provider = Route53Provider(
        {"access_key_id": ACCESS_KEY, "endpoint_url": "http://127.0.0.1:9", "hosted_zone_id": "Z1"},
        {"secret_access_key": SECRET_KEY},
    )
    provider._max_wait = 1
    with pytest.raises(TXTRecordError) as info:
        provider.present("_acme-challenge.example.com", VALUE_APEX)
    assert info.value.detail is not None and info.value.detail.startswith("route53: ")
    assert SECRET_KEY not in str(info.value)


def test_half_a_key_pair_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Route53Provider({"access_key_id": ACCESS_KEY}, {})
    assert info.value.detail == "route53: missing field 'secret_access_key'"
    with pytest.raises(ConfigError):
        Route53Provider({}, {"secret_access_key": SECRET_KEY})


def test_repr_hides_the_secret(moto_url: str) -> None:
    provider = Route53Provider(_settings(moto_url), {"secret_access_key": SECRET_KEY})
    assert SECRET_KEY not in repr(provider)
    assert "keys" in repr(provider)


def test_assumed_role_credentials_are_used(moto_url: str, aws: object) -> None:
    provider = Route53Provider(
        _settings(moto_url, role_arn="arn:aws:iam::123456789012:role/dns01"),
        {"secret_access_key": SECRET_KEY},
    )
    name = "_acme-challenge.role.example.com"
    provider.present(name, VALUE_APEX)
    assert provider.txt_values(name) == [VALUE_APEX]
    assert provider._client_expiry is not None  # the STS credentials' expiry is tracked
    assert "role=arn:aws:iam::123456789012:role/dns01" in repr(provider)
    provider.cleanup(name, VALUE_APEX)

"""RFC 2136 adapter against the sandbox BIND (real dynamic updates with TSIG)."""

from __future__ import annotations

import base64
import secrets

import dns.message
import dns.query
import dns.rdatatype
import pytest

from acmeflow.core.errors import ConfigError, TXTRecordError
from acmeflow.providers.dns.registry import build_provider
from acmeflow.providers.dns.rfc2136 import RFC2136Provider
from acmeflow.sandbox import SandboxInfo, SandboxZone
from tests.dns_conformance import VALUE_APEX, VALUE_WILDCARD, BatchDNSProviderConformance

pytestmark = pytest.mark.sandbox


def _zone(sandbox: SandboxInfo, name: str) -> SandboxZone:
    return next(z for z in sandbox.zones if z.name == name)


def _settings(sandbox: SandboxInfo, z: SandboxZone, **extra: str) -> dict[str, str]:
    return {
        "server": sandbox.dns_server,
        "tsig_name": z.tsig_name,
        "tsig_algorithm": z.tsig_algorithm,
        **extra,
    }


def _served(sandbox: SandboxInfo, name: str) -> list[str]:
    """What BIND answers for ``name`` TXT, asked independently of the adapter."""
    response = dns.query.udp(
        dns.message.make_query(name, dns.rdatatype.TXT),
        sandbox.dns_host,
        port=sandbox.dns_port,
        timeout=5,
    )
    return sorted(b"".join(r.strings).decode() for rrset in response.answer for r in rrset)


class TestRFC2136Conformance(BatchDNSProviderConformance):
    @pytest.fixture
    def zone(self) -> str:
        return "example.com"

    @pytest.fixture
    def provider(self, sandbox: SandboxInfo, zone: str) -> RFC2136Provider:
        z = _zone(sandbox, zone)
        provider = build_provider(
            "nsupdate (RFC 2136)", _settings(sandbox, z), {"tsig_secret": z.tsig_secret}
        )
        assert isinstance(provider, RFC2136Provider)
        return provider

    @pytest.fixture
    def broken_secret(self) -> str:
        return base64.b64encode(secrets.token_bytes(32)).decode()

    @pytest.fixture
    def broken_provider(
        self, sandbox: SandboxInfo, zone: str, broken_secret: str
    ) -> RFC2136Provider:
        z = _zone(sandbox, zone)
        return RFC2136Provider(_settings(sandbox, z), {"tsig_secret": broken_secret})


def test_values_are_really_served_by_bind(sandbox: SandboxInfo) -> None:
    z = _zone(sandbox, "example.org")
    provider = RFC2136Provider(_settings(sandbox, z), {"tsig_secret": z.tsig_secret})
    name = "_acme-challenge.served.example.org"
    provider.present(name, VALUE_APEX)
    provider.present(name, VALUE_WILDCARD)
    assert _served(sandbox, name) == sorted([VALUE_APEX, VALUE_WILDCARD])
    provider.cleanup(name, VALUE_APEX)
    assert _served(sandbox, name) == [VALUE_WILDCARD]
    provider.cleanup(name, VALUE_WILDCARD)
    assert _served(sandbox, name) == []


def test_zone_is_found_by_soa_for_a_delegated_zone(sandbox: SandboxInfo) -> None:
    z = _zone(sandbox, "challenges.example.net")
    provider = RFC2136Provider(_settings(sandbox, z), {"tsig_secret": z.tsig_secret})
    name = "_acme-challenge.www.challenges.example.net"
    assert provider._zone_for(name) == "challenges.example.net"
    provider.present(name, VALUE_APEX)
    assert _served(sandbox, name) == [VALUE_APEX]
    provider.cleanup(name, VALUE_APEX)


def test_key_of_another_zone_is_refused_with_the_rcode(sandbox: SandboxInfo) -> None:
    other = _zone(sandbox, "example.org")
    provider = RFC2136Provider(
        _settings(sandbox, other, zone="example.com"), {"tsig_secret": other.tsig_secret}
    )
    with pytest.raises(TXTRecordError) as info:
        provider.present("_acme-challenge.refused.example.com", VALUE_APEX)
    assert info.value.detail is not None
    assert info.value.detail.startswith("rfc2136: ")
    assert "REFUSED" in info.value.detail or "NOTAUTH" in info.value.detail
    assert other.tsig_secret not in str(info.value)


def test_unknown_key_name_is_a_txt_record_error(sandbox: SandboxInfo) -> None:
    z = _zone(sandbox, "example.com")
    settings = _settings(sandbox, z)
    settings["tsig_name"] = "no-such-key"
    provider = RFC2136Provider(settings, {"tsig_secret": z.tsig_secret})
    with pytest.raises(TXTRecordError) as info:
        provider.present("_acme-challenge.badkey.example.com", VALUE_APEX)
    assert info.value.detail is not None and info.value.detail.startswith("rfc2136: ")
    assert z.tsig_secret not in str(info.value)


def test_unreachable_server_is_a_txt_record_error() -> None:
    provider = RFC2136Provider({"server": "127.0.0.1:9", "zone": "example.com", "timeout": "1"}, {})
    with pytest.raises(TXTRecordError) as info:
        provider.present("_acme-challenge.example.com", VALUE_APEX)
    assert info.value.detail is not None and info.value.detail.startswith("rfc2136: ")


def test_knot_dns_uses_the_same_adapter(sandbox: SandboxInfo) -> None:
    z = _zone(sandbox, "example.com")
    provider = build_provider("Knot DNS", _settings(sandbox, z), {"tsig_secret": z.tsig_secret})
    assert provider.type_name == "knot"
    name = "_acme-challenge.knot.example.com"
    provider.present(name, VALUE_APEX)
    assert provider.txt_values(name) == [VALUE_APEX]
    provider.cleanup(name, VALUE_APEX)
    assert provider.txt_values(name) == []


@pytest.mark.parametrize(
    ("settings", "secrets", "field"),
    [
        ({}, {}, "server"),
        ({"server": "127.0.0.1", "tsig_name": "k"}, {}, "tsig_secret"),
        ({"server": "127.0.0.1"}, {"tsig_secret": "c2VjcmV0"}, "tsig_name"),
        (
            {"server": "127.0.0.1", "tsig_name": "k", "tsig_algorithm": "hmac-md5"},
            {"tsig_secret": "c2VjcmV0"},
            "tsig_algorithm",
        ),
        ({"server": "127.0.0.1:99999"}, {}, "server"),
    ],
)
def test_bad_configuration_is_rejected(
    settings: dict[str, str], secrets: dict[str, str], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        RFC2136Provider(settings, secrets)
    assert info.value.detail is not None
    assert info.value.detail.startswith("rfc2136: ") and field in info.value.detail


def test_nameservers_override_and_repr_hide_the_key() -> None:
    provider = RFC2136Provider(
        {"server": "127.0.0.1:5353", "tsig_name": "k", "nameservers": "10.0.0.1, ns2:5300"},
        {"tsig_secret": "c3VwZXJzZWNyZXRrZXk="},
    )
    assert provider.check_nameservers() == ["10.0.0.1", "ns2:5300"]
    assert "c3VwZXJzZWNyZXRrZXk=" not in repr(provider)
    assert RFC2136Provider({"server": "127.0.0.1"}, {}).check_nameservers() is None

"""Reusable conformance tests every DNS provider adapter passes (like dns-lexicon's suite).

Subclass :class:`DNSProviderConformance` in a ``test_dns_<type>.py`` module and provide the
fixtures:

- ``provider``: a working :class:`core.dnsprovider.DNSProvider` for ``zone``;
- ``zone``: a zone the provider may write to (names below it are used);
- ``broken_provider``: the same type configured so that the service refuses the change
  (bad key, no permission, unknown zone, ...), built with the secret ``broken_secret``;
- ``broken_secret``: that secret, which must never show in errors or ``repr``.

Every test works on its own name, ``_acme-challenge.<test>.<zone>``, so a shared server
(the sandbox BIND) keeps tests independent and recordings stay deterministic.
"""

from __future__ import annotations

import re

import pytest

from acmeflow.core.dnsprovider import BatchDNSProvider, DNSProvider
from acmeflow.core.errors import TXTRecordError

# Two realistic DNS-01 values (base64url SHA-256 digests, 43 characters).
VALUE_APEX = "LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM"
VALUE_WILDCARD = "3e9NrEVGbHeNcDbmMoNNy3_mNVydxXgK8Ps7sNvGMXg"


class DNSProviderConformance:
    """The behaviour acmeflow relies on, for any provider."""

    @pytest.fixture
    def name(self, request: pytest.FixtureRequest, zone: str) -> str:
        test = re.sub(r"[^a-z0-9]+", "-", request.node.originalname.lower()).strip("-")
        return f"_acme-challenge.{test.removeprefix('test-')[:50]}.{zone}"

    def test_is_a_dns_provider(self, provider: DNSProvider) -> None:
        assert isinstance(provider, DNSProvider)
        assert provider.type_name

    def test_present_makes_value_visible(self, provider: DNSProvider, name: str) -> None:
        assert provider.txt_values(name) == []
        provider.present(name, VALUE_APEX)
        assert provider.txt_values(name) == [VALUE_APEX]

    def test_apex_and_wildcard_values_coexist(self, provider: DNSProvider, name: str) -> None:
        provider.present(name, VALUE_APEX)
        provider.present(name, VALUE_WILDCARD)
        assert sorted(provider.txt_values(name)) == sorted([VALUE_APEX, VALUE_WILDCARD])

    def test_cleanup_removes_only_its_own_value(self, provider: DNSProvider, name: str) -> None:
        provider.present(name, VALUE_APEX)
        provider.present(name, VALUE_WILDCARD)
        provider.cleanup(name, VALUE_APEX)
        assert provider.txt_values(name) == [VALUE_WILDCARD]
        provider.cleanup(name, VALUE_WILDCARD)
        assert provider.txt_values(name) == []

    def test_cleanup_twice_is_fine(self, provider: DNSProvider, name: str) -> None:
        provider.present(name, VALUE_APEX)
        provider.cleanup(name, VALUE_APEX)
        provider.cleanup(name, VALUE_APEX)
        assert provider.txt_values(name) == []

    def test_cleanup_of_a_value_never_present_is_fine(
        self, provider: DNSProvider, name: str
    ) -> None:
        provider.cleanup(name, VALUE_APEX)  # nothing at that name at all
        provider.present(name, VALUE_WILDCARD)
        provider.cleanup(name, VALUE_APEX)  # another value is there: it stays
        assert provider.txt_values(name) == [VALUE_WILDCARD]

    def test_present_twice_keeps_one_value(self, provider: DNSProvider, name: str) -> None:
        provider.present(name, VALUE_APEX)
        provider.present(name, VALUE_APEX)
        assert provider.txt_values(name) == [VALUE_APEX]

    def test_names_are_normalised(self, provider: DNSProvider, name: str) -> None:
        provider.present(name.upper() + ".", VALUE_APEX)
        assert provider.txt_values(name) == [VALUE_APEX]
        provider.cleanup(name + ".", VALUE_APEX)
        assert provider.txt_values(name) == []

    def test_refusal_is_a_catalogued_error_without_secret(
        self, broken_provider: DNSProvider, broken_secret: str, name: str
    ) -> None:
        with pytest.raises(TXTRecordError) as info:
            broken_provider.present(name, VALUE_APEX)
        err = info.value
        assert err.message == (
            "Error adding TXT record for domain validation. "
            "Please check the DNS configuration and try again."
        )
        assert err.detail is not None
        assert err.detail.startswith(f"{broken_provider.type_name}: ")
        assert broken_secret not in str(err)
        assert broken_secret not in repr(err)
        assert broken_secret not in repr(broken_provider)
        assert err.__cause__ is None or broken_secret not in str(err.__cause__)


class BatchDNSProviderConformance(DNSProviderConformance):
    """The same, plus ``present_all``/``cleanup_all`` (:class:`core.dnsprovider.BatchDNSProvider`):
    an order's values written and removed in one exchange, with the single-value rules."""

    @pytest.fixture
    def other_name(self, name: str) -> str:
        return name.replace("_acme-challenge.", "_acme-challenge.other-", 1)

    def test_present_all_writes_every_value(
        self, provider: BatchDNSProvider, name: str, other_name: str
    ) -> None:
        provider.present_all([(name, VALUE_APEX), (name, VALUE_WILDCARD), (other_name, VALUE_APEX)])
        assert sorted(provider.txt_values(name)) == sorted([VALUE_APEX, VALUE_WILDCARD])
        assert provider.txt_values(other_name) == [VALUE_APEX]

    def test_cleanup_all_removes_only_the_values_given(
        self, provider: BatchDNSProvider, name: str, other_name: str
    ) -> None:
        provider.present(name, VALUE_APEX)  # someone else's value on the same name
        provider.present_all([(name, VALUE_WILDCARD), (other_name, VALUE_WILDCARD)])
        provider.cleanup_all([(name, VALUE_WILDCARD), (other_name, VALUE_WILDCARD)])
        assert provider.txt_values(name) == [VALUE_APEX]
        assert provider.txt_values(other_name) == []
        provider.cleanup_all([(name, VALUE_WILDCARD), (name.upper() + ".", VALUE_APEX)])
        assert provider.txt_values(name) == []

    def test_batch_refusal_is_a_catalogued_error_without_secret(
        self, broken_provider: BatchDNSProvider, broken_secret: str, name: str
    ) -> None:
        with pytest.raises(TXTRecordError) as info:
            broken_provider.present_all([(name, VALUE_APEX), (name, VALUE_WILDCARD)])
        assert info.value.detail is not None
        assert info.value.detail.startswith(f"{broken_provider.type_name}: ")
        assert broken_secret not in str(info.value)

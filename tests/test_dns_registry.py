"""The DNS provider registry and catalog: every PRODUCT.md type, lookups, validation, secrets."""

from __future__ import annotations

import argparse
import logging
from importlib.metadata import EntryPoint

import pytest

from acmeflow.core.dnsprovider import DNSProvider, ProviderField, ProviderType
from acmeflow.core.errors import ConfigError
from acmeflow.providers import plugins
from acmeflow.providers.dns import registry
from acmeflow.providers.dns.catalog import LEXICON_SPECS, PRODUCT_LABELS
from acmeflow.providers.dns.lexicon import load_module
from acmeflow.providers.dns.registry import build_provider, get_provider_type, provider_types


def test_every_product_type_is_listed_with_a_backing() -> None:
    by_label = {t.label: t for t in provider_types()}
    assert len(PRODUCT_LABELS) == 70
    missing = [label for label in PRODUCT_LABELS if label not in by_label]
    assert missing == []
    for label in PRODUCT_LABELS:
        ptype = by_label[label]
        assert ptype.backing in ("native", "lexicon", "unsupported")
        if ptype.backing == "unsupported":
            assert ptype.reason and ptype.factory is None
        else:
            assert ptype.factory is not None


def test_native_adapters_win_over_lexicon() -> None:
    for label in ("Amazon Route53", "Azure DNS", "Google Cloud DNS", "nsupdate (RFC 2136)"):
        assert get_provider_type(label).backing == "native"
    assert get_provider_type("Knot DNS").backing == "native"
    assert get_provider_type("ACME DNS").backing == "native"
    names = [t.name for t in provider_types()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("Amazon Route53", "route53"),
        ("route53", "route53"),
        ("AWS", "route53"),
        ("nsupdate", "rfc2136"),
        ("rfc2136", "rfc2136"),
        ("NSUPDATE (rfc 2136)", "rfc2136"),
        ("cloudflare", "cloudflare"),
        ("deSEC.io", "desec"),
        ("Google Cloud DNS", "googleclouddns"),
        ("gandi livedns", "gandi"),
        ("hurricane electric", "henet"),
        ("NS1.com", "nsone"),
    ],
)
def test_lookup_by_id_label_or_alias(query: str, name: str) -> None:
    assert get_provider_type(query).name == name


def test_unknown_type_lists_close_matches() -> None:
    with pytest.raises(ConfigError) as info:
        get_provider_type("cloudflair")
    assert "cloudflare" in (info.value.detail or "").lower()


@pytest.mark.parametrize(
    ("label", "words"),
    [
        ("NLnetLabs NSD", "does not support dynamic updates"),
        ("MaraDNS", "no dynamic update"),
        ("DDNSS.de", "not in dns-lexicon 3.25"),
        ("DNSPod.com", "dnsapi.cn"),
        ("reg.ru", "not in dns-lexicon 3.25"),
    ],
)
def test_unsupported_types_explain_why(label: str, words: str) -> None:
    ptype = get_provider_type(label)
    assert ptype.backing == "unsupported"
    assert words in ptype.reason
    with pytest.raises(ConfigError) as info:
        build_provider(label, {}, {})
    assert words in (info.value.detail or "")
    with pytest.raises(ConfigError):
        get_provider_type(label, require_supported=True)


def test_lexicon_fields_come_from_the_lexicon_modules() -> None:
    for spec in LEXICON_SPECS:
        parser = argparse.ArgumentParser(add_help=False)
        load_module(spec.module).Provider.configure_parser(parser)
        options = {a.dest for a in parser._actions}
        ptype = get_provider_type(spec.name)
        assert ptype.backing == "lexicon"
        for f in ptype.fields:
            if f.name not in ("zone", "ttl", "nameservers"):
                assert f.name in options, (spec.name, f.name)
        for required in spec.required:
            assert required in options
        for group in spec.one_of:
            assert set(group) <= options


def test_secret_like_fields_are_secrets() -> None:
    kinds = {f.name: f.kind for f in get_provider_type("cloudflare").fields}
    assert kinds["auth_token"] == "secret"
    assert kinds["auth_username"] == "setting"
    kinds = {f.name: f.kind for f in get_provider_type("netcup").fields}
    assert kinds == {
        "auth_customer_id": "setting",
        "auth_api_key": "secret",
        "auth_api_password": "secret",
        "zone": "setting",
        "ttl": "setting",
        "nameservers": "setting",
    }
    assert {f.name: f.kind for f in get_provider_type("infoblox").fields}["auth_psw"] == "secret"


def test_every_type_accepts_nameservers() -> None:
    for ptype in provider_types():
        if ptype.backing != "unsupported":
            assert "nameservers" in {f.name for f in ptype.fields}, ptype.name


def test_missing_required_field_is_rejected_by_name() -> None:
    with pytest.raises(ConfigError) as info:
        build_provider("cloudflare", {}, {})
    assert info.value.detail == "cloudflare: missing field 'auth_token'"
    with pytest.raises(ConfigError) as info:
        build_provider("rfc2136", {}, {})
    assert info.value.detail == "rfc2136: missing field 'server'"
    with pytest.raises(ConfigError) as info:
        build_provider("Azure DNS", {"subscription_id": "s"}, {})
    assert info.value.detail == "azure: missing field 'resource_group'"


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        build_provider("rfc2136", {"server": "127.0.0.1", "sever": "x"}, {})
    assert (info.value.detail or "").startswith("rfc2136: unknown field 'sever'")


def test_secret_given_as_setting_is_rejected_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        build_provider("cloudflare", {"auth_token": "plain-text-token-123"}, {})
    assert "is a secret" in (info.value.detail or "")
    assert "plain-text-token-123" not in str(info.value)


def test_setting_stored_as_secret_is_accepted() -> None:
    provider = build_provider("rfc2136", {}, {"server": "127.0.0.1:5353"})
    assert provider.type_name == "rfc2136"


@pytest.mark.parametrize(
    ("type_name", "settings", "secrets", "secret"),
    [
        (
            "rfc2136",
            {"server": "127.0.0.1", "tsig_name": "k"},
            {"tsig_secret": "c2VjcmV0a2V5MTIz"},
            "c2VjcmV0a2V5MTIz",
        ),
        (
            "route53",
            {"access_key_id": "AKIAEXAMPLE"},
            {"secret_access_key": "aws-secret-xyz"},
            "aws-secret-xyz",
        ),
        ("cloudflare", {}, {"auth_token": "cf-secret-token"}, "cf-secret-token"),
        (
            "acmedns",
            {"server": "https://auth.example.org", "username": "u", "subdomain": "s"},
            {"password": "acme-dns-pass"},
            "acme-dns-pass",
        ),
        (
            "googleclouddns",
            {"project": "p", "zone": "z"},
            {"service_account_json": '{"private_key": "PEMSECRET"}'},
            "PEMSECRET",
        ),
    ],
)
def test_secret_never_in_repr_or_error(
    type_name: str, settings: dict[str, str], secrets: dict[str, str], secret: str
) -> None:
    try:
        provider = build_provider(type_name, settings, secrets)
    except ConfigError as exc:  # a bad key must not echo it either
        assert secret not in str(exc) and secret not in repr(exc)
        return
    assert isinstance(provider, DNSProvider)
    assert secret not in repr(provider)
    assert secret not in str(provider)


def test_plugins_are_listed_and_broken_ones_tolerated(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    plugin = ProviderType(
        name="exampledns",
        label="Example DNS",
        backing="native",
        fields=(ProviderField("token", kind="secret"),),
        factory=lambda settings, secrets: build_provider("rfc2136", {"server": "127.0.0.1"}, {}),
    )
    import sys
    import types

    module = types.ModuleType("acmeflow_test_plugin")
    module.PROVIDER = plugin  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "acmeflow_test_plugin", module)
    eps = [
        EntryPoint("exampledns", "acmeflow_test_plugin:PROVIDER", registry.ENTRY_POINT_GROUP),
        EntryPoint("broken", "acmeflow_no_such_module:PROVIDER", registry.ENTRY_POINT_GROUP),
        EntryPoint(
            "rfc2136", "acmeflow.providers.dns.rfc2136:PROVIDER", registry.ENTRY_POINT_GROUP
        ),
    ]
    monkeypatch.setattr(plugins, "entry_points", lambda group: eps)
    registry.reset_provider_types()
    request.addfinalizer(registry.reset_provider_types)  # the next test sees the real plugins
    with caplog.at_level(logging.WARNING):
        types_ = provider_types()
    assert get_provider_type("Example DNS").name == "exampledns"
    assert [t.name for t in types_].count("rfc2136") == 1
    assert "broken" in caplog.text
    with pytest.raises(ConfigError) as info:
        build_provider("exampledns", {}, {})
    assert info.value.detail == "exampledns: missing field 'token'"

"""Domain-name normalization and validation (core.names)."""

from __future__ import annotations

import pickle

import pytest

from acmeflow.core import names
from acmeflow.core.errors import CertificateInvalidDomain, DomainNeedsDot, InvalidDomainName
from acmeflow.core.names import (
    certificate_names_problem,
    challenge_base,
    challenge_record_name,
    is_wildcard,
    normalize_name,
    normalize_names,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("example.com", "example.com"),
        ("  WWW.Example.COM.  ", "www.example.com"),
        ("*.example.com", "*.example.com"),
        ("*.Example.com.", "*.example.com"),
        ("a-b.example.com", "a-b.example.com"),
        ("123.example.com", "123.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("*.bücher.example", "*.xn--bcher-kva.example"),
        ("mañana.example.com", "xn--maana-pta.example.com"),
    ],
)
def test_valid_names_are_normalized(raw: str, expected: str) -> None:
    assert normalize_name(raw) == expected


def test_name_without_dot_has_the_catalog_message() -> None:
    with pytest.raises(DomainNeedsDot) as info:
        normalize_name("testdomain")
    assert info.value.message == (
        'Invalid identifiers requested :: Cannot issue for "testdomain": '
        "Domain name needs at least one dot"
    )
    assert str(info.value).startswith(info.value.message)
    assert info.value.name == "testdomain"


def test_name_without_dot_is_reported_normalized() -> None:
    with pytest.raises(DomainNeedsDot) as info:
        normalize_name(" TestDomain. ")
    assert 'Cannot issue for "testdomain"' in info.value.message


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("example..com", "empty label"),
        (".example.com", "empty label"),
        ("example.com..", "empty label"),
        ("under_score.example.com", "underscore"),
        ("has space.example.com", "a space"),
        ("bad!char.example.com", '"!"'),
        ("-lead.example.com", "hyphen"),
        ("trail-.example.com", "hyphen"),
        ("ab--cd.example.com", "third and fourth"),
        ("xn--zz.example.com", "A-label"),
        ("a" * 64 + ".example.com", "64 characters"),
        (".".join(["a" * 63] * 4) + ".com", "characters long"),
        ("a*.example.com", "wildcard"),
        ("*.*.example.com", "wildcard"),
        ("foo.*.com", "wildcard"),
        ("*", "wildcard"),
        ("*example.com", "wildcard"),
        ("*.com", "wildcard must cover"),
        ("999.1.1.1", "all numeric"),
        ("bü_cher.example", "internationalized"),
    ],
)
def test_invalid_names_raise_invalid_domain_name(raw: str, why: str) -> None:
    with pytest.raises(InvalidDomainName) as info:
        normalize_name(raw)
    assert info.value.message == (
        "Invalid domain name provided. Please check the domain name and try again."
    )
    assert info.value.detail is not None
    assert why in info.value.detail


def test_invalid_name_detail_names_the_name() -> None:
    with pytest.raises(InvalidDomainName) as info:
        normalize_name("Under_Score.Example.com")
    assert '"under_score.example.com"' in (info.value.detail or "")


def test_longest_valid_name_is_accepted() -> None:
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters
    assert len(name) == 253
    assert normalize_name(name) == name
    with pytest.raises(InvalidDomainName):
        normalize_name("e" + name)


@pytest.mark.parametrize("raw", ["192.0.2.1", "::1", "2001:db8::1", "[2001:db8::1]", "10.0.0.1."])
def test_ip_literals_are_invalid_for_acme(raw: str) -> None:
    with pytest.raises(CertificateInvalidDomain) as info:
        normalize_name(raw)
    assert info.value.message == "Certificate has invalid domain"
    assert "IP address" in (info.value.detail or "")


def test_errors_survive_pickling() -> None:
    with pytest.raises(DomainNeedsDot) as info:
        normalize_name("testdomain")
    clone = pickle.loads(pickle.dumps(info.value))
    assert clone.message == info.value.message
    assert clone.detail == info.value.detail


def test_normalize_names_dedupes_and_keeps_order() -> None:
    names = normalize_names(
        ["B.example.com", "a.example.com", "b.example.com.", "*.example.com", "bücher.example"]
    )
    assert names == ["b.example.com", "a.example.com", "*.example.com", "xn--bcher-kva.example"]


def test_normalize_names_treats_unicode_and_a_label_as_duplicates() -> None:
    assert normalize_names(["bücher.example", "xn--bcher-kva.example"]) == ["xn--bcher-kva.example"]


def test_normalize_names_rejects_empty_list() -> None:
    with pytest.raises(InvalidDomainName):
        normalize_names([])


def test_normalize_names_propagates_the_first_error() -> None:
    with pytest.raises(DomainNeedsDot):
        normalize_names(["ok.example.com", "testdomain", "192.0.2.1"])
    with pytest.raises(CertificateInvalidDomain):
        normalize_names(["ok.example.com", "192.0.2.1", "testdomain"])


def test_challenge_names() -> None:
    assert challenge_base("*.Example.com") == "example.com"
    assert challenge_base("www.example.com") == "www.example.com"
    assert challenge_record_name("*.example.com") == "_acme-challenge.example.com"
    assert challenge_record_name("example.com") == "_acme-challenge.example.com"
    assert challenge_record_name("bücher.example") == "_acme-challenge.xn--bcher-kva.example"
    assert is_wildcard("*.example.com")
    assert not is_wildcard("www.example.com")


def test_challenge_names_validate() -> None:
    with pytest.raises(DomainNeedsDot):
        challenge_record_name("localhost")


def test_certificate_names_problem() -> None:
    assert certificate_names_problem(["example.com", "*.example.com"]) is None
    problem = certificate_names_problem(["example.com", "192.0.2.1"])
    assert problem is not None and "192.0.2.1" in problem
    problem = certificate_names_problem(["intranet"])
    assert problem is not None and "intranet" in problem and "dot" in problem
    problem = certificate_names_problem(["bad_name.example.com"])
    assert problem is not None and "bad_name.example.com" in problem
    assert certificate_names_problem([]) is not None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM.", "example.com"),
        ("*.example.com", "example.com"),
        ("_acme-challenge.example.com", "_acme-challenge.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("com", "com"),
    ],
)
def test_mapped_domains_share_the_label_rules(raw: str, expected: str) -> None:
    assert names.normalize_domain(raw) == expected


@pytest.mark.parametrize("raw", ["-bad.example.com", "a..example.com", "ex ample.com", ""])
def test_invalid_mapped_domains_are_refused(raw: str) -> None:
    with pytest.raises(InvalidDomainName):
        names.normalize_domain(raw)


def test_one_canonical_form() -> None:
    assert names.canonical_name("  WWW.Example.com. ") == "www.example.com"
    assert names.is_hostname("mail.example.com", need_dot=True)
    assert not names.is_hostname("localhost", need_dot=True)
    assert not names.is_hostname("example.123", need_dot=True)

"""AWS ACM deploy target against moto in server mode (a real HTTP endpoint on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from acmeflow.core.errors import ConfigError, DeployError
from acmeflow.providers.deploy.aws_acm import NAME_TAG, AcmTarget
from acmeflow.providers.deploy.registry import build_target
from tests.support import free_port

REGION = "eu-west-1"
SECRET = "wJalrXUtnFEMI-test-SECRET-key"


def detail(exc: DeployError) -> str:
    """The error's detail (always set for deploy errors)."""
    assert exc.detail is not None
    return exc.detail


@pytest.fixture
def endpoint(moto_url) -> Iterator[str]:
    yield moto_url
    # Each test starts from an empty account.
    import requests

    requests.post(f"{moto_url}/moto-api/reset", timeout=10)


def acm_target(endpoint: str, **overrides: str) -> AcmTarget:
    settings = {
        "region": REGION,
        "endpoint_url": endpoint,
        "access_key_id": "AKIDTESTING",
        "tags": "team=platform,env=test",
    }
    settings.update(overrides)
    target = build_target("aws-acm", settings, {"secret_access_key": SECRET})
    assert isinstance(target, AcmTarget)
    return target


def acm_client(endpoint: str):
    return boto3.client(
        "acm",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="AKIDTESTING",
        aws_secret_access_key=SECRET,
    )


def serial_number(text: str) -> int:
    """ACM shows serials as colon-separated hex; moto as a decimal number."""
    return int(text.replace(":", ""), 16) if ":" in text else int(text)


def test_first_import_creates_arn_with_tags(endpoint, pki):
    issued = pki.issue(["shop.example.com"])
    outcome = acm_target(endpoint).deploy(issued.bundle("shop.example.com"))

    assert outcome.changed is True
    assert outcome.location.startswith(f"arn:aws:acm:{REGION}:")
    acm = acm_client(endpoint)
    described = acm.describe_certificate(CertificateArn=outcome.location)["Certificate"]
    assert serial_number(described["Serial"]) == issued.cert.serial_number
    tags = {
        t["Key"]: t.get("Value")
        for t in acm.list_tags_for_certificate(CertificateArn=outcome.location)["Tags"]
    }
    assert tags == {NAME_TAG: "shop.example.com", "team": "platform", "env": "test"}
    got = acm.get_certificate(CertificateArn=outcome.location)
    assert got["Certificate"].encode().strip() == issued.cert_pem.strip()


def test_renewal_reimports_into_same_arn(endpoint, pki):
    target = acm_target(endpoint)
    first = pki.issue(["shop.example.com"], days=30)
    arn = target.deploy(first.bundle("shop.example.com")).location

    renewed = pki.issue(["shop.example.com"], days=90)
    outcome = acm_target(endpoint).deploy(renewed.bundle("shop.example.com"))  # fresh instance

    assert outcome.changed is True
    assert outcome.location == arn
    acm = acm_client(endpoint)
    summaries = acm.list_certificates(Includes={"keyTypes": ["EC_prime256v1"]})[
        "CertificateSummaryList"
    ]
    assert [s["CertificateArn"] for s in summaries] == [arn]
    described = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    assert described["NotAfter"].date() == renewed.cert.not_valid_after_utc.date()
    assert target.current_serial("shop.example.com") == renewed.serial

    # A third renewal still finds the same ARN (the name tag survived the re-import).
    third = pki.issue(["shop.example.com"])
    assert acm_target(endpoint).deploy(third.bundle("shop.example.com")).location == arn


def test_same_certificate_twice_is_unchanged(endpoint, pki):
    bundle = pki.issue(["api.example.com"]).bundle("api.example.com")
    target = acm_target(endpoint)
    first = target.deploy(bundle)
    second = target.deploy(bundle)
    assert second.changed is False
    assert second.location == first.location


def test_different_names_get_different_arns(endpoint, pki):
    target = acm_target(endpoint)
    a = target.deploy(pki.issue(["a.example.com"]).bundle("a.example.com")).location
    b = target.deploy(pki.issue(["b.example.com"]).bundle("b.example.com")).location
    assert a != b


def test_configured_arn_is_reimported(endpoint, pki):
    arn = acm_target(endpoint).deploy(pki.issue(["x.example.com"]).bundle("x.example.com")).location
    target = acm_target(endpoint, certificate_arn=arn)
    renewed = pki.issue(["x.example.com"])
    assert target.deploy(renewed.bundle("other-name")).location == arn
    assert target.current_serial() == renewed.serial


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000",
        "not-an-arn",
    ],
)
def test_invalid_arn_is_a_clear_deploy_error(endpoint, pki, arn):
    target = acm_target(endpoint, certificate_arn=arn)
    with pytest.raises(DeployError) as err:
        target.deploy(pki.issue(["x.example.com"]).bundle("x.example.com"))
    assert err.value.retryable is False
    assert detail(err.value).startswith("aws-acm: ")
    assert "certificate" in detail(err.value).lower() and arn in detail(err.value)
    assert SECRET not in str(err.value)


def test_unreachable_endpoint_is_retryable(pki):
    target = acm_target(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(DeployError) as err:
        target.deploy(pki.issue(["x.example.com"]).bundle("x.example.com"))
    assert err.value.retryable is True
    assert SECRET not in str(err.value)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="region"):
        build_target("aws-acm", {}, {})
    with pytest.raises(ConfigError, match="tags"):
        build_target("aws-acm", {"region": REGION, "tags": "novalue"}, {})
    with pytest.raises(ConfigError, match="secret_access_key"):
        build_target("aws-acm", {"region": REGION, "access_key_id": "AKID"}, {})


def test_assume_role_via_sts(endpoint, pki):
    target = acm_target(endpoint, role_arn="arn:aws:iam::123456789012:role/acmeflow-deploy")
    issued = pki.issue(["role.example.com"])
    outcome = target.deploy(issued.bundle("role.example.com"))
    assert outcome.changed is True
    assert target.current_serial("role.example.com") == issued.serial

"""NetScaler deploy target against FakeNitroServer (a fake NITRO API over real HTTP(S))."""

from __future__ import annotations

import logging
import socket

import pytest

from acmeflow.core.errors import ConfigError, DeployError
from acmeflow.providers.deploy.netscaler import NetScalerTarget, derive_certkey
from acmeflow.providers.deploy.registry import build_target
from tests.fakes.nitro import FakeNitroServer

CERTKEY = "acmeflow-www.example.com"


def detail(exc: DeployError) -> str:
    """The error's detail (always set for deploy errors)."""
    assert exc.detail is not None
    return exc.detail


def target_for(fake: FakeNitroServer, **overrides: str) -> NetScalerTarget:
    settings = {"url": fake.url, "username": fake.username, "ca_bundle": str(fake.ca_bundle_path)}
    settings.update(overrides)
    password = settings.pop("password", fake.password)
    target = build_target("netscaler", settings, {"password": password})
    assert isinstance(target, NetScalerTarget)
    return target


def calls(fake: FakeNitroServer) -> list[tuple[str, str, str | None]]:
    return [(r.method, r.resource, r.action) for r in fake.requests]


def test_first_deploy_creates_files_certkey_link_and_saves(adc, pki):
    issued = pki.issue(["www.example.com"])
    outcome = target_for(adc).deploy(issued.bundle("www.example.com"))

    assert outcome.changed is True
    assert outcome.location == CERTKEY
    assert issued.serial in outcome.detail
    files = adc.ssl_files()
    stem = f"{CERTKEY}-{issued.serial[:12]}"
    assert files[f"{stem}.crt"] == issued.cert_pem
    assert files[f"{stem}.key"] == issued.key_pem
    leaf = adc.certkey(CERTKEY)
    assert leaf is not None and format(leaf.cert.serial_number, "x") == issued.serial
    assert leaf.link.startswith(f"{CERTKEY}-ica-")
    ica = adc.certkey(leaf.link)
    assert ica is not None and ica.cert == pki.intermediate and ica.key_path == ""
    assert adc.saved is True
    assert adc.active_sessions == 0  # logged out
    assert calls(adc)[-2:] == [("POST", "nsconfig", "save"), ("POST", "logout", None)]


def test_same_certificate_again_changes_nothing(adc, pki):
    bundle = pki.issue(["www.example.com"]).bundle("www.example.com")
    target = target_for(adc)
    target.deploy(bundle)
    adc.clear_requests()

    outcome = target.deploy(bundle)

    assert outcome.changed is False
    assert calls(adc) == [
        ("POST", "login", None),
        ("GET", "sslcertkey", None),
        ("POST", "logout", None),
    ]
    assert adc.active_sessions == 0


def test_renewal_updates_certkey_in_place_for_bound_vservers(adc, pki):
    target = target_for(adc)
    first = pki.issue(["www.example.com"])
    target.deploy(first.bundle("www.example.com"))
    adc.bind_vserver("vs-www-443", CERTKEY)
    adc.bind_vserver("vs-www-8443", CERTKEY)
    assert adc.served_serial("vs-www-443") == first.serial

    renewed = pki.issue(["www.example.com"])
    outcome = target.deploy(renewed.bundle("www.example.com"))

    assert outcome.changed is True
    assert "updated" in outcome.detail and "2 vservers" in outcome.detail
    assert adc.served_serial("vs-www-443") == renewed.serial
    assert adc.served_serial("vs-www-8443") == renewed.serial
    assert ("POST", "sslcertkey", "update") in calls(adc)
    files = adc.ssl_files()
    assert f"{CERTKEY}-{renewed.serial[:12]}.key" in files
    assert f"{CERTKEY}-{first.serial[:12]}.key" not in files  # old key removed
    assert adc.saved is True
    assert target.current_serial() == renewed.serial


def test_renewal_with_new_intermediate_relinks_the_chain(adc, pki):
    target = target_for(adc)
    target.deploy(pki.issue(["www.example.com"]).bundle("www.example.com"))
    adc.bind_vserver("vs", CERTKEY)
    new_ca = pki.new_intermediate("acmeflow test issuing CA 2")

    renewed = pki.issue(["www.example.com"], intermediate=new_ca)
    target.deploy(renewed.bundle("www.example.com"))

    assert adc.served_serial("vs") == renewed.serial
    chain = adc.served_chain("vs")
    assert chain[1] == new_ca[1].subject.rfc4514_string()


def test_certkey_setting_and_wildcard_name(adc, pki):
    assert derive_certkey("*.example.com") == "acmeflow-wildcard.example.com"
    issued = pki.issue(["*.example.com"])
    target_for(adc).deploy(issued.bundle("*.example.com"))
    assert adc.certkey("acmeflow-wildcard.example.com") is not None

    target_for(adc, certkey="shop_cert").deploy(issued.bundle("*.example.com"))
    assert adc.certkey("shop_cert") is not None


def test_bad_password_is_not_retryable_and_never_echoed(adc, pki):
    secret = "Wr0ng-pa55word!"
    target = target_for(adc, password=secret)
    with pytest.raises(DeployError) as err:
        target.deploy(pki.issue(["www.example.com"]).bundle("www.example.com"))
    assert err.value.retryable is False
    assert detail(err.value) is not None and detail(err.value).startswith("netscaler: ")
    assert "354" in detail(err.value) and "Invalid username or password" in detail(err.value)
    assert secret not in str(err.value) and secret not in repr(err.value)


@pytest.mark.parametrize("mode", ["503", "refuse"])
def test_server_down_is_retryable(adc, pki, mode):
    target = target_for(adc)
    adc.set_down(mode)
    with pytest.raises(DeployError) as err:
        target.deploy(pki.issue(["www.example.com"]).bundle("www.example.com"))
    assert err.value.retryable is True
    assert detail(err.value).startswith("netscaler: ")
    adc.set_down(None)
    assert target.deploy(pki.issue(["www.example.com"]).bundle("www.example.com")).changed


def test_timeout_is_retryable(pki):
    # A listener that accepts but never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        target = build_target(
            "netscaler",
            {"url": f"http://127.0.0.1:{port}", "username": "nsroot", "timeout": "0.3"},
            {"password": "whatever-secret"},
        )
        with pytest.raises(DeployError) as err:
            target.deploy(pki.issue(["www.example.com"]).bundle("www.example.com"))
    assert err.value.retryable is True


def test_self_signed_adc_without_bundle_fails_clearly(adc, pki):
    target = target_for(adc, ca_bundle="")
    with pytest.raises(DeployError) as err:
        target.deploy(pki.issue(["www.example.com"]).bundle("www.example.com"))
    assert err.value.retryable is False
    assert "TLS verification" in detail(err.value) and "ca_bundle" in detail(err.value)
    assert adc.certkey(CERTKEY) is None


def test_insecure_switch_works_and_warns(adc, pki, caplog):
    target = target_for(adc, ca_bundle="", insecure="true")
    with caplog.at_level(logging.WARNING, logger="acmeflow.providers.deploy.netscaler"):
        target.deploy(pki.issue(["www.example.com"]).bundle("www.example.com"))
        target.deploy(pki.issue(["www.example.com"]).bundle("www.example.com"))
    warnings = [r for r in caplog.records if "TLS verification" in r.getMessage()]
    assert len(warnings) == 2  # once per session
    assert adc.certkey(CERTKEY) is not None


def test_plain_http_adc(tmp_path, pki):
    with FakeNitroServer(tls=False) as fake:
        target = build_target(
            "netscaler", {"url": fake.url, "username": fake.username}, {"password": fake.password}
        )
        issued = pki.issue(["api.example.com"])
        assert target.deploy(issued.bundle("api.example.com")).changed
        assert target.current_serial("api.example.com") == issued.serial


def test_nitro_refusal_becomes_deploy_error(adc, pki):
    """A key that does not match the certificate: the ADC's answer is in the detail."""
    issued = pki.issue(["www.example.com"])
    other = pki.issue(["www.example.com"])
    bundle = issued.bundle("www.example.com")
    bad = type(bundle)(
        name=bundle.name,
        cert_pem=bundle.cert_pem,
        chain_pem=bundle.chain_pem,
        fullchain_pem=bundle.fullchain_pem,
        key_pem=other.key_pem,
        serial=bundle.serial,
    )
    with pytest.raises(DeployError) as err:
        target_for(adc).deploy(bad)
    assert "do not match" in detail(err.value)
    assert "PRIVATE KEY" not in str(err.value)
    assert adc.active_sessions == 0  # logged out after the failure


def test_missing_fields_are_config_errors():
    with pytest.raises(ConfigError, match="password"):
        build_target("netscaler", {"url": "https://adc", "username": "u"}, {})
    with pytest.raises(ConfigError, match="url"):
        build_target("netscaler", {"url": "adc.example", "username": "u"}, {"password": "pw12"})


def test_fake_checks_request_shapes_like_nitro(adc):
    """The fake refuses what the real API refuses, so passing tests mean well-formed calls."""
    import requests

    base = f"{adc.url}/nitro/v1/config"
    ca = str(adc.ca_bundle_path)
    anonymous = requests.get(f"{base}/sslcertkey", verify=ca, timeout=5)
    assert anonymous.status_code == 401 and anonymous.json()["errorcode"] == 444

    login = requests.post(
        f"{base}/login",
        json={"login": {"username": adc.username, "password": adc.password}},
        verify=ca,
        timeout=5,
    )
    assert login.status_code == 201
    headers = {"Cookie": f"NITRO_AUTH_TOKEN={login.json()['sessionid']}"}

    unknown = requests.post(
        f"{base}/sslcertkey",
        json={"sslcertkey": {"certkey": "x", "cert": "x.crt", "colour": "blue"}},
        headers=headers,
        verify=ca,
        timeout=5,
    )
    assert unknown.status_code == 400
    assert unknown.json() == {
        "errorcode": 278,
        "message": "Invalid argument name [colour]",
        "severity": "ERROR",
    }
    missing = requests.post(
        f"{base}/sslcertkey?action=link",
        json={"sslcertkey": {"certkey": "x"}},
        headers=headers,
        verify=ca,
        timeout=5,
    )
    assert missing.status_code == 400 and "linkcertkeyname" in missing.json()["message"]
    absent = requests.get(f"{base}/sslcertkey/nothing", headers=headers, verify=ca, timeout=5)
    assert absent.status_code == 404 and absent.json()["errorcode"] == 258
    form = requests.post(
        f"{base}/nsconfig?action=save",
        data="object={}",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        verify=ca,
        timeout=5,
    )
    assert form.status_code == 400
    upload = {
        "systemfile": {
            "filename": "a.crt",
            "filecontent": "aGVsbG8=",
            "filelocation": "/nsconfig/ssl",
            "fileencoding": "BASE64",
        }
    }
    first = requests.post(f"{base}/systemfile", json=upload, headers=headers, verify=ca, timeout=5)
    again = requests.post(f"{base}/systemfile", json=upload, headers=headers, verify=ca, timeout=5)
    assert first.status_code == 201
    assert again.status_code == 409 and again.json()["errorcode"] == 273

"""End to end on the sandbox: real certificates from pebble, DNS-01 through BIND (F1, F4, F5)."""

from __future__ import annotations

import json
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acmeflow.core.certinfo import verify_chain
from acmeflow.core.keys import CSRFields, build_csr, generate_private_key
from acmeflow.sandbox import SandboxInfo, pebble_root_pem
from tests.fixtures_acmeflow import Home

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]


def txt_values(sandbox: SandboxInfo, name: str) -> list[str]:
    """What the sandbox's BIND serves as TXT for ``name`` right now."""
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    response = dns.query.tcp(query, sandbox.dns_host, port=sandbox.dns_port, timeout=3)
    return [
        b"".join(r.strings).decode()
        for rrset in response.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for r in rrset
    ]


def issue_json(home: Home, *args: str) -> dict:
    result = home.cli("issue", "--ca", "sandbox", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{") :])


def assert_valid_chain(home: Home, issued: dict) -> x509.Certificate:
    files = issued["files"]
    cert_pem = Path(files["cert"]).read_bytes()
    verify_chain(cert_pem, Path(files["chain"]).read_bytes(), pebble_root_pem(home.sandbox))
    assert Path(files["fullchain"]).read_bytes().startswith(cert_pem)
    assert Path(files["privkey"]).stat().st_mode & 0o777 == 0o600
    return x509.load_pem_x509_certificate(cert_pem)


def san(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return set(ext.value.get_values_for_type(x509.DNSName))


@pytest.mark.prefect
def test_apex_wildcard_and_www_in_one_certificate(home: Home) -> None:
    issued = issue_json(
        home, "--name", "example.com", "--name", "*.example.com", "--name", "www.example.com"
    )
    cert = assert_valid_chain(home, issued)
    assert san(cert) == {"example.com", "*.example.com", "www.example.com"}
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    # apex and wildcard share one record name: both values were present, none is left
    assert txt_values(home.sandbox, "_acme-challenge.example.com") == []
    assert txt_values(home.sandbox, "_acme-challenge.www.example.com") == []
    shown = json.loads(home.ok("certs", "show", str(issued["id"]), "--json").stdout)
    assert shown["serial"] == format(cert.serial_number, "x")
    log = json.loads(home.ok("logs", "--json").stdout)
    assert log[0]["status"] == "success" and log[0]["certificate_id"] == issued["id"]


@pytest.mark.prefect
@pytest.mark.parametrize("key_type", ["rsa2048", "ec384"])
def test_generated_key_types(home: Home, key_type: str) -> None:
    issued = issue_json(home, "--name", f"{key_type}.example.com", "--key-type", key_type)
    cert = assert_valid_chain(home, issued)
    key = cert.public_key()
    if key_type == "rsa2048":
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"


@pytest.mark.prefect
def test_uploaded_passphrase_protected_key(home: Home, tmp_path: Path, monkeypatch) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret-pass"),
        )
    )
    monkeypatch.setenv("KEY_PASS", "s3cret-pass")
    issued = issue_json(
        home,
        "--name",
        "upload.example.com",
        "--key",
        str(key_file),
        "--key-passphrase",
        "env:KEY_PASS",
    )
    cert = assert_valid_chain(home, issued)
    assert cert.public_key() == key.public_key()


@pytest.mark.prefect
def test_uploaded_csr_with_its_key(home: Home, tmp_path: Path) -> None:
    key_pem = generate_private_key("ec256")
    csr = build_csr(
        key_pem,
        CSRFields(names=["csr.example.com", "alt.example.com"], organization="Example Org"),
    )
    (tmp_path / "req.csr").write_bytes(csr)
    (tmp_path / "key.pem").write_bytes(key_pem)
    issued = issue_json(
        home, "--csr", str(tmp_path / "req.csr"), "--key", str(tmp_path / "key.pem")
    )
    cert = assert_valid_chain(home, issued)
    assert san(cert) == {"csr.example.com", "alt.example.com"}
    assert Path(issued["files"]["privkey"]).read_bytes() == key_pem


@pytest.mark.prefect
def test_csr_with_a_key_that_does_not_match_changes_nothing(home: Home, tmp_path: Path) -> None:
    csr = build_csr(generate_private_key("ec256"), CSRFields(names=["mismatch.example.com"]))
    (tmp_path / "req.csr").write_bytes(csr)
    (tmp_path / "other.pem").write_bytes(generate_private_key("ec256"))
    result = home.cli(
        "issue",
        "--ca",
        "sandbox",
        "--csr",
        str(tmp_path / "req.csr"),
        "--key",
        str(tmp_path / "other.pem"),
    )
    assert result.exit_code == 1
    assert "Invalid private key provided" in result.output
    assert json.loads(home.ok("certs", "list", "--json").stdout) == []


@pytest.mark.prefect
def test_eab_required_ca(home_factory, sandbox_factory) -> None:
    eab_sandbox = sandbox_factory(eab=True)
    home = home_factory(eab_sandbox)
    without = home.add_sandbox_ca("eab-ca")
    assert without.exit_code == 1
    assert "Cannot initialize API for the CA server" in without.output
    assert "External Account Binding" in without.output
    assert json.loads(home.ok("ca", "list", "--json").stdout) == []
    with_eab = home.add_sandbox_ca(
        "sandbox", eab_kid=eab_sandbox.eab_kid, eab_hmac_key="env:ACMEFLOW_SANDBOX_EAB_HMAC_KEY"
    )
    assert with_eab.exit_code == 0, with_eab.output
    assert eab_sandbox.eab_hmac_key not in home.ok("ca", "show", "sandbox", "--json").stdout
    assert home.add_zone_provider("bind-com", "example.com").exit_code == 0
    home.ok("dns", "map", "bind-com", "example.com")
    assert_valid_chain(home, issue_json(home, "--name", "eab.example.com"))


@pytest.mark.prefect
def test_two_zones_in_one_certificate(home: Home) -> None:
    assert home.add_zone_provider("bind-org", "example.org").exit_code == 0
    home.ok("dns", "map", "bind-org", "example.org")
    issued = issue_json(home, "--name", "multi.example.com", "--name", "multi.example.org")
    assert san(assert_valid_chain(home, issued)) == {"multi.example.com", "multi.example.org"}
    assert txt_values(home.sandbox, "_acme-challenge.multi.example.org") == []


@pytest.mark.prefect
def test_cname_delegated_challenge(home: Home) -> None:
    assert home.add_zone_provider("bind-net", "challenges.example.net").exit_code == 0
    home.ok("dns", "map", "bind-net", "challenges.example.net")
    issued = issue_json(home, "--name", "delegated.example.com")
    assert_valid_chain(home, issued)
    target = "_acme-challenge.delegated.example.com.challenges.example.net"
    assert txt_values(home.sandbox, target) == []


@pytest.mark.prefect
def test_zero_touch_store_and_enrollment(home: Home) -> None:
    issued = issue_json(home, "--name", "zt.example.com", "--store", "zero-touch", "--auto-renew")
    assert issued["store"] == "zero-touch" and issued["enrollment"] == "auto"
    assert "zero-touch" in issued["folder"]


@pytest.mark.prefect
def test_preferred_chain_picks_the_alternate_root(home_factory, sandbox_factory) -> None:
    """pebble offers an alternate chain; the CA's preferred chain (by root CN) is stored."""
    alt = sandbox_factory(
        extra_pebble_env={"PEBBLE_ALTERNATE_ROOTS": "1", "PEBBLE_CHAIN_LENGTH": "2"}
    )
    home = home_factory(alt)
    alternate_root = x509.load_pem_x509_certificate(pebble_root_pem(alt, 1))
    root_cn = alternate_root.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert home.add_sandbox_ca(preferred_chain=str(root_cn)).exit_code == 0
    assert home.add_zone_provider("bind-com", "example.com").exit_code == 0
    home.ok("dns", "map", "bind-com", "example.com")
    issued = issue_json(home, "--name", "chain.example.com")
    files = issued["files"]
    verify_chain(
        Path(files["cert"]).read_bytes(), Path(files["chain"]).read_bytes(), pebble_root_pem(alt, 1)
    )
    with pytest.raises(ValueError):
        verify_chain(
            Path(files["cert"]).read_bytes(),
            Path(files["chain"]).read_bytes(),
            pebble_root_pem(alt, 0),
        )


@pytest.mark.prefect
def test_dns_secret_from_a_prefect_secret_block(home: Home) -> None:
    """A provider credential given as prefect-block:NAME is read from the Secret block."""
    from prefect.blocks.system import Secret

    Secret(value=home.zone_env("example.org", "SECRET")).save("tsig-org", overwrite=True)
    home.ok(
        "dns",
        "add",
        "bind-org",
        "--type",
        "rfc2136",
        "--set",
        f"server={home.sandbox.dns_host}:{home.sandbox.dns_port}",
        "--set",
        f"tsig_name={home.zone_env('example.org', 'NAME')}",
        "--set",
        f"tsig_algorithm={home.zone_env('example.org', 'ALGORITHM')}",
        "--secret",
        "tsig_secret=prefect-block:tsig-org",
    )
    home.ok("dns", "map", "bind-org", "example.org")
    shown = home.ok("dns", "show", "bind-org", "--json").stdout
    assert home.zone_env("example.org", "SECRET") not in shown
    issued = issue_json(home, "--name", "block.example.org")
    assert san(assert_valid_chain(home, issued)) == {"block.example.org"}
    home.ok("dns", "check", "bind-org", "check.example.org")

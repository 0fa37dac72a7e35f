"""Every catalog row the sandbox can trigger: the exact message, the detail, and nothing changed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from acmeflow.config.settings import get_settings
from acmeflow.core import errors
from acmeflow.core.accounts import open_session
from acmeflow.core.keys import CSRFields, build_csr, generate_private_key
from acmeflow.core.state.db import open_database, session_scope
from tests.fixtures_acmeflow import Home
from tests.test_issue_e2e import issue_json, txt_values

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]


def snapshot(home: Home) -> dict[str, object]:
    """Everything a failed request must leave as it was."""
    stores = (
        sorted(
            str(p.relative_to(home.path))
            for p in (home.path / "stores").rglob("*")
            if p.is_file() and ".staging" not in p.parts
        )
        if (home.path / "stores").exists()
        else []
    )
    return {
        "cas": home.ok("ca", "list", "--json").stdout,
        "dns": home.ok("dns", "list", "--json").stdout,
        "certs": home.ok("certs", "list", "--json").stdout,
        "files": stores,
    }


def assert_fails(home: Home, message: str, *args: str) -> str:
    before = snapshot(home)
    result = home.cli(*args)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert snapshot(home) == before
    return result.output


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("192.0.2.7", "Certificate has invalid domain"),
        (
            "testdomain",
            'Invalid identifiers requested :: Cannot issue for "testdomain": '
            "Domain name needs at least one dot",
        ),
        (
            "bad_name!.example.com",
            "Invalid domain name provided. Please check the domain name and try again.",
        ),
    ],
)
@pytest.mark.prefect
def test_bad_names(home: Home, name: str, message: str) -> None:
    assert_fails(home, message, "issue", "--ca", "sandbox", "--name", name)


@pytest.mark.prefect
def test_duplicate_request(home: Home) -> None:
    issue_json(home, "--name", "dup.example.com")
    assert_fails(
        home,
        "Domains not changed. Certificate with same configuration already exists.",
        "issue",
        "--ca",
        "sandbox",
        "--name",
        "dup.example.com",
    )


@pytest.mark.prefect
def test_dns_provider_refuses_the_update(home: Home, monkeypatch) -> None:
    monkeypatch.setenv("WRONG_TSIG", "d3JvbmcgdHNpZyBzZWNyZXQgd3JvbmcgdHNpZyBzZWNyZXQ=")
    assert home.add_zone_provider("bind-bad", "example.org", secret_env="WRONG_TSIG").exit_code == 0
    home.ok("dns", "map", "bind-bad", "example.org")
    output = assert_fails(
        home,
        "Error adding TXT record for domain validation. "
        "Please check the DNS configuration and try again.",
        "issue",
        "--ca",
        "sandbox",
        "--name",
        "refused.example.org",
        "--name",
        "ok.example.com",
    )
    assert "rfc2136" in output
    assert "d3JvbmcgdHNpZyBzZWNyZXQ" not in output
    assert txt_values(home.sandbox, "_acme-challenge.ok.example.com") == []
    failed = json.loads(home.ok("logs", "--failed", "--json").stdout)
    assert failed[0]["message"].startswith("Error adding TXT record")


@pytest.mark.prefect
def test_unmapped_name(home: Home) -> None:
    assert_fails(
        home,
        "Certificate is missing a DNS provider name.",
        "issue",
        "--ca",
        "sandbox",
        "--name",
        "nomap.example.org",
    )


@pytest.mark.prefect
def test_inactive_provider(home: Home) -> None:
    assert home.add_zone_provider("bind-org", "example.org").exit_code == 0
    home.ok("dns", "map", "bind-org", "example.org")
    home.ok("dns", "edit", "bind-org", "--inactive")
    assert_fails(
        home,
        "DNS Provider - bind-org does not exist or is not active.",
        "issue",
        "--ca",
        "sandbox",
        "--name",
        "x.example.org",
    )
    assert_fails(
        home,
        "DNS Provider - TestDNS does not exist or is not active.",
        "dns",
        "map",
        "TestDNS",
        "example.net",
    )


@pytest.mark.prefect
def test_no_active_provider_at_all(home: Home) -> None:
    home.ok("dns", "edit", "bind-com", "--inactive")
    assert_fails(
        home,
        "Renewal skipped as no active DNS providers are configured.",
        "issue",
        "--ca",
        "sandbox",
        "--name",
        "y.example.com",
    )


@pytest.mark.prefect
def test_unknown_ca(home: Home) -> None:
    assert_fails(
        home,
        "Config CA ID is empty/does not exist.",
        "issue",
        "--ca",
        "nosuch",
        "--name",
        "z.example.com",
    )


@pytest.mark.prefect
def test_invalid_contact(home: Home) -> None:
    assert_fails(
        home,
        "Error validating contact(s) :: unable to parse email address",
        "ca",
        "add",
        "bad-mail",
        "--vendor",
        "custom",
        "--email",
        "not an email",
        "--directory-url",
        home.sandbox.directory_url,
        "--ca-bundle",
        str(home.sandbox.ca_bundle),
    )


@pytest.mark.prefect
def test_unreachable_directory(home: Home) -> None:
    assert_fails(
        home,
        "Cannot initialize API for the CA server. Please check the CA server configuration.",
        "ca",
        "add",
        "wrong-url",
        "--vendor",
        "custom",
        "--email",
        "admin@example.com",
        "--directory-url",
        home.sandbox.directory_url.replace("/dir", "/no-such-directory"),
        "--ca-bundle",
        str(home.sandbox.ca_bundle),
    )


class _NoNonceCA(BaseHTTPRequestHandler):
    """A test double of a broken CA: a valid directory whose newNonce gives no nonce."""

    def do_GET(self) -> None:
        base = f"http://{self.headers['Host']}"
        body = json.dumps(
            {
                "newNonce": f"{base}/nonce",
                "newAccount": f"{base}/acct",
                "newOrder": f"{base}/order",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def no_nonce_ca() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoNonceCA)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/dir"
    server.shutdown()


@pytest.mark.prefect
def test_no_nonce(home: Home, no_nonce_ca: str) -> None:
    assert_fails(
        home,
        "Could not get nonce from the CA server. Please check the CA server configuration.",
        "ca",
        "add",
        "no-nonce",
        "--vendor",
        "custom",
        "--email",
        "admin@example.com",
        "--directory-url",
        no_nonce_ca,
    )


@pytest.mark.prefect
def test_wrong_eab_hmac_is_a_signature_mismatch(home_factory, sandbox_factory, monkeypatch) -> None:
    eab = sandbox_factory(eab=True)
    home = home_factory(eab)
    monkeypatch.setenv(
        "BAD_HMAC", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
    )
    assert_fails(
        home,
        "Signature does not match. Please check the server time as it may not be in sync.",
        "ca",
        "add",
        "bad-eab",
        "--vendor",
        "custom",
        "--email",
        "admin@example.com",
        "--directory-url",
        eab.directory_url,
        "--ca-bundle",
        str(eab.ca_bundle),
        "--eab-kid",
        str(eab.eab_kid),
        "--eab-hmac-key",
        "env:BAD_HMAC",
    )


@pytest.mark.prefect
def test_finalize_with_a_csr_for_other_names(home: Home) -> None:
    """Finalize fails (the CA refuses the CSR): the catalog's finalize message."""
    engine = open_database(get_settings().resolved_database_url)
    with session_scope(engine) as s:
        session = open_session(s, "sandbox", get_settings())
    key = generate_private_key("ec256")
    order = session.place_order(["fin.example.com"])
    other = build_csr(key, CSRFields(names=["other.example.com"]))
    with pytest.raises(errors.FinalizeError) as raised:
        session.finalize(order, other, timeout=10)
    assert str(raised.value).startswith("Unable to process finalize order request.")
    assert raised.value.detail


@pytest.mark.prefect
def test_nonce_rejection_storm(home_factory, sandbox_factory) -> None:
    """pebble rejects 30% of nonces: ten issuances in a row all succeed."""
    home = home_factory(sandbox_factory(nonce_reject=30))
    home.configure()
    serials = {issue_json(home, "--name", f"n{i}.example.com")["serial"] for i in range(10)}
    assert len(serials) == 10

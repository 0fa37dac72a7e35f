"""The local sandbox: pebble validating DNS-01 against a TSIG-updatable BIND, for real."""

from __future__ import annotations

import base64
import datetime
import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import josepy
import pytest
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from acmeflow import cli_sandbox
from acmeflow.sandbox import (
    ZONES,
    SandboxError,
    SandboxInfo,
    SandboxZone,
    pebble_root_pem,
    sandbox_answers,
    sandbox_down,
    sandbox_status,
    sandbox_up,
)
from tests.conftest import start_sandbox

pytestmark = pytest.mark.sandbox


# --- helpers ----------------------------------------------------------------------------------


def _keyring(zone: SandboxZone) -> dict[dns.name.Name, dns.tsig.Key]:
    return dns.tsigkeyring.from_text({zone.tsig_name: (zone.tsig_algorithm, zone.tsig_secret)})


def _update(info: SandboxInfo, zone: SandboxZone, name: str, value: str, *, delete: bool = False):
    """Send a TSIG-signed RFC 2136 update adding (or deleting) one TXT value."""
    upd = dns.update.UpdateMessage(
        zone.name,
        keyring=_keyring(zone),
        keyname=dns.name.from_text(zone.tsig_name),
        keyalgorithm=zone.tsig_algorithm,
    )
    if delete:
        upd.delete(name + ".", "TXT", value)
    else:
        upd.add(name + ".", 60, "TXT", value)
    return dns.query.tcp(upd, info.dns_host, port=info.dns_port, timeout=5)


def _query(info: SandboxInfo, name: str, rdtype: str) -> dns.message.Message:
    return dns.query.udp(
        dns.message.make_query(name, rdtype), info.dns_host, port=info.dns_port, timeout=5
    )


def _txt_values(info: SandboxInfo, name: str) -> set[str]:
    answer = _query(info, name, "TXT")
    return {
        b"".join(rdata.strings).decode()
        for rrset in answer.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for rdata in rrset
    }


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _acme_client(info: SandboxInfo, key: josepy.JWK) -> client.ClientV2:
    net = client.ClientNetwork(key, alg=josepy.ES256, verify_ssl=str(info.ca_bundle))  # type: ignore[arg-type]
    directory = client.ClientV2.get_directory(info.directory_url, net)
    return client.ClientV2(directory, net)


def _account_key() -> josepy.JWK:
    return josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


# --- the processes ----------------------------------------------------------------------------


def test_directory_answers_with_a_fresh_nonce(sandbox: SandboxInfo) -> None:
    directory = requests.get(sandbox.directory_url, verify=str(sandbox.ca_bundle), timeout=5).json()
    assert {"newNonce", "newAccount", "newOrder"} <= set(directory)
    assert directory.get("meta", {}).get("externalAccountRequired") is not True
    nonce = requests.head(directory["newNonce"], verify=str(sandbox.ca_bundle), timeout=5)
    assert nonce.status_code == 200
    assert nonce.headers["Replay-Nonce"]
    assert sandbox.directory_url.startswith("https://127.0.0.1:")
    assert _running(sandbox.pebble_pid) and _running(sandbox.named_pid)


def test_every_zone_has_soa_and_a_resolvable_ns_at_the_sandbox_port(sandbox: SandboxInfo) -> None:
    assert tuple(z.name for z in sandbox.zones) == ZONES
    for zone in ZONES:
        soa = _query(sandbox, zone, "SOA")
        assert soa.rcode() == dns.rcode.NOERROR
        assert soa.answer[0].rdtype == dns.rdatatype.SOA
        ns = _query(sandbox, zone, "NS")
        assert [r.target.to_text() for r in ns.answer[0]] == [f"ns1.{zone}."]
        a = _query(sandbox, f"ns1.{zone}", "A")
        assert [r.address for r in a.answer[0]] == ["127.0.0.1"]
    # a missing name answers NXDOMAIN with the zone's SOA: what a client walks to find the zone
    missing = _query(sandbox, "_acme-challenge.nothing.example.org", "TXT")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert missing.authority[0].name.to_text() == "example.org."
    assert [r.address for r in _query(sandbox, "www.example.com", "A").answer[0]] == ["127.0.0.1"]


def test_names_outside_the_sandbox_get_nxdomain_without_leaving_the_machine(
    sandbox: SandboxInfo,
) -> None:
    answer = _query(sandbox, "www.example.invalid", "A")
    assert answer.rcode() == dns.rcode.NXDOMAIN
    assert answer.authority[0].name == dns.name.root  # from the local root zone


def test_tsig_signed_update_adds_a_txt_that_queries_return(sandbox: SandboxInfo) -> None:
    zone = sandbox.zone("example.com")
    value = secrets.token_urlsafe(32)
    response = _update(sandbox, zone, "_acme-challenge.example.com", value)
    assert response.rcode() == dns.rcode.NOERROR
    assert value in _txt_values(sandbox, "_acme-challenge.example.com")

    response = _update(sandbox, zone, "_acme-challenge.example.com", value, delete=True)
    assert response.rcode() == dns.rcode.NOERROR
    assert value not in _txt_values(sandbox, "_acme-challenge.example.com")


def test_unsigned_update_is_refused(sandbox: SandboxInfo) -> None:
    upd = dns.update.UpdateMessage("example.com")
    upd.add("_acme-challenge.unsigned.example.com.", 60, "TXT", "nope")
    response = dns.query.tcp(upd, sandbox.dns_host, port=sandbox.dns_port, timeout=5)
    assert response.rcode() == dns.rcode.REFUSED
    assert _txt_values(sandbox, "_acme-challenge.unsigned.example.com") == set()


def test_update_with_a_wrong_secret_is_notauth(sandbox: SandboxInfo) -> None:
    real = sandbox.zone("example.com")
    forged = SandboxZone(
        real.name, real.tsig_name, real.tsig_algorithm, base64.b64encode(os.urandom(32)).decode()
    )
    with pytest.raises(dns.tsig.PeerBadSignature):  # BIND answers NOTAUTH / BADSIG
        _update(sandbox, forged, "_acme-challenge.forged.example.com", "nope")
    assert _txt_values(sandbox, "_acme-challenge.forged.example.com") == set()


def test_a_zones_key_cannot_update_another_zone(sandbox: SandboxInfo) -> None:
    org_key = sandbox.zone("example.org")
    upd = dns.update.UpdateMessage(
        "example.com",
        keyring=_keyring(org_key),
        keyname=dns.name.from_text(org_key.tsig_name),
        keyalgorithm=org_key.tsig_algorithm,
    )
    upd.add("_acme-challenge.cross.example.com.", 60, "TXT", "nope")
    response = dns.query.tcp(upd, sandbox.dns_host, port=sandbox.dns_port, timeout=5)
    assert response.rcode() == dns.rcode.REFUSED
    assert _txt_values(sandbox, "_acme-challenge.cross.example.com") == set()


def test_cname_delegation_answers_with_the_target_txt(sandbox: SandboxInfo) -> None:
    target = "_acme-challenge.delegated.example.com.challenges.example.net"
    value = secrets.token_urlsafe(32)
    # asked before the record exists (as a propagation check does): nothing may be cached
    assert value not in _txt_values(sandbox, "_acme-challenge.delegated.example.com")
    response = _update(sandbox, sandbox.zone("challenges.example.net"), target, value)
    assert response.rcode() == dns.rcode.NOERROR

    answer = _query(sandbox, "_acme-challenge.delegated.example.com", "TXT")  # RD set
    cnames = [r for r in answer.answer if r.rdtype == dns.rdatatype.CNAME]
    assert [r.target.to_text() for r in cnames[0]] == [target + "."]
    assert value in _txt_values(sandbox, "_acme-challenge.delegated.example.com")
    _update(sandbox, sandbox.zone("challenges.example.net"), target, value, delete=True)


def test_pebble_root_is_a_ca_certificate(sandbox: SandboxInfo) -> None:
    root = x509.load_pem_x509_certificate(pebble_root_pem(sandbox))
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    listener_ca = x509.load_pem_x509_certificate(sandbox.ca_bundle.read_bytes())
    assert root.subject != listener_ca.subject  # issuing root, not the listener's CA


def test_env_points_clients_at_the_sandbox(sandbox: SandboxInfo) -> None:
    env = sandbox.env()
    port = str(sandbox.dns_port)
    assert env["ACMEFLOW_SANDBOX_DIRECTORY_URL"] == sandbox.directory_url
    assert env["ACMEFLOW_SANDBOX_CA_BUNDLE"] == str(sandbox.ca_bundle)
    assert env["ACMEFLOW_SANDBOX_MANAGEMENT_URL"] == sandbox.management_url
    assert env["ACMEFLOW_SANDBOX_DNS_SERVER"] == f"127.0.0.1:{port}"
    assert env["ACMEFLOW_DNS_RESOLVERS"] == f"127.0.0.1:{port}"
    assert env["ACMEFLOW_DNS_QUERY_PORT"] == port
    net = sandbox.zone("challenges.example.net")
    assert env["ACMEFLOW_SANDBOX_TSIG_CHALLENGES_EXAMPLE_NET_NAME"] == net.tsig_name
    assert env["ACMEFLOW_SANDBOX_TSIG_CHALLENGES_EXAMPLE_NET_ALGORITHM"] == "hmac-sha256"
    assert env["ACMEFLOW_SANDBOX_TSIG_CHALLENGES_EXAMPLE_NET_SECRET"] == net.tsig_secret
    assert "ACMEFLOW_SANDBOX_EAB_KID" not in env
    assert len({z.tsig_secret for z in sandbox.zones}) == len(ZONES)


def test_files_holding_secrets_are_private(sandbox: SandboxInfo) -> None:
    for name in ("state.json", "named.conf", "pebble-config.json", "tls/listener.key"):
        mode = stat.S_IMODE((sandbox.home / name).stat().st_mode)
        assert mode == 0o600, name
    state = json.loads((sandbox.home / "state.json").read_text())
    assert state["processes"]["pebble"]["pid"] == sandbox.pebble_pid


# --- lifecycle --------------------------------------------------------------------------------


def test_up_twice_returns_the_running_sandbox(sandbox: SandboxInfo) -> None:
    again = sandbox_up(sandbox.home)
    assert again == sandbox
    assert (again.pebble_pid, again.named_pid) == (sandbox.pebble_pid, sandbox.named_pid)
    assert sandbox_status(sandbox.home) == sandbox


def test_up_with_other_options_asks_to_stop_first(sandbox: SandboxInfo) -> None:
    with pytest.raises(SandboxError, match="down"):
        sandbox_up(sandbox.home, eab=True)
    assert sandbox_status(sandbox.home) == sandbox


def test_down_stops_exactly_its_processes(
    tmp_path_factory: pytest.TempPathFactory, sandbox: SandboxInfo
) -> None:
    info = start_sandbox(tmp_path_factory)
    assert _running(info.pebble_pid) and _running(info.named_pid)

    assert sandbox_down(info.home) is True

    assert not _running(info.pebble_pid) and not _running(info.named_pid)
    assert sandbox_status(info.home) is None
    assert not (info.home / "state.json").exists()
    assert sandbox_down(info.home) is False
    # the other sandbox is untouched
    assert _running(sandbox.pebble_pid) and _running(sandbox.named_pid)
    assert sandbox_status(sandbox.home) == sandbox


def test_a_half_dead_sandbox_is_cleaned_up_and_can_start_again(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    info = start_sandbox(tmp_path_factory)
    os.kill(info.pebble_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _running(info.pebble_pid) and time.monotonic() < deadline:
        time.sleep(0.02)

    assert sandbox_status(info.home) is None
    assert not _running(info.named_pid)  # the survivor was stopped with the stale state

    again = sandbox_up(info.home)
    assert again.pebble_pid != info.pebble_pid
    assert requests.get(again.directory_url, verify=str(again.ca_bundle), timeout=5).ok
    assert sandbox_down(info.home) is True


# --- ACME end to end --------------------------------------------------------------------------


def test_pebble_validates_dns01_against_bind_and_issues(sandbox: SandboxInfo) -> None:
    """A bare acme client: register, order, TXT via TSIG (one name CNAME-delegated), issue."""
    key = _account_key()
    acme = _acme_client(sandbox, key)
    acme.new_account(
        messages.NewRegistration.from_data(email="ops@example.com", terms_of_service_agreed=True)
    )
    cert_key = ec.generate_private_key(ec.SECP256R1())
    key_pem = cert_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    names = ["example.com", "delegated.example.com"]
    order = acme.new_order(crypto_util.make_csr(key_pem, names))

    written: list[tuple[SandboxZone, str, str]] = []
    answers = []
    for authz in order.authorizations:
        challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
        name = challb.chall.validation_domain_name(authz.body.identifier.value)
        if authz.body.identifier.value == "delegated.example.com":  # follow the CNAME
            name = f"{name}.challenges.example.net"
            zone = sandbox.zone("challenges.example.net")
        else:
            zone = sandbox.zone("example.com")
        value = challb.chall.validation(key)
        assert _update(sandbox, zone, name, value).rcode() == dns.rcode.NOERROR
        written.append((zone, name, value))
        answers.append((challb, challb.chall.response(key)))
    for challb, response in answers:
        acme.answer_challenge(challb, response)

    deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
    final = acme.poll_and_finalize(order, deadline)

    leaf = x509.load_pem_x509_certificate(final.fullchain_pem.encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)
    for zone, name, value in written:
        _update(sandbox, zone, name, value, delete=True)


def test_pebble_rejects_an_order_whose_txt_is_missing(sandbox: SandboxInfo) -> None:
    acme = _acme_client(sandbox, key := _account_key())
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    cert_key = ec.generate_private_key(ec.SECP256R1())
    key_pem = cert_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    order = acme.new_order(crypto_util.make_csr(key_pem, ["missing.example.org"]))
    authz = order.authorizations[0]
    challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
    acme.answer_challenge(challb, challb.chall.response(key))
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
    with pytest.raises(errors.ValidationError):
        acme.poll_authorizations(order, deadline)


def test_eab_sandbox_requires_and_accepts_its_binding(
    sandbox_factory: Callable[..., SandboxInfo],
) -> None:
    info = sandbox_factory(eab=True)
    directory = requests.get(info.directory_url, verify=str(info.ca_bundle), timeout=5).json()
    assert directory["meta"]["externalAccountRequired"] is True
    env = info.env()
    assert env["ACMEFLOW_SANDBOX_EAB_KID"] == info.eab_kid
    assert env["ACMEFLOW_SANDBOX_EAB_HMAC_KEY"] == info.eab_hmac_key

    key = _account_key()
    acme = _acme_client(info, key)
    with pytest.raises(messages.Error, match="externalAccountRequired"):
        acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))

    assert info.eab_kid and info.eab_hmac_key
    eab = messages.ExternalAccountBinding.from_data(
        account_public_key=key.public_key(),
        kid=info.eab_kid,
        hmac_key=info.eab_hmac_key,
        directory=acme.directory,
    )
    account = acme.new_account(
        messages.NewRegistration.from_data(
            terms_of_service_agreed=True, external_account_binding=eab
        )
    )
    assert account.body.status == "valid"
    assert account.uri.startswith("https://127.0.0.1:")


def test_nonce_reject_option_makes_pebble_reject_nonces(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    info = start_sandbox(tmp_path_factory, nonce_reject=100)
    acme = _acme_client(info, _account_key())
    with pytest.raises(messages.Error, match="badNonce"):
        acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    assert info.options["nonce_reject"] == 100
    assert sandbox_down(info.home)


# --- CLI --------------------------------------------------------------------------------------


def test_cli_up_status_env_down(tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "sb"
    try:
        result = runner.invoke(cli_sandbox.app, ["up", "--home", str(home)])
        assert result.exit_code == 0, result.output
        assert "Sandbox started" in result.output
        info = sandbox_status(home)
        assert info is not None

        again = runner.invoke(cli_sandbox.app, ["up", "--home", str(home)])
        assert again.exit_code == 0 and "already running" in again.output

        status = runner.invoke(cli_sandbox.app, ["status", "--home", str(home), "--json"])
        data = json.loads(status.output)
        assert data["running"] is True and data["directory_url"] == info.directory_url
        for zone in info.zones:  # secrets are masked in status
            assert zone.tsig_secret not in status.output

        env = runner.invoke(cli_sandbox.app, ["env", "--home", str(home)])
        assert f"export ACMEFLOW_DNS_QUERY_PORT={info.dns_port}" in env.output.splitlines()
        env_json = json.loads(
            runner.invoke(cli_sandbox.app, ["env", "--home", str(home), "--json"]).output
        )
        assert env_json == info.env()

        down = runner.invoke(cli_sandbox.app, ["down", "--home", str(home)])
        assert down.exit_code == 0
        assert f"pebble (pid {info.pebble_pid})" in down.output
        assert f"named (pid {info.named_pid})" in down.output
        assert not _running(info.pebble_pid) and not _running(info.named_pid)

        gone = runner.invoke(cli_sandbox.app, ["status", "--home", str(home)])
        assert gone.exit_code == 1 and "No sandbox running" in gone.output
    finally:
        sandbox_down(home)


def test_a_ca_that_stops_answering_is_reported_and_up_restarts_it(tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "sb"
    try:
        assert runner.invoke(cli_sandbox.app, ["up", "--home", str(home)]).exit_code == 0
        hung = sandbox_status(home)
        assert hung is not None and sandbox_answers(hung)
        os.kill(hung.pebble_pid, signal.SIGSTOP)  # runs, answers nothing: as a deadlocked CA

        status = runner.invoke(cli_sandbox.app, ["status", "--home", str(home)])
        assert status.exit_code == 1 and "not answering" in status.output
        data = json.loads(
            runner.invoke(cli_sandbox.app, ["status", "--home", str(home), "--json"]).output
        )
        assert data["running"] is True and data["answering"] is False

        up = runner.invoke(cli_sandbox.app, ["up", "--home", str(home)])
        assert up.exit_code == 0 and "restarted (it was not answering)" in up.output
        fresh = sandbox_status(home)
        assert fresh is not None and fresh.pebble_pid != hung.pebble_pid
        assert not _running(hung.pebble_pid) and not _running(hung.named_pid)
        assert sandbox_answers(fresh)
    finally:
        sandbox_down(home)


# --- process lifetime -------------------------------------------------------------------------

_REPO = Path(__file__).resolve().parent.parent


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(_REPO)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=_REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _wait_gone(*pids: int) -> bool:
    deadline = time.monotonic() + 15
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(_running(p) for p in pids)


@pytest.mark.parametrize("ending", ["exit", "sigkill"])
def test_library_sandbox_dies_with_the_process_that_started_it(tmp_path: Path, ending: str) -> None:
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from acmeflow.sandbox import sandbox_up\n"
        "info = sandbox_up(Path(sys.argv[1]))\n"
        "print(info.pebble_pid, info.named_pid, flush=True)\n"
        "if sys.argv[2] == 'sigkill':\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = _python(code, str(tmp_path / "sb"), ending)
    pebble_pid, named_pid = map(int, result.stdout.split())
    assert _wait_gone(pebble_pid, named_pid)
    assert sandbox_status(tmp_path / "sb") is None


def test_cli_sandbox_outlives_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "sb"
    try:
        cli = "from acmeflow.cli_sandbox import app; app()"
        result = _python(cli, "up", "--home", str(home))
        assert result.returncode == 0, result.stderr
        info = sandbox_status(home)
        assert info is not None
        assert requests.get(info.directory_url, verify=str(info.ca_bundle), timeout=5).ok

        result = _python(cli, "down", "--home", str(home))
        assert result.returncode == 0, result.stderr
        assert "Stopped" in result.stdout
        assert _wait_gone(info.pebble_pid, info.named_pid)
    finally:
        sandbox_down(home)


def _processes_using(home: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(home) in cmdline and _running(int(proc.name)):
                pids.append(int(proc.name))
    return pids


def test_failed_start_reports_the_log_and_leaves_nothing_running(tmp_path: Path) -> None:
    home = tmp_path / "sb"
    with pytest.raises(SandboxError, match=r"pebble exited[\s\S]*pebble"):
        sandbox_up(home, extra_pebble_env={"PEBBLE_CHAIN_LENGTH": "0"})  # pebble panics
    assert _processes_using(home) == []
    assert not (home / "state.json").exists()
    assert sandbox_status(home) is None


def test_up_retries_when_a_probed_port_is_taken_before_bind_binds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from acmeflow import sandbox as sandbox_module

    real_free_port = sandbox_module._free_dns_port
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", 0))
    taken = squatter.getsockname()[1]
    ports = iter([taken])
    monkeypatch.setattr(
        sandbox_module, "_free_dns_port", lambda: next(ports, None) or real_free_port()
    )
    home = tmp_path / "sb"
    try:
        info = sandbox_up(home)
        assert info.dns_port != taken
        assert _query(info, "example.com", "SOA").rcode() == dns.rcode.NOERROR
    finally:
        squatter.close()
        sandbox_down(home)


def test_a_default_sandbox_tells_pebble_to_reject_no_nonce(sandbox: SandboxInfo) -> None:
    """Unset, pebble rejects 5 % of good nonces: a default sandbox sets the rate to 0."""
    environ = Path(f"/proc/{sandbox.pebble_pid}/environ").read_bytes().split(b"\0")
    assert b"PEBBLE_WFE_NONCEREJECT=0" in environ
    assert sandbox.options["nonce_reject"] == 0

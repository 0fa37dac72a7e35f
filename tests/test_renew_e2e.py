"""The `renew` flow on the sandbox (F6): ARI windows and `replaces` through a loopback ARI front,
the renew_days fallback, unmapped names, no active providers, backoff, and renewal in place."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from cryptography import x509
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from typer.testing import CliRunner, Result

from acmeflow import cli_renew
from acmeflow.config.settings import get_settings
from acmeflow.core.state import cas, certificates, history
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import Certificate
from acmeflow.sandbox import SandboxInfo
from tests.fakes.ari_front import AriFront
from tests.fixtures_acmeflow import Home
from tests.test_issue_e2e import issue_json, txt_values

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]

_renew_app = typer.Typer()
_renew_app.command()(cli_renew.renew)


def renew_cli(*args: str) -> Result:
    """``acmeflow renew ARGS`` (the command as the lead mounts it in acmeflow/cli.py)."""
    return CliRunner().invoke(_renew_app, list(args), catch_exceptions=False)


def renew_json(*args: str, expect_exit: int = 0) -> dict[str, Any]:
    result = renew_cli(*args, "--json")
    assert result.exit_code == expect_exit, result.output
    return json.loads(result.stdout[result.stdout.index("{") :])


def latest_flow_run(flow_name: str) -> FlowRun:
    """The newest run of ``flow_name`` as the Prefect server recorded it."""
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
    return run


def cert_row(cert_id: int) -> Certificate:
    engine = open_database(get_settings().resolved_database_url)
    with session_scope(engine) as s:
        return certificates.get_certificate(s, cert_id)


def history_of(cert_id: int) -> list[dict[str, Any]]:
    engine = open_database(get_settings().resolved_database_url)
    with session_scope(engine) as s:
        return [
            {"status": e.status, "message": e.message, "detail": e.detail, "kind": e.kind}
            for e in history.list_log(s, certificate_id=cert_id)
        ]


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def live_serial(folder: str) -> int:
    pem = (Path(folder) / "cert.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).serial_number


@pytest.fixture
def front(sandbox: SandboxInfo) -> Iterator[AriFront]:
    with AriFront.for_sandbox(sandbox) as f:
        yield f


@pytest.fixture
def ari_home(
    home_factory: Callable[[SandboxInfo], Home], sandbox: SandboxInfo, front: AriFront
) -> Home:
    """A home whose CA `sandbox` is pebble behind the ARI front."""
    h = home_factory(sandbox)
    h.ok(
        "ca", "add", "sandbox", "--vendor", "custom", "--email", "admin@example.com",
        "--directory-url", front.directory_url, "--ca-bundle", str(sandbox.ca_bundle),
    )  # fmt: skip
    assert h.add_zone_provider("bind-com", "example.com").exit_code == 0
    h.ok("dns", "map", "bind-com", "example.com")
    return h


@pytest.mark.prefect
def test_ari_window_before_inside_after_and_replaces(ari_home: Home, front: AriFront) -> None:
    inside = issue_json(
        ari_home, "--name", "ari-in.example.com", "--name", "www.ari-in.example.com", "--auto-renew"
    )
    late = issue_json(ari_home, "--name", "ari-late.example.com", "--auto-renew")
    ari_in = cert_row(inside["id"]).ari_cert_id
    ari_late = cert_row(late["id"]).ari_cert_id
    assert ari_in and ari_late
    t0 = dt.datetime.now(dt.UTC)
    # far from expiry (pebble issues long-lived certificates): only ARI can make them due
    front.set_window(
        ari_in, t0 + dt.timedelta(days=10), t0 + dt.timedelta(days=12), retry_after=3600
    )
    front.set_window(
        ari_late, t0 + dt.timedelta(days=2), t0 + dt.timedelta(days=4), retry_after=3600
    )
    orders_before = len(front.orders)

    before = renew_json("--at", iso(t0))
    assert before["renewed"] == 0 and before["not_due"] == 2
    assert {ari_in, ari_late} <= set(front.renewal_info_requests)
    assert cert_row(inside["id"]).ari_window_start is not None

    # Retry-After (1 h) is honoured: 30 minutes later nobody asks the CA again
    asked = len(front.renewal_info_requests)
    renew_json("--at", iso(t0 + dt.timedelta(minutes=30)))
    assert len(front.renewal_info_requests) == asked

    # day 11: inside the window of one, past the window of the other -> both renewed
    summary = renew_json("--at", iso(t0 + dt.timedelta(days=11)))
    assert summary["renewed"] == 2, summary
    assert len(front.renewal_info_requests) > asked
    new_orders = front.orders[orders_before:]
    assert sorted(o.get("replaces") for o in new_orders) == sorted([ari_in, ari_late])
    for issued in (inside, late):
        row = cert_row(issued["id"])
        assert row.serial != issued["serial"]
        assert row.folder == issued["folder"]
        assert live_serial(row.folder) == int(row.serial, 16)
        assert row.ari_window_start is None  # the new certificate has its own window
    assert txt_values(ari_home.sandbox, "_acme-challenge.ari-in.example.com") == []


@pytest.mark.prefect
def test_ari_error_falls_back_to_renew_days(ari_home: Home, front: AriFront) -> None:
    issued = issue_json(ari_home, "--name", "ari-err.example.com", "--auto-renew")
    ari_id = cert_row(issued["id"]).ari_cert_id
    front.set_error(ari_id, 503, retry_after=120)
    not_after = dt.datetime.fromisoformat(issued["not_after"])
    orders_before = len(front.orders)

    early = renew_json("--at", iso(not_after - dt.timedelta(days=31)))
    assert early["renewed"] == 0 and early["not_due"] == 1
    row = cert_row(issued["id"])
    assert row.ari_window_start is None and row.renewal_due_at == not_after - dt.timedelta(days=30)

    due = renew_json("--at", iso(not_after - dt.timedelta(days=29)))
    assert due["renewed"] == 1
    # the CA did not answer ARI for it: no `replaces`
    assert [o.get("replaces") for o in front.orders[orders_before:]] == [None]


# --- renew_days, skips and backoff (plain sandbox, no ARI) ---------------------------------------


def due_time(*issued: dict[str, Any], renew_days: int = 30) -> dt.datetime:
    """A time at which every given certificate is inside its renew_days window."""
    latest = max(dt.datetime.fromisoformat(i["not_after"]) for i in issued)
    return latest - dt.timedelta(days=renew_days - 1)


@pytest.mark.prefect
def test_manual_certificate_renews_only_on_demand(home: Home) -> None:
    manual = issue_json(home, "--name", "manual.example.com")
    auto = issue_json(home, "--name", "auto.example.com", "--auto-renew")
    at = due_time(manual, auto)
    scheduled = renew_json("--at", iso(at))
    assert [r["id"] for r in scheduled["results"]] == [auto["id"]]
    assert cert_row(manual["id"]).serial == manual["serial"]

    result = renew_cli("--now", str(manual["id"]))
    assert result.exit_code == 0, result.output
    row = cert_row(manual["id"])
    assert row.serial != manual["serial"] and row.enrollment == "manual"
    assert live_serial(row.folder) == int(row.serial, 16)
    assert "1 renewed" in result.output
    # a new key unless the certificate reuses its key
    prev = sorted((Path(row.folder) / "previous").iterdir())
    assert (prev[-1] / "privkey.pem").read_bytes() != (
        Path(row.folder) / "privkey.pem"
    ).read_bytes()
    assert history_of(manual["id"])[0]["kind"] == "renew"


@pytest.mark.prefect
def test_reuse_key_keeps_the_private_key(home: Home) -> None:
    issued = issue_json(home, "--name", "reuse.example.com", "--auto-renew")
    engine = open_database(get_settings().resolved_database_url)
    with session_scope(engine) as s:
        certificates.update_certificate(
            s, certificates.get_certificate(s, issued["id"]), reuse_key=True
        )
    key_before = (Path(issued["folder"]) / "privkey.pem").read_bytes()
    summary = renew_json("--now", str(issued["id"]))
    assert summary["renewed"] == 1
    assert (Path(issued["folder"]) / "privkey.pem").read_bytes() == key_before
    new = x509.load_pem_x509_certificate((Path(issued["folder"]) / "cert.pem").read_bytes())
    assert format(new.serial_number, "x") != issued["serial"]


@pytest.mark.prefect
def test_unmapped_name_is_skipped(home: Home) -> None:
    assert home.add_zone_provider("bind-org", "example.org").exit_code == 0
    home.ok("dns", "map", "bind-org", "example.org")
    issued = issue_json(home, "--name", "um.example.org", "--auto-renew")
    home.ok("dns", "unmap", "bind-org", "example.org")
    cert_before = (Path(issued["folder"]) / "cert.pem").read_bytes()

    summary = renew_json("--at", iso(due_time(issued)))
    [row] = [r for r in summary["results"] if r["id"] == issued["id"]]
    assert row["status"] == "skipped"
    assert row["message"] == "Certificate is missing a DNS provider name."
    assert "um.example.org" in row["detail"]
    assert history_of(issued["id"])[0]["status"] == "skipped"
    assert history_of(issued["id"])[0]["message"] == "Certificate is missing a DNS provider name."
    assert (Path(issued["folder"]) / "cert.pem").read_bytes() == cert_before
    assert cert_row(issued["id"]).next_attempt_at is None  # configuration, not CA trouble

    on_demand = renew_cli("--now", str(issued["id"]))
    assert on_demand.exit_code == 1
    assert "Certificate is missing a DNS provider name." in on_demand.output


@pytest.mark.prefect
def test_no_active_provider_skips_renewal(home: Home) -> None:
    issued = issue_json(home, "--name", "noprov.example.com", "--auto-renew")
    home.ok("dns", "edit", "bind-com", "--inactive")
    summary = renew_json("--at", iso(due_time(issued)))
    [row] = [r for r in summary["results"] if r["id"] == issued["id"]]
    assert row["status"] == "skipped"
    assert row["message"] == "Renewal skipped as no active DNS providers are configured."
    assert cert_row(issued["id"]).serial == issued["serial"]
    assert history_of(issued["id"])[0]["message"] == row["message"]


def set_directory(ca: str, url: str) -> None:
    engine = open_database(get_settings().resolved_database_url)
    with session_scope(engine) as s:
        cas.update_ca(s, ca, directory_url=url)


@pytest.mark.prefect
def test_failure_backs_off_and_leaves_the_certificate_in_service(home: Home) -> None:
    assert home.add_sandbox_ca("sandbox2").exit_code == 0
    result = home.cli(
        "issue", "--ca", "sandbox2", "--name", "bo.example.com", "--auto-renew", "--json"
    )
    assert result.exit_code == 0, result.output
    bad = json.loads(result.stdout[result.stdout.index("{") :])
    good = issue_json(home, "--name", "good.example.com", "--auto-renew")
    files_before = (Path(bad["folder"]) / "cert.pem").read_bytes()
    # the CA of one certificate stops answering (its directory moved away)
    set_directory("sandbox2", "https://127.0.0.1:9/dir")
    t0 = due_time(bad, good)

    first = renew_json("--at", iso(t0), expect_exit=1)
    # the Prefect server records the run as Failed (automations and notifications fire)
    run = latest_flow_run("renew")
    assert run.state is not None and run.state.type == StateType.FAILED
    assert "1 renewed, 1 failed" in (run.state.message or "")
    by_id = {r["id"]: r for r in first["results"]}
    assert by_id[good["id"]]["status"] == "renewed"  # one failure does not stop the others
    assert by_id[bad["id"]]["status"] == "failed"
    assert by_id[bad["id"]]["message"] == (
        "Cannot initialize API for the CA server. Please check the CA server configuration."
    )
    row = cert_row(bad["id"])
    assert row.failure_count == 1
    assert t0 + dt.timedelta(minutes=4.5) <= row.next_attempt_at <= t0 + dt.timedelta(minutes=5)
    assert (Path(bad["folder"]) / "cert.pem").read_bytes() == files_before
    assert row.serial == bad["serial"]
    assert history_of(bad["id"])[0]["status"] == "failed"

    # inside the backoff the certificate is left alone
    quiet = renew_json("--at", iso(t0 + dt.timedelta(minutes=1)))
    assert bad["id"] not in {r["id"] for r in quiet["results"]}
    assert cert_row(bad["id"]).failure_count == 1

    # after it: tried again, fails again, waits twice as long
    t1 = t0 + dt.timedelta(minutes=6)
    again = renew_json("--at", iso(t1), expect_exit=1)
    assert {r["id"]: r["status"] for r in again["results"]}[bad["id"]] == "failed"
    row = cert_row(bad["id"])
    assert row.failure_count == 2
    assert t1 + dt.timedelta(minutes=9) <= row.next_attempt_at <= t1 + dt.timedelta(minutes=10)

    # fixed: the next run after the backoff renews it and clears the failures
    set_directory("sandbox2", home.sandbox.directory_url)
    fixed = renew_json("--at", iso(t1 + dt.timedelta(minutes=11)))
    assert {r["id"]: r["status"] for r in fixed["results"]}[bad["id"]] == "renewed"
    row = cert_row(bad["id"])
    assert row.failure_count == 0 and row.next_attempt_at is None and row.last_error is None
    assert row.serial != bad["serial"]
    previous = sorted((Path(bad["folder"]) / "previous").iterdir())
    assert (previous[-1] / "cert.pem").read_bytes() == files_before


# --- end to end: scan, enroll, renew in place ----------------------------------------------------


def _other_ca_certificate(name: str) -> bytes:
    """A leaf for ``name`` from an unrelated private CA (PEM), as an admin might have."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Unrelated Corp Issuing CA")])
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=300))
        .not_valid_after(now + dt.timedelta(days=20))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return leaf.public_bytes(serialization.Encoding.PEM)


@pytest.mark.prefect
def test_scan_enroll_and_renew_in_place(
    home_factory: Callable[[SandboxInfo], Home], sandbox: SandboxInfo, tmp_path: Path
) -> None:
    # certificates from the sandbox CA, obtained elsewhere (another acmeflow home)
    elsewhere = home_factory(sandbox)
    elsewhere.configure()
    made = [
        issue_json(elsewhere, "--name", "scan-a.example.com", "--name", "www.scan-a.example.com"),
        issue_json(elsewhere, "--name", "scan-b.example.com"),
    ]
    home = home_factory(sandbox)
    home.configure()
    cert_store = home.path / "stores" / "certificate"
    zero_touch = home.path / "stores" / "zero-touch"
    # a: an acmeflow-style folder (cert.pem + privkey.pem) in the certificate store
    folder_a = cert_store / "scan-a"
    folder_a.mkdir(parents=True)
    for name in ("cert.pem", "privkey.pem"):
        (folder_a / name).write_bytes((Path(made[0]["folder"]) / name).read_bytes())
    # b: a loose PEM file in the zero-touch store; c: a loose file from an unrelated CA
    zero_touch.mkdir(parents=True)
    (zero_touch / "scan-b.pem").write_bytes((Path(made[1]["folder"]) / "cert.pem").read_bytes())
    (cert_store / "legacy.pem").write_bytes(_other_ca_certificate("legacy.example.com"))

    from acmeflow.flows.scan import scan

    report = scan()
    found = {r.folder: r for r in _rows()}
    assert len(found) == 3, report
    a = next(r for r in found.values() if r.folder.startswith(str(folder_a)))
    b = next(r for r in found.values() if "scan-b" in r.folder)
    c = next(r for r in found.values() if "legacy" in r.folder)
    old = {r.id: r.serial for r in (a, b, c)}
    home.ok(
        "certs",
        "enroll",
        str(a.id),
        str(b.id),
        str(c.id),
        "--ca",
        "sandbox",
        "--confirm-vendor-change",
    )

    at = max(r.not_after for r in (a, b, c)) - dt.timedelta(days=29)
    summary = renew_json("--at", iso(at))
    assert summary["renewed"] == 3, summary
    for row in (a, b, c):
        now_row = cert_row(row.id)
        assert now_row.serial != old[row.id] and now_row.store == row.store
        folder = Path(now_row.folder)
        assert folder.parent == (cert_store if row.store == "certificate" else zero_touch)
        assert live_serial(str(folder)) == int(now_row.serial, 16)
        kept = [p for p in (folder / "previous").rglob("*") if p.is_file()]
        kept_serials = {
            x509.load_pem_x509_certificate(p.read_bytes()).serial_number
            for p in kept
            if p.suffix == ".pem" and b"BEGIN CERTIFICATE" in p.read_bytes()
        }
        assert int(old[row.id], 16) in kept_serials  # the old one is a previous version
        assert "Pebble" in (now_row.issuer or "")  # the unrelated one moved to the sandbox CA
    assert not (cert_store / "legacy.pem").exists() and not (zero_touch / "scan-b.pem").exists()
    for name in ("scan-a", "www.scan-a", "scan-b", "legacy"):
        assert txt_values(sandbox, f"_acme-challenge.{name}.example.com") == []


def _rows() -> list[Certificate]:
    from sqlalchemy import select

    engine = open_database(get_settings().resolved_database_url)
    with session_scope(engine) as s:
        return list(s.scalars(select(Certificate).where(Certificate.status == "active")))

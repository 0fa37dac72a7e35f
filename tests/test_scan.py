"""Scan (F2): every certificate in both stores, classified by CA, idempotent, duplicates warned."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from acmeflow.config.settings import get_settings
from acmeflow.core.scan import classify, scan_store
from acmeflow.core.state import cas, certificates, inventory
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import Certificate
from acmeflow.core.storage import stores_from_settings
from acmeflow.core.stores import CertificateStore

NOW = datetime.now(UTC).replace(microsecond=0)
PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


# --- certificates for the tests ------------------------------------------------------------


@dataclass
class Issuer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def make_issuer(cn: str, org: str | None = None) -> Issuer:
    """A self-signed CA with this subject CN / O."""
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    name = x509.Name(attrs)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=400))
        .not_valid_after(NOW + timedelta(days=4000))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issuer(key, cert)


def make_leaf(
    issuer: Issuer,
    names: list[str],
    *,
    days_left: int = 60,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    """A leaf for ``names`` signed by ``issuer`` that expires in ``days_left`` days."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=10))
        .not_valid_after(NOW + timedelta(days=days_left))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(issuer.key, hashes.SHA256())
    )
    return cert, key


def write_pem(path: Path, cert: x509.Certificate, *extra: x509.Certificate) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(c.public_bytes(PEM) for c in (cert, *extra)))
    return path


def write_der(path: Path, cert: x509.Certificate) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(DER))
    return path


def write_p12(
    path: Path,
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    issuer: Issuer,
    password: bytes,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"test", key, cert, [issuer.cert], serialization.BestAvailableEncryption(password)
        )
    )
    return path


def write_managed(
    store_root: Path,
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
) -> Path:
    """A certificate folder as acmeflow writes it (cert.pem + metadata.json + ...)."""
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    store = CertificateStore(store_root, "certificate")
    folder = store.folder_for(list(names.get_values_for_type(x509.DNSName)))
    pem = cert.public_bytes(PEM)
    store.write(
        folder,
        cert_pem=pem,
        chain_pem=b"",
        fullchain_pem=pem,
        key_pem=key.private_bytes(
            PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        metadata={"names": []},
    )
    return folder


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def local_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An ACMEFLOW_HOME without sandbox: its own database and both stores."""
    home = tmp_path / "home"
    monkeypatch.setenv("ACMEFLOW_HOME", str(home))
    for var in ("ACMEFLOW_DATABASE_URL", "ACMEFLOW_CERTIFICATE_STORE", "ACMEFLOW_ZERO_TOUCH_STORE"):
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture
def engine(local_home: Path) -> Engine:
    return open_database()


@pytest.fixture
def roots(local_home: Path) -> dict[str, Path]:
    return {kind: store.root for kind, store in stores_from_settings().items()}


@pytest.fixture
def issuers() -> dict[str, Issuer]:
    return {
        "le": make_issuer("R11", "Let's Encrypt"),
        "other": make_issuer("Other Issuing CA", "Other Org"),
        "private": make_issuer("Private Intermediate CA 7f3a"),
    }


def run_scan(engine: Engine, passwords: tuple[bytes, ...] = ()) -> inventory.InventoryReport:
    """What the scan flow does, without Prefect: read each store, then record it."""
    scans = []
    for kind, store in stores_from_settings().items():
        with session_scope(engine) as s:
            known = inventory.known_files(s, kind)
        scans.append(scan_store(store.directory, passwords=list(passwords), known=known))
    with session_scope(engine) as s:
        return inventory.record_scan(s, scans)


def rows(engine: Engine, *, status: str | None = "active") -> list[Certificate]:
    with session_scope(engine) as s:
        return certificates.list_certificates(s, status=status)


def add_le_ca(s: Session, name: str = "le", **kw: Any) -> int:
    return cas.add_ca(s, name=name, vendor="letsencrypt", email="ops@example.com", **kw).id


def add_custom_ca(s: Session, name: str = "private") -> int:
    return cas.add_ca(
        s,
        name=name,
        vendor="custom",
        email="ops@example.com",
        directory_url="https://acme.internal.example/directory",
    ).id


# --- core + inventory ------------------------------------------------------------------------


def test_reads_pem_der_and_pkcs12_placed_by_hand(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer], monkeypatch
) -> None:
    pem_cert, _ = make_leaf(issuers["le"], ["shop.example.com", "www.shop.example.com"])
    der_cert, _ = make_leaf(issuers["other"], ["api.example.org"], days_left=5)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p12_cert, p12_key = make_leaf(issuers["other"], ["vpn.example.net"], key=rsa_key)
    write_pem(roots["certificate"] / "legacy" / "shop.crt", pem_cert, issuers["le"].cert)
    write_der(roots["zero-touch"] / "api.der", der_cert)
    write_p12(roots["certificate"] / "vpn.pfx", p12_cert, p12_key, issuers["other"], b"s3cret!")

    report = run_scan(engine, (b"wrong", b"s3cret!"))

    assert report.problems == []
    found = {c.common_name: c for c in rows(engine)}
    assert set(found) == {"shop.example.com", "api.example.org", "vpn.example.net"}
    shop = found["shop.example.com"]
    assert shop.store == "certificate" and shop.source == "scan" and shop.enrollment == "manual"
    assert shop.names == ["shop.example.com", "www.shop.example.com"]
    assert shop.issuer_common_name == "R11" and shop.issuer_organization == "Let's Encrypt"
    assert shop.subject == "CN=shop.example.com"
    assert shop.serial == format(pem_cert.serial_number, "x")
    assert shop.not_after == pem_cert.not_valid_after_utc
    assert shop.not_before == pem_cert.not_valid_before_utc
    assert shop.key_type == "ec256"
    assert shop.fingerprint_sha256 == pem_cert.fingerprint(hashes.SHA256()).hex()
    assert shop.path == shop.folder == str(roots["certificate"] / "legacy" / "shop.crt")
    assert found["vpn.example.net"].key_type == "rsa2048"
    assert found["api.example.org"].store == "zero-touch"
    # expiring soonest first
    assert report.expiring[0]["names"] == ["api.example.org"]
    assert report.expiring[0]["days_left"] in (4, 5)


def test_counts_per_ca_in_the_products_words(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    for i in range(2):
        write_pem(
            roots["certificate"] / f"le{i}.pem", make_leaf(issuers["le"], [f"a{i}.example.com"])[0]
        )
        write_der(
            roots["zero-touch"] / f"o{i}.cer", make_leaf(issuers["other"], [f"b{i}.example.com"])[0]
        )
    with session_scope(engine) as s:
        add_le_ca(s)
    report = run_scan(engine)
    assert report.counts_line() == "Let's Encrypt: 2, Other CA: 2"
    assert report.total == 4


def test_custom_ca_classifies_what_it_learned_it_issued(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    write_pem(roots["certificate"] / "p.pem", make_leaf(issuers["private"], ["p.example.com"])[0])
    write_pem(roots["certificate"] / "o.pem", make_leaf(issuers["other"], ["o.example.com"])[0])
    with session_scope(engine) as s:
        add_custom_ca(s)
    assert run_scan(engine).counts_line() == "private: 0, Other CA: 2"
    with session_scope(engine) as s:  # what store_certificate does after an issuance
        cas.add_issuer_names(s, cas.get_ca(s, "private"), ["Private Intermediate CA 7f3a"])
    assert run_scan(engine).counts_line() == "private: 1, Other CA: 1"


def test_two_configurations_of_one_vendor_are_named_by_name(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    write_pem(roots["certificate"] / "a.pem", make_leaf(issuers["le"], ["a.example.com"])[0])
    with session_scope(engine) as s:
        add_le_ca(s, "le-prod")
        add_le_ca(s, "le-backup")
    assert run_scan(engine).counts_line() == "le-backup: 0, le-prod: 1, Other CA: 0"


def test_same_certificate_in_both_stores_is_warned(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    cert, _ = make_leaf(issuers["le"], ["twice.example.com"])
    write_pem(roots["certificate"] / "twice.pem", cert)
    write_der(roots["zero-touch"] / "copy" / "twice.der", cert)
    write_pem(roots["zero-touch"] / "single.pem", make_leaf(issuers["le"], ["one.example.com"])[0])
    report = run_scan(engine)
    assert len(report.duplicates) == 1
    warning = report.duplicates[0].warning()
    assert "twice.example.com" in warning and "renewed twice" in warning
    assert str(roots["certificate"] / "twice.pem") in warning
    assert str(roots["zero-touch"] / "copy" / "twice.der") in warning
    assert report.total == 3  # both copies are recorded: each store renews its own


def test_rescan_is_idempotent_and_skips_unchanged_files(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    for i in range(3):
        write_pem(
            roots["certificate"] / f"c{i}.pem", make_leaf(issuers["le"], [f"c{i}.example.com"])[0]
        )
    first = run_scan(engine)
    before = [(c.id, c.folder, c.fingerprint_sha256, c.status) for c in rows(engine)]
    second = run_scan(engine)
    after = [(c.id, c.folder, c.fingerprint_sha256, c.status) for c in rows(engine)]
    assert after == before
    assert first.stores["certificate"].new == 3
    summary = second.stores["certificate"]
    assert (summary.new, summary.unchanged, summary.read, summary.gone) == (0, 3, 0, 0)


def test_removed_file_is_marked_gone_then_comes_back(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    path = write_pem(
        roots["zero-touch"] / "gone.pem", make_leaf(issuers["le"], ["gone.example.com"])[0]
    )
    write_pem(roots["zero-touch"] / "stays.pem", make_leaf(issuers["le"], ["stays.example.com"])[0])
    run_scan(engine)
    with session_scope(engine) as s:
        add_le_ca(s)
        (cert_id,) = [c.id for c in certificates.list_certificates(s) if c.path == str(path)]
        inventory.enroll(s, [cert_id], "le")
    saved = path.read_bytes()
    path.unlink()
    report = run_scan(engine)
    assert report.stores["zero-touch"].gone == 1
    assert [c.common_name for c in rows(engine)] == ["stays.example.com"]
    with session_scope(engine) as s:
        gone = certificates.get_certificate(s, cert_id)
        assert gone.status == "gone" and gone.gone_at is not None
        assert gone.enrollment == "auto"  # not forgotten: it keeps its renewal settings
    path.write_bytes(saved)
    report = run_scan(engine)
    assert report.stores["zero-touch"].returned == 1
    with session_scope(engine) as s:
        back = certificates.get_certificate(s, cert_id)
        assert (back.status, back.gone_at, back.enrollment) == ("active", None, "auto")


def test_moved_file_keeps_its_record(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    path = write_pem(
        roots["certificate"] / "old-name.pem", make_leaf(issuers["le"], ["m.example.com"])[0]
    )
    run_scan(engine)
    (row,) = rows(engine)
    target = roots["certificate"] / "sub" / "new-name.pem"
    target.parent.mkdir()
    shutil.move(path, target)
    run_scan(engine)
    (moved,) = rows(engine, status=None)
    assert (moved.id, moved.path, moved.status) == (row.id, str(target), "active")


def test_certificate_replaced_by_hand_updates_the_record(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    path = roots["certificate"] / "site.pem"
    write_pem(path, make_leaf(issuers["le"], ["site.example.com"], days_left=3)[0])
    run_scan(engine)
    with session_scope(engine) as s:
        add_le_ca(s, renew_days=30)
        (cert,) = certificates.list_certificates(s)
        inventory.enroll(s, [cert.id], "le")
    renewed, _ = make_leaf(issuers["le"], ["site.example.com"], days_left=90)
    write_pem(path, renewed)
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    report = run_scan(engine)
    assert report.stores["certificate"].updated == 1
    (row,) = rows(engine)
    assert row.id == cert.id and row.enrollment == "auto"
    assert row.fingerprint_sha256 == renewed.fingerprint(hashes.SHA256()).hex()
    assert row.renewal_due_at == renewed.not_valid_after_utc - timedelta(days=30)


def test_unreadable_files_are_reported_not_fatal(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    cert, key = make_leaf(issuers["other"], ["locked.example.com"])
    write_p12(roots["certificate"] / "locked.p12", cert, key, issuers["other"], b"pw-unknown")
    (roots["certificate"] / "junk.crt").write_bytes(b"not a certificate at all")
    write_pem(roots["certificate"] / "ok.pem", make_leaf(issuers["le"], ["ok.example.com"])[0])
    report = run_scan(engine)
    reasons = {Path(p.path).name: p.reason for p in report.problems}
    assert set(reasons) == {"locked.p12", "junk.crt"}
    assert "password" in reasons["locked.p12"] and "pw-unknown" not in reasons["locked.p12"]
    assert [c.common_name for c in rows(engine)] == ["ok.example.com"]


def test_chain_files_and_copies_in_one_store_are_recorded_once(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    cert, _ = make_leaf(issuers["le"], ["live.example.com"])
    live = roots["certificate"] / "live"
    write_pem(live / "cert.pem", cert)
    write_pem(live / "fullchain.pem", cert, issuers["le"].cert)
    write_pem(live / "chain.pem", issuers["le"].cert)  # only a CA certificate
    report = run_scan(engine)
    (row,) = rows(engine)
    assert row.path == str(live / "cert.pem")
    assert report.aliases == [
        {
            "store": "certificate",
            "path": str(live / "fullchain.pem"),
            "same_as": str(live / "cert.pem"),
        }
    ]


def test_acmeflow_folders_match_their_issued_record(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    cert, key = make_leaf(issuers["private"], ["issued.example.com"])
    folder = write_managed(roots["certificate"], cert, key)
    with session_scope(engine) as s:
        ca_id = add_custom_ca(s)
        cas.add_issuer_names(s, cas.get_ca(s, "private"), ["Private Intermediate CA 7f3a"])
        issued = certificates.add_certificate(
            s,
            store="certificate",
            folder=str(folder),
            names=["issued.example.com"],
            ca_vendor_id=ca_id,
            enrollment="auto",
            source="acmeflow",
            fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        )
    report = run_scan(engine)
    assert report.stores["certificate"].new == 0
    (row,) = rows(engine)
    assert (row.id, row.source, row.enrollment) == (issued.id, "acmeflow", "auto")
    assert row.path == str(folder / "cert.pem") and row.issued_by_ca_id == ca_id
    assert report.counts_line() == "private: 1, Other CA: 0"


def test_missing_store_folder_marks_nothing_gone(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    write_pem(roots["certificate"] / "x.pem", make_leaf(issuers["le"], ["x.example.com"])[0])
    run_scan(engine)
    shutil.rmtree(roots["certificate"])  # e.g. an unmounted volume
    report = run_scan(engine)
    assert report.stores["certificate"].gone == 0
    assert [c.status for c in rows(engine)] == ["active"]
    assert report.stores["certificate"].exists is False


def test_classify_prefers_the_ca_a_certificate_is_under() -> None:
    from acmeflow.core.scan import CAIssuers

    cas = [
        CAIssuers(1, "le-a", "le-a", ("R11",), active=False),
        CAIssuers(2, "le-b", "le-b", ("R11",)),
        CAIssuers(3, "le-c", "le-c", ("R11",)),
    ]
    assert classify("R11", None, cas) == 2  # active first, then lowest id
    assert classify("r11", None, cas, prefer=3) == 3
    assert classify("Unknown", "Nobody", cas) is None


def test_remembered_passwords_are_sealed(engine: Engine, monkeypatch) -> None:
    monkeypatch.setenv("P12_PW", "from-env")
    with session_scope(engine) as s:
        stored = inventory.save_scan_passwords(s, ["env:P12_PW", "literal-secret"])
    assert stored[0] == "env:P12_PW" and stored[1].startswith("enc:")
    with session_scope(engine) as s:
        raw = inventory.get_setting(s, inventory.P12_PASSWORDS_SETTING)
        assert raw is not None and "literal-secret" not in raw
        assert inventory.unseal_passwords(inventory.scan_passwords(s)) == [
            b"from-env",
            b"literal-secret",
        ]


# --- the flow and the CLI, on the sandbox ----------------------------------------------------


@pytest.mark.prefect
@pytest.mark.sandbox
@pytest.mark.usefixtures("prefect_harness")
def test_scan_flow_on_sandbox_and_unrelated_ca(
    home, issuers: dict[str, Issuer], monkeypatch
) -> None:
    """Certificates from the sandbox CA and from an unrelated CA, in both stores."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    issued = home.cli("issue", "--ca", "sandbox", "--name", "scan.example.com", "--json")
    assert issued.exit_code == 0, issued.output
    issued_id = json.loads(issued.stdout[issued.stdout.index("{") :])["id"]
    roots = {kind: store.root for kind, store in stores_from_settings().items()}
    cert, _ = make_leaf(issuers["other"], ["legacy.example.com"], days_left=2)
    write_der(roots["zero-touch"] / "legacy.der", cert)
    cert2, key2 = make_leaf(issuers["other"], ["p12.example.com"])
    write_p12(roots["certificate"] / "hand" / "p12.pfx", cert2, key2, issuers["other"], b"pfx-pw")
    # the sandbox certificate copied by hand into the zero-touch store too
    cert_file = next(roots["certificate"].glob("scan.example.com-*/cert.pem"))
    shutil.copy(cert_file, roots["zero-touch"] / "copied.pem")
    monkeypatch.setenv("SCAN_P12_PW", "pfx-pw")

    result = home.cli("scan", "--p12-password", "env:SCAN_P12_PW", "--remember-p12-password")
    assert result.exit_code == 0, result.output
    assert "sandbox: 2, Other CA: 2" in result.stdout
    assert "renewed twice" in result.output and "copied.pem" in result.output

    # rescan (remembered password) is idempotent, in JSON
    again = home.cli("scan", "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout[again.stdout.index("{") :])
    assert report["summary"] == "sandbox: 2, Other CA: 2"
    assert report["expiring"][0]["names"] == ["legacy.example.com"]
    assert report["stores"]["certificate"]["unchanged"] == 2
    assert report["stores"]["certificate"]["new"] == 0 and report["problems"] == []
    listed = json.loads(home.ok("certs", "list", "--json").stdout)
    assert len(listed) == 4
    by_name = {tuple(c["names"]): c for c in listed if c["store"] == "certificate"}
    assert by_name[("scan.example.com",)]["id"] == issued_id
    assert by_name[("p12.example.com",)]["issued_by"] == "Other CA"

    async def artifacts() -> dict[str, Any]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["inventory-by-ca", "certificates-expiring-soonest"])
                ),
                sort=ArtifactSort.CREATED_DESC,
            )
        latest: dict[str, Any] = {}
        for artifact in found:  # other tests of the session publish under the same keys
            latest.setdefault(str(artifact.key), artifact.data)
        return latest

    data = asyncio.run(artifacts())
    counts = (
        json.loads(data["inventory-by-ca"])
        if isinstance(data["inventory-by-ca"], str)
        else data["inventory-by-ca"]
    )
    assert {"CA": "sandbox", "certificates": 2} in counts
    assert {"CA": "Other CA", "certificates": 2} in counts
    expiring = data["certificates-expiring-soonest"]
    expiring = json.loads(expiring) if isinstance(expiring, str) else expiring
    assert expiring[0]["names"] == "legacy.example.com"


def test_plain_password_is_refused_as_flow_parameter() -> None:
    from acmeflow.core.errors import SecretError
    from acmeflow.tasks.scan import check_password_refs

    check_password_refs(["env:X", "file:/x", "prefect-block:x", "enc:gAAAA"])
    with pytest.raises(SecretError) as err:
        check_password_refs(["hunter22"])
    assert "hunter22" not in str(err.value)


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_scan_cli_prompted_password_is_remembered_encrypted(
    engine: Engine, roots: dict[str, Path], issuers: dict[str, Issuer]
) -> None:
    from typer.testing import CliRunner

    from acmeflow import cli

    runner = CliRunner()
    cert, key = make_leaf(issuers["other"], ["typed.example.com"])
    write_p12(roots["zero-touch"] / "typed.p12", cert, key, issuers["other"], b"typed-pw")
    result = runner.invoke(
        cli.app,
        ["scan", "--p12-password", "-", "--remember-p12-password", "--json"],
        input="typed-pw\n",
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "typed-pw" not in result.output
    assert json.loads(result.stdout)["summary"] == "Other CA: 1"
    with session_scope(engine) as s:
        stored = inventory.get_setting(s, inventory.P12_PASSWORDS_SETTING) or ""
    assert "enc:" in stored and "typed-pw" not in stored
    # a later scan without the option uses the remembered password
    cert2, key2 = make_leaf(issuers["other"], ["later.example.com"])
    write_p12(roots["certificate"] / "later.pfx", cert2, key2, issuers["other"], b"typed-pw")
    result = runner.invoke(cli.app, ["scan", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["problems"] == [], report
    assert report["summary"] == "Other CA: 2", report


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_scan_cli_unresolvable_password_reference(engine: Engine, monkeypatch) -> None:
    from typer.testing import CliRunner

    from acmeflow import cli

    monkeypatch.delenv("NO_SUCH_P12_PASSWORD", raising=False)
    result = CliRunner().invoke(
        cli.app, ["scan", "--p12-password", "env:NO_SUCH_P12_PASSWORD"], catch_exceptions=False
    )
    assert result.exit_code == 1
    assert "A secret could not be read." in result.output
    assert "NO_SUCH_P12_PASSWORD" in result.output

"""The certificate stores on disk: layout, modes, previous versions, staging keys, scan list."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmeflow.config.settings import Settings
from acmeflow.core.errors import ConfigError, InvalidKey, NotFound
from acmeflow.core.storage import stores_from_settings
from acmeflow.core.stores import (
    ARCHIVE_DIR,
    CURRENT_LINK,
    CertificateStore,
    StoredCertificate,
    names_digest,
)


def make_cert(names: list[str], key: ec.EllipticCurvePrivateKey | None = None) -> tuple[str, str]:
    """A self-signed certificate PEM and its key PEM."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def serial_hex(cert_pem: str) -> str:
    return format(x509.load_pem_x509_certificate(cert_pem.encode()).serial_number, "x")


def put(
    store: CertificateStore, folder: Path, cert_pem: str, key_pem: str | None
) -> StoredCertificate:
    return store.write(
        folder,
        cert_pem=cert_pem,
        chain_pem="CHAIN\n",
        fullchain_pem=cert_pem + "CHAIN\n",
        key_pem=key_pem,
        metadata={"serial": serial_hex(cert_pem)},
    )


@pytest.fixture
def store(tmp_path: Path) -> CertificateStore:
    return CertificateStore(tmp_path / "certificate", "certificate")


def test_folder_for_is_stable_per_name_set(store: CertificateStore) -> None:
    a = store.folder_for(["*.Example.com", "example.com"])
    b = store.folder_for(["example.com.", "*.example.com"])
    c = store.folder_for(["*.example.com"])
    assert a.parent == store.root
    assert a.name.startswith("_wildcard_.example.com-")
    assert a.name.endswith(names_digest(["example.com", "*.example.com"])[:8])
    assert len(a.name.rsplit("-", 1)[1]) == 8
    # same set in another order: same hash (the slug follows the first name)
    assert a.name.rsplit("-", 1)[1] == b.name.rsplit("-", 1)[1]
    assert b.name == "example.com-" + a.name.rsplit("-", 1)[1]
    assert c != a


def test_write_layout_and_modes(store: CertificateStore) -> None:
    cert, key = make_cert(["www.example.com"])
    folder = store.folder_for(["www.example.com"])
    stored = put(store, folder, cert, key)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "archive",
        "cert.pem",
        "chain.pem",
        "current",
        "fullchain.pem",
        "metadata.json",
        "privkey.pem",
    ]
    assert stored.cert.read_text() == cert
    assert stored.privkey.read_text() == key
    assert stored.fullchain.read_text().startswith(cert)
    assert stat.S_IMODE(stored.privkey.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert json.loads(stored.metadata.read_text()) == {"serial": serial_hex(cert)}
    assert store.read(folder) == stored
    assert store.previous_versions(folder) == []


def test_key_is_0600_even_with_a_permissive_umask(store: CertificateStore) -> None:
    old = os.umask(0)
    try:
        cert, key = make_cert(["umask.example.com"])
        stored = put(store, store.folder_for(["umask.example.com"]), cert, key)
    finally:
        os.umask(old)
    assert stat.S_IMODE(stored.privkey.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.cert.stat().st_mode) == 0o644


def test_renewal_keeps_previous_version_with_its_serial(store: CertificateStore) -> None:
    names = ["app.example.com"]
    folder = store.folder_for(names)
    cert1, key1 = make_cert(names)
    put(store, folder, cert1, key1)
    cert2, key2 = make_cert(names)
    put(store, folder, cert2, key2)

    assert (folder / "cert.pem").read_text() == cert2
    assert (folder / "privkey.pem").read_text() == key2
    (prev,) = store.previous_versions(folder)
    assert prev.parent.name == "previous"
    assert prev.name.endswith("-" + serial_hex(cert1))
    assert (prev / "cert.pem").read_text() == cert1
    assert (prev / "privkey.pem").read_text() == key1
    assert stat.S_IMODE((prev / "privkey.pem").stat().st_mode) == 0o600
    # no temporary or staging leftovers
    assert [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".lock"] == []
    assert [p.name for p in (folder / "previous").iterdir() if p.name.startswith(".")] == []


def test_reuse_key_keeps_privkey(store: CertificateStore) -> None:
    names = ["reuse.example.com"]
    folder = store.folder_for(names)
    key = ec.generate_private_key(ec.SECP256R1())
    cert1, key_pem = make_cert(names, key)
    put(store, folder, cert1, key_pem)
    cert2, _ = make_cert(names, key)
    put(store, folder, cert2, None)
    assert (folder / "cert.pem").read_text() == cert2
    assert (folder / "privkey.pem").read_text() == key_pem


def test_reuse_key_without_a_key_fails_and_changes_nothing(store: CertificateStore) -> None:
    names = ["nokey.example.com"]
    folder = store.folder_for(names)
    cert, _ = make_cert(names)
    with pytest.raises(InvalidKey):
        put(store, folder, cert, None)
    assert not (folder / "cert.pem").exists()


def test_mismatched_key_is_refused_and_old_set_stays(store: CertificateStore) -> None:
    names = ["mismatch.example.com"]
    folder = store.folder_for(names)
    cert1, key1 = make_cert(names)
    put(store, folder, cert1, key1)
    cert2, _ = make_cert(names)
    _, other_key = make_cert(names)
    with pytest.raises(InvalidKey):
        put(store, folder, cert2, other_key)
    assert (folder / "cert.pem").read_text() == cert1
    assert (folder / "privkey.pem").read_text() == key1
    assert store.previous_versions(folder) == []


def test_prune_keeps_newest_versions(tmp_path: Path) -> None:
    store = CertificateStore(tmp_path / "zt", "zero-touch", keep_previous=2)
    names = ["prune.example.com"]
    folder = store.folder_for(names)
    serials = []
    for _ in range(5):
        cert, key = make_cert(names)
        serials.append(serial_hex(cert))
        put(store, folder, cert, key)
    versions = store.previous_versions(folder)
    assert [v.name.rsplit("-", 1)[1] for v in versions] == serials[2:4]
    assert (folder / "cert.pem").exists()
    assert serial_hex((folder / "cert.pem").read_text()) == serials[4]


def test_live_names_are_links_into_one_version(store: CertificateStore) -> None:
    names = ["links.example.com"]
    folder = store.folder_for(names)
    cert1, key1 = make_cert(names)
    put(store, folder, cert1, key1)
    cert2, key2 = make_cert(names)
    put(store, folder, cert2, key2)
    current = os.readlink(folder / CURRENT_LINK)
    assert [p.name for p in (folder / ARCHIVE_DIR).iterdir()] == [Path(current).name]
    for name in ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem", "metadata.json"):
        assert os.readlink(folder / name) == f"{CURRENT_LINK}/{name}"
    assert stat.S_IMODE((folder / ARCHIVE_DIR).stat().st_mode) == 0o700


def test_crash_after_staging_a_version_keeps_the_old_set(store: CertificateStore) -> None:
    names = ["staged.example.com"]
    folder = store.folder_for(names)
    cert1, key1 = make_cert(names)
    put(store, folder, cert1, key1)
    half = folder / ARCHIVE_DIR / "20990101T000000.000000Z-dead"
    half.mkdir()
    (half / "cert.pem").write_text("never switched to")
    (folder / ".current-0123456789ab").symlink_to(f"{ARCHIVE_DIR}/{half.name}")
    stored = store.read(folder)
    assert stored.cert.read_text() == cert1
    assert stored.privkey.read_text() == key1
    assert not half.exists()
    assert not (folder / ".current-0123456789ab").is_symlink()


def test_legacy_folder_is_read_and_migrated_by_its_next_write(store: CertificateStore) -> None:
    names = ["legacy.example.com"]
    folder = store.folder_for(names)
    cert1, key1 = make_cert(names)
    folder.mkdir(parents=True, mode=0o700)
    for name, text in {
        "cert.pem": cert1,
        "chain.pem": "C1",
        "fullchain.pem": cert1 + "C1",
        "privkey.pem": key1,
        "metadata.json": "{}",
    }.items():
        (folder / name).write_text(text)
    assert store.read(folder).privkey.read_text() == key1
    assert [p.name for p in store.iter_certificate_files()] == ["cert.pem"]

    cert2, key2 = make_cert(names)
    stored = put(store, folder, cert2, key2)
    assert os.readlink(folder / "privkey.pem") == f"{CURRENT_LINK}/privkey.pem"
    assert stored.cert.read_text() == cert2
    assert stored.privkey.read_text() == key2
    assert stat.S_IMODE(stored.privkey.stat().st_mode) == 0o600
    (prev,) = store.previous_versions(folder)
    assert (prev / "privkey.pem").read_text() == key1
    assert len(list((folder / ARCHIVE_DIR).iterdir())) == 1


def test_crash_before_commit_leaves_old_set(store: CertificateStore) -> None:
    names = ["early.example.com"]
    folder = store.folder_for(names)
    cert1, key1 = make_cert(names)
    put(store, folder, cert1, key1)
    leftover = folder / ".staging-deadbeef0000"
    leftover.mkdir()
    (leftover / "cert.pem").write_text("half written")
    assert store.recover() == 1
    assert not leftover.exists()
    assert (folder / "cert.pem").read_text() == cert1


def test_read_unknown_folder_is_not_found(store: CertificateStore) -> None:
    with pytest.raises(NotFound):
        store.read(store.folder_for(["missing.example.com"]))


def test_write_outside_the_store_is_refused(store: CertificateStore, tmp_path: Path) -> None:
    cert, key = make_cert(["x.example.com"])
    with pytest.raises(ConfigError):
        put(store, tmp_path / "elsewhere" / "x", cert, key)


def test_staging_keys(store: CertificateStore) -> None:
    path = store.write_staging_key("req-42", "-----BEGIN PRIVATE KEY-----\nabc\n")
    assert path == store.root / ".staging" / "req-42.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert store.read_staging_key("req-42") == b"-----BEGIN PRIVATE KEY-----\nabc\n"
    assert [p.name for p in path.parent.iterdir()] == ["req-42.key"]  # no temp files
    store.discard_staging_key("req-42")
    assert not path.exists()
    store.discard_staging_key("req-42")  # absent is fine
    with pytest.raises(NotFound):
        store.read_staging_key("req-42")


@pytest.mark.parametrize("bad", ["../etc/passwd", ".hidden", "a/b", "", "x" * 200])
def test_staging_key_ids_cannot_escape(store: CertificateStore, bad: str) -> None:
    with pytest.raises(ConfigError):
        store.staging_key_path(bad)


def test_prune_staging_keys(store: CertificateStore) -> None:
    old = store.write_staging_key("old", "k")
    store.write_staging_key("new", "k")
    past = dt.datetime.now().timestamp() - 7200
    os.utime(old, (past, past))
    assert store.prune_staging_keys(dt.timedelta(hours=1)) == ["old"]
    assert store.read_staging_key("new") == b"k"


def test_iter_certificate_files_skips_previous_keys_and_chains(store: CertificateStore) -> None:
    names = ["scan.example.com"]
    folder = store.folder_for(names)
    cert1, key1 = make_cert(names)
    put(store, folder, cert1, key1)
    cert2, key2 = make_cert(names)
    put(store, folder, cert2, key2)
    store.write_staging_key("inflight", key2)
    # files an administrator dropped into the store
    manual = store.root / "manual"
    manual.mkdir()
    other_cert, other_key = make_cert(["other.example.com"])
    (manual / "other.crt").write_text(other_cert)
    (manual / "other.key.pem").write_text(other_key)
    (manual / "bare.pem").write_text(other_key)  # a key under a neutral name
    (manual / "haproxy.pem").write_text(other_cert + other_key)  # cert + key bundle
    (manual / "bundle.p12").write_bytes(b"\x30\x82")
    (manual / "notes.txt").write_text("x")

    found = sorted(p.relative_to(store.root).as_posix() for p in store.iter_certificate_files())
    assert found == sorted(
        [
            f"{folder.name}/cert.pem",
            "manual/bundle.p12",
            "manual/haproxy.pem",
            "manual/other.crt",
        ]
    )


def test_iter_on_missing_root_is_empty(tmp_path: Path) -> None:
    assert list(CertificateStore(tmp_path / "none", "certificate").iter_certificate_files()) == []


def test_stores_from_settings(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, zero_touch_store=tmp_path / "zt")
    stores = stores_from_settings(settings)
    assert stores["certificate"].root == tmp_path / "stores" / "certificate"
    assert stores["certificate"].kind == "certificate"
    assert stores["zero-touch"].root == tmp_path / "zt"
    assert stores["zero-touch"].kind == "zero-touch"


def test_unknown_store_kind() -> None:
    with pytest.raises(ConfigError):
        CertificateStore(Path("/tmp/x"), "other")  # type: ignore[arg-type]


def test_stores_from_settings_recovers_each_store_once_per_process(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, zero_touch_store=tmp_path / "zt")
    store = CertificateStore(settings.store_path("certificate"), "certificate")
    names = ["once.example.com"]
    folder = store.folder_for(names)
    cert, key = make_cert(names)
    put(store, folder, cert, key)
    half_written = folder / ARCHIVE_DIR / ".tmp-0123456789ab"
    half_written.mkdir()
    stores_from_settings(settings)
    assert not half_written.exists()
    half_written.mkdir()
    stores_from_settings(settings)  # already recovered by this process: no second pass
    assert half_written.exists()


def test_crash_while_linking_a_first_write_is_completed_on_read(store: CertificateStore) -> None:
    names = ["firstlinks.example.com"]
    folder = store.folder_for(names)
    cert, key = make_cert(names)
    put(store, folder, cert, key)
    # cert.pem is linked last: a crash after the switch can leave it (and others) unlinked
    (folder / "cert.pem").unlink()
    (folder / "metadata.json").unlink()
    stored = store.read(folder)
    assert stored.cert.read_text() == cert
    assert os.readlink(folder / "metadata.json") == f"{CURRENT_LINK}/metadata.json"

"""The ``database`` store backend (issue 11, item 1): certificates, chains and sealed keys in
the state database, the version and the certificate row switched in one transaction, the
previous version kept; ``certs export`` and files targets read it; ``stores migrate`` moves a
store between backends, verified by fingerprint, idempotent, nothing lost."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import select

from acmeflow.config.settings import get_settings
from acmeflow.core.db_store import DatabaseStore
from acmeflow.core.errors import InvalidKey
from acmeflow.core.state import certificates, leases
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import Certificate, StagedKey, StoredVersion
from acmeflow.core.storage import stores_from_settings
from acmeflow.core.store_migration import MIGRATED_DIR
from acmeflow.core.stores import CertificateSet
from acmeflow.sandbox import pebble_root_pem
from tests.fixtures_acmeflow import Home
from tests.test_issue_e2e import issue_json
from tests.test_renew_e2e import renew_json

pytestmark = [pytest.mark.sandbox, pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]


def db_rows(model: Any) -> list[Any]:
    with session_scope(open_database(get_settings().resolved_database_url)) as s:
        return list(s.scalars(select(model)))


def cert_row(cert_id: int) -> Certificate:
    with session_scope(open_database(get_settings().resolved_database_url)) as s:
        return certificates.get_certificate(s, cert_id)


def serial_of(pem: bytes) -> str:
    return format(x509.load_pem_x509_certificate(pem).serial_number, "x")


def as_json(home: Home, *args: str, exit_code: int = 0) -> Any:
    result = home.cli(*args, "--json")
    assert result.exit_code == exit_code, result.output
    return json.loads(
        result.stdout[result.stdout.index(next(c for c in result.stdout if c in "[{")) :]
    )


def deploy_to_files_target(home: Home, cert_id: int, web: Path) -> list[str]:
    """Bind a files target writing into the new folder ``web`` to the certificate and deploy
    it; the status of each deployment."""
    web.mkdir()
    files = [f"fullchain_path={web}/fullchain.pem", f"key_path={web}/privkey.pem"]
    home.ok("targets", "add", "web", "--type", "files", "--set", files[0], "--set", files[1])
    home.ok("targets", "bind", "web", str(cert_id))
    return [r["status"] for r in as_json(home, "deploy", str(cert_id))["results"]]


@pytest.fixture
def db_home(home: Home, monkeypatch: pytest.MonkeyPatch) -> Home:
    """The sandbox home with new certificates going to the database backend."""
    monkeypatch.setenv("ACMEFLOW_STORE_BACKEND", "database")
    get_settings.cache_clear()
    return home


def test_issue_renew_export_and_deploy_from_the_database(db_home: Home, tmp_path: Path) -> None:
    issued = issue_json(db_home, "--name", "db.example.com", "--auto-renew")
    assert issued["folder"] == f"database:certificate/{Path(issued['folder']).name}"
    assert issued["files"] == {}
    assert list((db_home.path / "stores").rglob("cert.pem")) == []
    (live,) = db_rows(StoredVersion)
    assert live.live and live.serial == issued["serial"]
    assert "PRIVATE KEY" not in live.key_sealed  # sealed with the Fernet key
    assert db_rows(StagedKey) == []

    out = tmp_path / "export"
    db_home.ok("certs", "export", str(issued["id"]), str(out))
    assert serial_of((out / "cert.pem").read_bytes()) == issued["serial"]
    CertificateSet(
        cert=(out / "cert.pem").read_bytes(),
        chain=(out / "chain.pem").read_bytes(),
        fullchain=(out / "fullchain.pem").read_bytes(),
        key=(out / "privkey.pem").read_bytes(),
        metadata={},
    ).check()  # the exported key is the certificate's
    root = tmp_path / "pebble-root.pem"
    root.write_bytes(pebble_root_pem(db_home.sandbox))
    db_home.ok("certs", "verify", str(issued["id"]), "--root", str(root))

    summary = renew_json("--now", str(issued["id"]))
    assert summary["renewed"] == 1
    row = cert_row(issued["id"])
    assert row.folder == issued["folder"] and row.serial != issued["serial"]
    versions = db_rows(StoredVersion)
    assert sorted((v.live, v.serial) for v in versions) == [
        (False, issued["serial"]),
        (True, row.serial),
    ]

    web = tmp_path / "web"
    assert deploy_to_files_target(db_home, issued["id"], web) == ["deployed"]
    assert serial_of((web / "fullchain.pem").read_bytes()) == row.serial


def new_set(issued: Any, **changes: Any) -> dict[str, Any]:
    """The keyword arguments of a store write of a TestPKI certificate."""
    return {
        "cert_pem": issued.cert_pem,
        "chain_pem": issued.chain_pem,
        "fullchain_pem": issued.cert_pem + issued.chain_pem,
        "key_pem": issued.key_pem,
        "metadata": {},
        **changes,
    }


def test_a_failed_commit_or_a_wrong_key_keeps_the_live_version(db_home: Home, pki: Any) -> None:
    store = DatabaseStore("zero-touch", keep_previous=1)
    folder = store.folder_for(["rollback.example.com"])
    first, second = pki.issue(["rollback.example.com"]), pki.issue(["rollback.example.com"])
    with store.replacing(folder, **new_set(first)):  # a transaction of its own
        pass

    with (
        pytest.raises(RuntimeError),
        session_scope(open_database()) as s,
        store.replacing(folder, session=s, **new_set(second)),
    ):
        s.add(Certificate(store="zero-touch", folder=str(folder), names=["x"]))
        raise RuntimeError("the certificate row could not be written")
    assert store.read_set(folder).cert == first.cert_pem
    assert len(store.versions(folder)) == 1 and db_rows(Certificate) == []

    wrong_key = new_set(second, key_pem=first.key_pem)
    with pytest.raises(InvalidKey), store.replacing(folder, **wrong_key):
        pass
    assert store.read_set(folder).cert == first.cert_pem

    same_key = pki.issue(["rollback.example.com"], key=first.key)
    for _ in range(3):  # key_pem=None reuses the live key; one previous version is kept
        with store.replacing(folder, **new_set(same_key, key_pem=None)):
            pass
    versions = store.versions(folder)
    assert [v.cert for v in versions] == [same_key.cert_pem] * 2
    assert versions[-1].key == first.key_pem


def test_staged_keys_in_the_database_are_sealed_found_and_pruned(db_home: Home) -> None:
    store = stores_from_settings()["certificate"]
    store.write_staging_key("old-order", b"-----BEGIN PRIVATE KEY-----\nold\n")
    store.write_staging_key("young-order", b"-----BEGIN PRIVATE KEY-----\nyoung\n")
    store.directory.write_staging_key("dir-order", b"-----BEGIN PRIVATE KEY-----\ndir\n")
    assert store.staged_requests() == ["dir-order", "old-order", "young-order"]
    assert all("PRIVATE KEY" not in row.key_sealed for row in db_rows(StagedKey))
    assert store.read_staging_key("dir-order").endswith(b"dir\n")  # found in either backend
    with session_scope(open_database()) as s:
        row = s.get(StagedKey, ("certificate", "old-order"))
        assert row is not None
        row.created_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    assert store.prune_staging_keys(dt.timedelta(hours=1)) == ["old-order"]
    store.discard_staging_key("young-order")
    store.discard_staging_key("dir-order")
    assert store.staged_requests() == []


def test_migrate_to_the_database_and_back(home: Home, tmp_path: Path) -> None:
    one = issue_json(home, "--name", "one.example.com", "--auto-renew")
    two = issue_json(home, "--name", "two.example.com")
    assert renew_json("--now", str(one["id"]))["renewed"] == 1
    live_one = {n: (Path(one["folder"]) / n).read_bytes() for n in ("cert.pem", "privkey.pem")}

    (moved,) = as_json(home, "stores", "migrate", "--to", "database", "--store", "certificate")
    assert sorted(moved["moved"]) == sorted([one["id"], two["id"]])
    assert moved["versions"] == 3 and moved["already"] == 0
    assert cert_row(one["id"]).folder == f"database:certificate/{Path(one['folder']).name}"
    root = home.path / "stores" / "certificate"
    assert not Path(one["folder"]).exists()  # kept aside, out of the scan's way
    assert (root / MIGRATED_DIR / Path(one["folder"]).name / "cert.pem").read_bytes() == live_one[
        "cert.pem"
    ]
    out = tmp_path / "one"
    home.ok("certs", "export", str(one["id"]), str(out))
    assert {n: (out / n).read_bytes() for n in live_one} == live_one

    again = as_json(home, "stores", "migrate", "--to", "database")
    assert [(r["moved"], r["already"]) for r in again] == [([], 2), ([], 0)]
    listed = {r["store"]: r for r in as_json(home, "stores", "list")}
    assert (listed["certificate"]["database"], listed["certificate"]["directory"]) == (2, 0)
    assert listed["certificate"]["new_certificates"] == "directory"

    scanned = home.cli("scan", "--json")
    assert scanned.exit_code == 0, scanned.output
    rows = db_rows(Certificate)
    assert len(rows) == 2 and {r.status for r in rows} == {"active"}  # nothing gone, none new

    renewed = renew_json("--now", str(two["id"]))  # renews where it is: in the database
    assert renewed["renewed"] == 1
    two_row = cert_row(two["id"])
    assert two_row.folder.startswith("database:")

    back = as_json(home, "stores", "migrate", "--to", "directory", "--store", "certificate")
    assert sorted(back[0]["moved"]) == sorted([one["id"], two["id"]])
    assert db_rows(StoredVersion) == []
    folder = Path(cert_row(two["id"]).folder)
    assert folder.parent == root
    assert serial_of((folder / "cert.pem").read_bytes()) == two_row.serial
    assert len(list((folder / "previous").iterdir())) == 1  # its first version came along


def test_migrate_skips_a_certificate_being_renewed(home: Home) -> None:
    issued = issue_json(home, "--name", "busy.example.com")
    with session_scope(open_database()) as s:
        leases.acquire(
            s,
            leases.certificate_key(issued["id"]),
            what="Renewal",
            owner="other-host:1:1",
            flow_run_id="run-42",
        )
    report = as_json(home, "stores", "migrate", "--to", "database", exit_code=1)
    assert report[0]["skipped"] == {str(issued["id"]): "Renewal already in progress by run run-42"}
    assert cert_row(issued["id"]).folder == issued["folder"]
    assert (Path(issued["folder"]) / "cert.pem").is_file() and db_rows(StoredVersion) == []
    bad = home.cli("stores", "migrate", "--to", "s3")
    assert bad.exit_code == 1 and "Invalid configuration." in bad.output

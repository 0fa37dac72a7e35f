"""The pure matching step of recording a scan: known rows + what was read -> changes,
without a database (inventory.match_scan)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509

from acmeflow.core.certinfo import parse_certificate
from acmeflow.core.scan import FoundFile, ScannedCertificate, ScanProblem, StoreScan
from acmeflow.core.state.inventory import match_scan
from tests.fakes import TestPKI

NOW = dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC)


def scanned(pki: TestPKI, folder: str, names: list[str]) -> ScannedCertificate:
    cert = x509.load_pem_x509_certificate(pki.issue(names).cert_pem)
    found = FoundFile("certificate", f"/s/{folder}/cert.pem", f"/s/{folder}", 100, 1)
    return ScannedCertificate(found, parse_certificate(cert))


def row(id_: int, item: ScannedCertificate, **over: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "store": "certificate",
        "folder": item.file.folder,
        "path": item.file.path,
        "fingerprint_sha256": item.info.fingerprint_sha256,
        "status": "active",
        "ca_vendor_id": None,
        **over,
    }


def match(scan: StoreScan, rows: list[dict[str, Any]]):
    return match_scan([scan], {"certificate": rows}, now=NOW, cas=[], renew_days={})


def test_new_unchanged_moved_gone_and_unreadable(pki: TestPKI) -> None:
    new = scanned(pki, "new", ["new.example.com"])
    moved = scanned(pki, "moved-here", ["moved.example.com"])
    kept = scanned(pki, "kept", ["kept.example.com"])
    was_moved = row(2, moved, folder="/s/old-place", path="/s/old-place/cert.pem")
    rows = [row(1, kept), was_moved, {**row(3, kept), "folder": "/s/lost", "path": "/s/lost/c"}]
    rows.append({**row(4, kept), "folder": "/s/broken", "path": "/s/broken/cert.pem"})
    scan = StoreScan(
        store="certificate",
        root="/s",
        exists=True,
        certificates=[new, moved],
        unchanged=[kept.file],
        problems=[ScanProblem("certificate", "/s/broken/cert.pem", "unreadable")],
    )
    changes = match(scan, rows)
    assert [i["folder"] for i in changes.inserts] == ["/s/new"]
    assert changes.inserts[0]["source"] == "scan" and changes.inserts[0]["enrollment"] == "manual"
    (update,) = changes.updates
    assert update["id"] == 2 and update["folder"] == "/s/moved-here"  # same certificate, moved
    assert changes.touched == [1]
    assert changes.gone == [3]  # row 4's file is unreadable, not gone
    summary = changes.summaries["certificate"]
    assert (summary.new, summary.updated, summary.gone) == (1, 0, 1)


def test_a_missing_store_folder_marks_nothing_gone(pki: TestPKI) -> None:
    kept = scanned(pki, "kept", ["kept.example.com"])
    changes = match(StoreScan(store="certificate", root="/s", exists=False), [row(1, kept)])
    assert changes.gone == [] and changes.inserts == [] and changes.updates == []


def test_a_certificate_replaced_by_hand_resets_its_renewal_state(pki: TestPKI) -> None:
    old = scanned(pki, "site", ["site.example.com"])
    new = scanned(pki, "site", ["site.example.com"])
    scan = StoreScan(store="certificate", root="/s", exists=True, certificates=[new])
    (update,) = match(scan, [row(7, old)]).updates
    assert update["id"] == 7 and update["fingerprint_sha256"] == new.info.fingerprint_sha256
    assert update["failure_count"] == 0 and update["next_attempt_at"] is None

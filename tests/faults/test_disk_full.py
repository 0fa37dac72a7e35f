"""A full disk never splits files from records: issue and renew with 0, 8, 16, 64 and 96 KiB
free on the store's filesystem (a tiny tmpfs), and a database that refuses the commit after
the files switched.

Whatever the outcome, the certificate in service and the database agree (its serial, its
key), a failure prints the catalog message without a traceback, and the history says why.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import text

from acmeflow.config.settings import get_settings
from acmeflow.core import errors
from acmeflow.core.acme_client import IssuedCertificate
from acmeflow.core.keys import load_private_key
from acmeflow.core.orders import IssuedSet, save_issued
from acmeflow.core.state import history
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import Certificate, LogEntry
from tests.fakes import TestPKI
from tests.faults.debris import assert_swept_clean
from tests.fixtures_acmeflow import Home

pytestmark = [pytest.mark.sandbox, pytest.mark.prefect]

FREE_KIB = (0, 8, 16, 64, 96)
MESSAGE = errors.DiskWriteFailed.message


@contextlib.contextmanager
def tmpfs(path: Path, size_kib: int) -> Iterator[Path]:
    """A tmpfs of ``size_kib`` mounted at ``path`` (needs root, as CI runs)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave_kib: int) -> None:
    """Write a filler file so that about ``leave_kib`` KiB stay free on ``path``'s filesystem."""
    stat = os.statvfs(path)
    free = stat.f_bavail * stat.f_frsize
    size = max(0, free - leave_kib * 1024)
    with open(path / "filler", "wb") as out:
        chunk = b"\0" * 65536
        while size > 0:
            try:
                out.write(chunk[: min(size, len(chunk))])
                out.flush()
            except OSError:
                break
            size -= len(chunk)


def rows() -> list[Certificate]:
    with session_scope(open_database(get_settings().resolved_database_url)) as s:
        return list(s.query(Certificate))


def assert_files_and_rows_agree() -> None:
    """Every recorded certificate's live files are one set whose serial is the row's."""
    for row in rows():
        folder = Path(row.folder)
        cert = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
        key = load_private_key((folder / "privkey.pem").read_bytes())
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()
        assert format(cert.serial_number, "x").lstrip("0") == row.serial.lower().lstrip("0")


def letters(text: str) -> str:
    """``text`` without what a table wraps it with (spaces, borders)."""
    return re.sub(r"[^A-Za-z.]", "", text)


def assert_failed_cleanly(result_output: str, exit_code: int) -> None:
    assert exit_code != 0
    assert letters(MESSAGE) in letters(result_output), result_output
    assert "Traceback" not in result_output


def last_history(kind: str) -> LogEntry:
    with session_scope(open_database(get_settings().resolved_database_url)) as s:
        return s.query(LogEntry).filter(LogEntry.kind == kind).order_by(LogEntry.id.desc()).first()


@pytest.fixture
def small_store(home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The certificate store on a 1 MiB tmpfs (the database stays on the home's disk)."""
    with tmpfs(tmp_path / "small", 1024) as mounted:
        monkeypatch.setenv("ACMEFLOW_CERTIFICATE_STORE", str(mounted / "store"))
        get_settings.cache_clear()
        yield mounted
        # space again: a sweep stores what the CA issued and nothing else remains
        (mounted / "filler").unlink(missing_ok=True)
        assert_swept_clean(str(home.path))
    get_settings.cache_clear()


@pytest.mark.parametrize("free_kib", FREE_KIB)
def test_issue_on_a_full_store_leaves_no_folder_without_a_row(
    home: Home, small_store: Path, free_kib: int
) -> None:
    fill(small_store, free_kib)
    result = home.cli("issue", "--ca", "sandbox", "--name", f"full{free_kib}.example.com")
    if result.exit_code != 0:
        assert_failed_cleanly(result.output, result.exit_code)
        entry = last_history("issue")
        assert entry.status == "failed" and entry.message == MESSAGE
        folders = [p for p in (small_store / "store").glob("full*") if p.is_dir()]
        assert folders == [], "a folder without a row"
    assert_files_and_rows_agree()


@pytest.mark.parametrize("free_kib", FREE_KIB)
def test_renew_on_a_full_store_keeps_the_old_certificate_in_service(
    home: Home, small_store: Path, free_kib: int
) -> None:
    issued = json.loads(
        home.ok("issue", "--ca", "sandbox", "--name", f"ren{free_kib}.example.com", "--json").stdout
    )
    (before,) = rows()
    fill(small_store, free_kib)
    result = home.cli("renew", "--now", str(issued["id"]))
    (after,) = rows()
    if result.exit_code != 0:
        assert_failed_cleanly(result.output, result.exit_code)
        assert after.serial == before.serial
        entry = last_history("renew")
        assert entry.status == "failed" and entry.message == MESSAGE
    assert_files_and_rows_agree()


@pytest.mark.leaves_debris("its hand-opened history entry stays on a connection left query-only")
def test_a_database_that_refuses_the_commit_switches_the_files_back(
    home: Home, pki: TestPKI
) -> None:
    """The renewed files are in place when the database refuses the write (here SQLite's
    ``query_only``, as a full disk refuses it): the files switch back to the set the database
    still records, and the catalog message says why."""
    issued = json.loads(
        home.ok("issue", "--ca", "sandbox", "--name", "dbfull.example.com", "--json").stdout
    )
    (before,) = rows()
    new = pki.issue(["dbfull.example.com"])
    engine = open_database(get_settings().resolved_database_url)
    with pytest.raises(errors.DiskWriteFailed), session_scope(engine) as s:
        entry = history.log_start(
            s, kind="renew", names=["dbfull.example.com"], ca_name="sandbox", store="certificate"
        )
        s.commit()
        s.execute(text("PRAGMA query_only = 1"))
        save_issued(
            s,
            IssuedSet(
                ca="sandbox",
                store="certificate",
                names=["dbfull.example.com"],
                issued=IssuedCertificate(
                    cert_pem=new.cert_pem.decode(),
                    chain_pem=new.chain_pem.decode(),
                    fullchain_pem=(new.cert_pem + new.chain_pem).decode(),
                ),
                key_pem=new.key_pem,
                log_id=entry.id,
                enrollment="manual",
                csr_fields={},
                certificate_id=issued["id"],
            ),
        )
    (after,) = rows()
    assert after.serial == before.serial
    assert_files_and_rows_agree()
    versions = list((Path(after.folder) / "archive").iterdir())
    assert len(versions) == 1, versions  # the refused version is gone

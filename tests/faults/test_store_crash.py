"""Finding 1: a store write killed at any rename, fsync or symlink leaves one consistent set.

The writer runs under ``strace``, which kills it (SIGKILL) at the N-th call of a syscall
kind, for N = 1, 2, ... until a run completes. After each kill the store is recovered and
the live files must be one set, the old or the new one, with nothing left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmeflow.core.stores import ARCHIVE_DIR, CURRENT_LINK, PREVIOUS_DIR, CertificateStore
from tests.fakes import Issued, TestPKI

REPO = Path(__file__).resolve().parents[2]
NAMES = ["crash.example.com"]
SYSCALLS = {
    "rename": "rename,renameat,renameat2",
    "fsync": "fsync,fdatasync",
    "symlink": "symlink,symlinkat",
}
MAX_CALLS = 100  # far more than one write makes; reaching it means the loop never ended


def _pem_files(folder: Path, issued: Issued) -> list[str]:
    folder.mkdir()
    paths = []
    for name, data in (("cert", issued.cert_pem), ("chain", issued.chain_pem)):
        (folder / name).write_bytes(data)
        paths.append(str(folder / name))
    (folder / "key").write_bytes(issued.key_pem)
    return [*paths, str(folder / "key")]


def _write_killed_at(syscalls: str, n: int, store: CertificateStore, pems: list[str]) -> int:
    """Run the writer, killed at the ``n``-th call of ``syscalls``; its return code."""
    folder = store.folder_for(NAMES)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    inject = f"inject={syscalls}:signal=SIGKILL:when={n}"
    cmd = ["strace", "-f", "-o", "/dev/null", "-e", f"trace={syscalls}", "-e", inject]
    writer = [sys.executable, "-m", "tests.faults.store_writer", str(store.root), str(folder)]
    return subprocess.run([*cmd, *writer, *pems], cwd=REPO, env=env, check=False).returncode


def _assert_one_consistent_set(store: CertificateStore, pki: TestPKI, serials: set[str]) -> str:
    """The live set's serial, after checking it is whole and nothing is left behind."""
    folder = store.folder_for(NAMES)
    live = store.read(folder)
    cert_pem, chain_pem = live.cert.read_bytes(), live.chain.read_bytes()
    assert live.fullchain.read_bytes() == cert_pem + chain_pem
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(live.privkey.read_bytes(), password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    (issuer,) = x509.load_pem_x509_certificates(chain_pem)
    cert.verify_directly_issued_by(issuer)  # the chain verifies up to the test root
    issuer.verify_directly_issued_by(pki.root)
    serial = format(cert.serial_number, "x")
    assert serial in serials
    versioned = (folder / CURRENT_LINK).is_symlink()
    debris = [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    assert debris == []
    # only the live version is archived (none while a legacy folder is not yet versioned)
    live_versions = [Path(os.readlink(live.folder / CURRENT_LINK)).name] if versioned else []
    assert [p.name for p in (folder / ARCHIVE_DIR).glob("*")] == live_versions
    assert not list((folder / PREVIOUS_DIR).glob(".*"))
    return serial


def _store_with(root: Path, issued: Issued, *, legacy: bool) -> CertificateStore:
    """A store holding ``issued``: written by acmeflow, or as regular files (the layout
    before versioned folders, which the next write migrates)."""
    store = CertificateStore(root, "certificate")
    folder = store.folder_for(NAMES)
    if legacy:
        folder.mkdir(parents=True, mode=0o700)
        for name, data in {
            "cert.pem": issued.cert_pem,
            "chain.pem": issued.chain_pem,
            "fullchain.pem": issued.cert_pem + issued.chain_pem,
            "privkey.pem": issued.key_pem,
            "metadata.json": b"{}",
        }.items():
            (folder / name).write_bytes(data)
        return store
    store.write(
        folder,
        cert_pem=issued.cert_pem,
        chain_pem=issued.chain_pem,
        fullchain_pem=issued.cert_pem + issued.chain_pem,
        key_pem=issued.key_pem,
        metadata={},
    )
    return store


@pytest.mark.parametrize("legacy", [False, True], ids=["versioned", "legacy"])
@pytest.mark.parametrize("kind", sorted(SYSCALLS))
def test_store_write_killed_at_every_step_leaves_one_consistent_set(
    kind: str, legacy: bool, tmp_path: Path
) -> None:
    pki = TestPKI()
    old, new = pki.issue(NAMES), pki.issue(NAMES)
    pems = _pem_files(tmp_path / "new", new)
    outcomes = []
    for n in range(1, MAX_CALLS + 1):
        store = _store_with(tmp_path / f"store-{n}", old, legacy=legacy)
        returncode = _write_killed_at(SYSCALLS[kind], n, store, pems)
        assert returncode in (0, -signal.SIGKILL, 128 + signal.SIGKILL)
        store.recover()
        serial = _assert_one_consistent_set(store, pki, {old.serial, new.serial})
        outcomes.append(serial)
        if returncode == 0:
            assert serial == new.serial
            break
    else:
        pytest.fail(f"the writer was still killed at {kind} call {MAX_CALLS}")
    assert len(outcomes) > 1, f"a store write makes no {kind} call"
    assert outcomes[0] == old.serial

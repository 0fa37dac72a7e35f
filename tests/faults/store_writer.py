"""Write one certificate set into a store folder (run as a subprocess by the kill test).

Usage: ``python -m tests.faults.store_writer ROOT FOLDER CERT CHAIN KEY`` (PEM file paths).
"""

from __future__ import annotations

import sys
from pathlib import Path

from acmeflow.core.stores import CertificateStore


def main(root: str, folder: str, cert: str, chain: str, key: str) -> None:
    cert_pem, chain_pem = Path(cert).read_bytes(), Path(chain).read_bytes()
    CertificateStore(Path(root), "certificate").write(
        Path(folder),
        cert_pem=cert_pem,
        chain_pem=chain_pem,
        fullchain_pem=cert_pem + chain_pem,
        key_pem=Path(key).read_bytes(),
        metadata={"writer": "kill test"},
    )


if __name__ == "__main__":
    main(*sys.argv[1:])

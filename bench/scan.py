"""Scan benchmark: parsing floors for a folder of many certificates.

    PYTHONPATH=. .venv/bin/python -m bench.scan --count 3000 [--folder DIR]

Generates ``--count`` certificates (``bench.make_certs``) unless ``--folder`` already holds
them, then reports the bare ``cryptography`` parse time (the floor every scan compares to)
and the time ``core.certinfo`` takes to describe the same files. A full scan (the ``scan``
flow) is measured against ``bare`` by the scan benchmark built on top of this module.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.make_certs import (
    P12_PASSWORD,
    bare_parse_seconds,
    iter_certificate_files,
    make_test_certificates,
)
from core.certinfo import read_certificate_file


def certinfo_seconds(folder: Path) -> tuple[float, int]:
    """Seconds for ``core.certinfo`` to read and describe every file, and certificates seen."""
    start = time.perf_counter()
    seen = 0
    for path in iter_certificate_files(folder):
        password = P12_PASSWORD if path.suffix.lower() in (".p12", ".pfx") else None
        seen += len(read_certificate_file(path, password))
    return time.perf_counter() - start, seen


def measure(folder: Path) -> dict[str, float | int]:
    """Both parse floors for ``folder`` (files counted once, best of two bare runs)."""
    files = list(iter_certificate_files(folder))
    bare = min(bare_parse_seconds(folder), bare_parse_seconds(folder))
    described, certificates = certinfo_seconds(folder)
    return {
        "files": len(files),
        "certificates": certificates,
        "bare_parse_s": round(bare, 4),
        "certinfo_s": round(described, 4),
        "certinfo_overhead": round(described / bare, 2) if bare else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: prints one JSON line of measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--folder", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="acmeflow-bench-") as tmp:
        folder: Path = args.folder or Path(tmp)
        made = 0.0
        if not any(iter_certificate_files(folder)):
            start = time.perf_counter()
            make_test_certificates(folder, args.count)
            made = time.perf_counter() - start
        result = measure(folder)
        result["make_s"] = round(made, 3)
        print(json.dumps(result))


if __name__ == "__main__":
    main()

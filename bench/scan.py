"""Scan benchmark: many certificates across both stores, scanned and classified.

    PYTHONPATH=. .venv/bin/python -m bench.scan [--count 10000] [--flow]

Writes ``--count`` certificates (``bench.make_certs``: PEM folders, loose DER and PKCS#12
files, issuers "R10"/"E5" of Let's Encrypt and "Other CA"), half in the certificate store
and half in the zero-touch store of a fresh acmeflow home with a Let's Encrypt CA vendor
configured. It then times:

- ``bare``: reading and parsing every file with ``cryptography`` alone (best of two): the
  floor no scan can beat;
- ``scan``: what each ``scan_store`` task of the ``scan`` flow does, for both stores on an
  empty inventory: walk, parse with ``core.certinfo``, classify by CA, record in the
  database (bulk, one transaction per store), then the report (counts, duplicates, soonest
  expiries);
- ``rescan``: the same again with nothing changed (unchanged files are not read);
- with ``--flow``: the ``scan`` flow itself on a fresh database, Prefect included, after a
  first flow run on an empty home has started Prefect's temporary server (unless
  PREFECT_API_URL points at a running one).

Targets: ``scan`` at most 10 s and at most 3x ``bare`` for 10,000 certificates.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench.make_certs import P12_PASSWORD, bare_parse_seconds, make_test_certificates

T = TypeVar("T")
TARGET_SECONDS = 10.0
TARGET_RATIO = 3.0
_PASSWORD_ENV = "ACMEFLOW_BENCH_P12_PASSWORD"


def _use_home(home: Path) -> None:
    from acmeflow.config.settings import get_settings

    os.environ["ACMEFLOW_HOME"] = str(home)
    for var in ("ACMEFLOW_DATABASE_URL", "ACMEFLOW_CERTIFICATE_STORE", "ACMEFLOW_ZERO_TOUCH_STORE"):
        os.environ.pop(var, None)
    get_settings.cache_clear()


def _configure_ca() -> None:
    from acmeflow.core.state import cas
    from acmeflow.core.state.db import open_database, session_scope

    with session_scope(open_database()) as s:
        cas.add_ca(s, name="le", vendor="letsencrypt", email="ops@example.com")


def scan_like_the_flow() -> dict[str, Any]:
    """Both stores through the same steps as the flow's tasks (no Prefect); the report."""
    from acmeflow.core.scan import scan_store
    from acmeflow.core.state import inventory
    from acmeflow.core.state.db import open_database, session_scope
    from acmeflow.core.storage import stores_from_settings

    engine = open_database()
    summaries = {}
    for kind, store in stores_from_settings().items():
        with session_scope(engine) as s:
            known = inventory.known_files(s, kind)
            sealed = inventory.scan_passwords(s) or [f"env:{_PASSWORD_ENV}"]
        passwords = inventory.unseal_passwords(sealed)
        scanned = scan_store(store.directory, passwords=passwords, known=known)
        with session_scope(engine) as s:
            recorded = inventory.record_scan(s, [scanned], with_report=False)
            summaries[kind] = recorded.stores[kind]
    with session_scope(engine) as s:
        report = inventory.inventory_report(s)
    report.stores = summaries
    return report.to_dict()


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of ``fn()`` (CPU time is steadier on a shared machine)."""
    return _timed_result(fn)[0]


def _timed_result(fn: Callable[[], T]) -> tuple[tuple[float, float], T]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return (time.perf_counter() - wall, time.process_time() - cpu), result


def run(count: int, *, flow: bool = False) -> dict[str, Any]:
    """Generate, then measure; returns the figures."""
    os.environ[_PASSWORD_ENV] = P12_PASSWORD.decode()
    with tempfile.TemporaryDirectory(prefix="acmeflow-bench-scan-") as tmp:
        home = Path(tmp) / "home"
        _use_home(home)
        from acmeflow.core.storage import stores_from_settings

        roots = [store.root for store in stores_from_settings().values()]
        start = time.perf_counter()
        make_test_certificates(roots[0], count - count // 2)
        make_test_certificates(roots[1], count // 2)
        made = time.perf_counter() - start
        _configure_ca()

        bare, bare_cpu = min(
            _timed(lambda: [bare_parse_seconds(r) for r in roots]) for _ in range(2)
        )
        (scanned, scan_cpu), report = _timed_result(scan_like_the_flow)
        (rescanned, _), again = _timed_result(scan_like_the_flow)
        assert again["summary"] == report["summary"], "a rescan changed the counts"

        result: dict[str, Any] = {
            "certificates": report["total"],
            "files": sum(s["files"] for s in report["stores"].values()),
            "counts": report["summary"],
            "make_s": round(made, 2),
            "bare_parse_s": round(bare, 3),
            "scan_s": round(scanned, 3),
            "scan_vs_bare": round(scanned / bare, 2) if bare else None,
            "bare_cpu_s": round(bare_cpu, 3),
            "scan_cpu_s": round(scan_cpu, 3),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "rescan_unchanged_s": round(rescanned, 3),
            "target_ok": scanned <= TARGET_SECONDS and scanned <= TARGET_RATIO * bare,
        }
        if flow:
            from acmeflow.flows.scan import scan as scan_flow

            _use_home(Path(tmp) / "home-warm")  # start Prefect's server on an empty home first
            start = time.perf_counter()
            scan_flow()
            result["flow_warmup_s"] = round(time.perf_counter() - start, 3)
            _use_home(Path(tmp) / "home-flow")
            flow_roots = [store.root for store in stores_from_settings().values()]
            for src, dst in zip(roots, flow_roots, strict=True):
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.rename(src, dst)
            _configure_ca()
            start = time.perf_counter()
            flow_report = scan_flow(p12_passwords=[f"env:{_PASSWORD_ENV}"])
            result["flow_s"] = round(time.perf_counter() - start, 3)
            result["flow_counts"] = flow_report["summary"]
        return result


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: prints the figures, then one JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--flow", action="store_true", help="also time the Prefect flow")
    args = parser.parse_args(argv)
    result = run(args.count, flow=args.flow)
    print(f"certificates:            {result['certificates']} in {result['files']} files")
    print(f"classified:              {result['counts']}")
    print(f"bare parse (cryptography): {result['bare_parse_s']:.2f} s")
    print(
        f"scan (walk, parse, classify, record): {result['scan_s']:.2f} s "
        f"= {result['scan_vs_bare']}x bare (target <= {TARGET_SECONDS:.0f} s and "
        f"<= {TARGET_RATIO:.0f}x: {'met' if result['target_ok'] else 'MISSED'})"
    )
    print(
        f"CPU time: bare {result['bare_cpu_s']:.2f} s, scan {result['scan_cpu_s']:.2f} s "
        f"(1-minute load average {result['load_avg_1m']} on {os.cpu_count()} cores)"
    )
    print(f"rescan, nothing changed: {result['rescan_unchanged_s']:.2f} s")
    if "flow_s" in result:
        print(
            f"scan flow (Prefect):     {result['flow_s']:.2f} s  ({result['flow_counts']}; "
            f"first flow run of the process, starting Prefect: {result['flow_warmup_s']:.2f} s)"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Scale-out: renewals per minute of one ``renew`` run spread over 1, 2 and 4 process workers.

``python -m bench.scale_out [--count 128] [--batch 8] [--va-sleep 20] [--workers 1 2 4]
[--json]``

One sandbox (``.bench/sandbox-scale-out``: pebble with ``PEBBLE_VA_SLEEPTIME``, so every
validation waits a random 0 to ``--va-sleep`` seconds as a real CA takes its time, and the
CA, not the CPU, is the bottleneck; no authorization reuse) and one acmeflow home (SQLite)
with its local Prefect server (``acmeflow server start``). Setup, untimed: ``count``
certificates issued and enrolled, ``schedules sync --work-pool bench-scale-out``. Then for
each worker count W: the certificates are made due (their recorded expiry moved into the
renewal window), W ``prefect worker start --limit 1`` processes are started and polling,
and ``renew/ad-hoc`` is triggered for the CA. Timed: from the trigger to the run's final
state. The run deals its batches (``--batch``) into one group per online worker, renews the
first group and hands the others out as ``renew/share`` runs (``ACMEFLOW_SHARE_PICKUP_SECONDS``
15 s: a share no worker starts by then is renewed by the run itself).

Printed: seconds and renewals per minute per W, and the ratio to W=1. Targets: at least 1.8x
with 2 workers and 3x with 4 (exit 1 when one is missed). A W whose run did not renew every
certificate exactly once is a failure: no ratio, and the bench exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlalchemy import func, select

from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import LogEntry
from acmeflow.sandbox import sandbox_up
from bench.bulk_renew import enroll_certificates
from bench.pool import create_pool, make_due, start_workers, stop_workers, trigger
from bench.sandbox_setup import BENCH_DIR, PEBBLE_BENCH_ENV, apply_env, configure_home, run_cli

POOL = "bench-scale-out"
SANDBOX_HOME = BENCH_DIR / "sandbox-scale-out"
HOME = BENCH_DIR / "home-scale-out"
TARGETS = {2: 1.8, 4: 3.0}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _wait_final(run_id: Any, timeout: float) -> str:
    """The final state type of flow run ``run_id``."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final():
                return str(run.state.type.value)
            time.sleep(0.25)
    return "TIMED OUT"


def _renewed_since(started: float) -> dict[int, int]:
    """Successful renewals per certificate recorded after ``started`` (epoch seconds)."""
    import datetime as dt

    since = dt.datetime.fromtimestamp(started, dt.UTC)
    with session_scope(open_database()) as s:
        rows = s.execute(
            select(LogEntry.certificate_id, func.count())
            .where(LogEntry.kind == "renew", LogEntry.status == "success")
            .where(LogEntry.started_at >= since)
            .group_by(LogEntry.certificate_id)
        ).all()
    return {cert_id: n for cert_id, n in rows}


def measure(ids: list[int], workers: int, env: dict[str, str], batch: int) -> dict[str, Any]:
    """One run over ``ids`` with ``workers`` workers."""
    make_due(ids)
    worker_env = {**env, "ACMEFLOW_RENEW_BATCH_SIZE": str(batch)}
    started_workers = start_workers(POOL, workers, worker_env, HOME / "workers" / str(workers))
    try:
        began = time.time()
        started = time.perf_counter()
        run_id = trigger("renew/ad-hoc", ca="sandbox")
        state = _wait_final(run_id, timeout=900)
        seconds = time.perf_counter() - started
    finally:
        stop_workers(started_workers)
    renewed = _renewed_since(began)
    ok = state == "COMPLETED" and all(renewed.get(i) == 1 for i in ids)
    return {
        "workers": workers,
        "state": state,
        "seconds": round(seconds, 2),
        "renewed_once": sum(1 for i in ids if renewed.get(i) == 1),
        "per_minute": round(len(ids) / seconds * 60, 1) if ok else None,
        "ok": ok,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--va-sleep", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    _say(f"sandbox: pebble with PEBBLE_VA_SLEEPTIME={args.va_sleep} ...")
    SANDBOX_HOME.mkdir(parents=True, exist_ok=True)
    pebble_env = {**PEBBLE_BENCH_ENV, "PEBBLE_VA_SLEEPTIME": str(args.va_sleep)}
    info = sandbox_up(SANDBOX_HOME, authz_reuse=0, extra_pebble_env=pebble_env)
    home = configure_home(info, HOME)
    # setup only: every enrolment validation at once (the CA's delay is paid once)
    apply_env({**home.env, "ACMEFLOW_PER_CA_CONCURRENCY": "64", "ACMEFLOW_MAX_WORKERS": "64"})
    server = json.loads(run_cli(["server", "start", "--json"], home.env))
    env = {**os.environ, **home.env, "PREFECT_API_URL": server["url"]}
    for key in ("ACMEFLOW_PER_CA_CONCURRENCY", "ACMEFLOW_MAX_WORKERS"):
        env.pop(key, None)
    results: list[dict[str, Any]] = []
    try:
        _say(f"setup: issuing and enrolling {args.count} certificates ...")
        ids = enroll_certificates(args.count, 0, f"scale-{int(time.time())}")
        with temporary_settings(updates={PREFECT_API_URL: server["url"]}):
            create_pool(POOL)
            run_cli(["schedules", "sync", "--work-pool", POOL], {**home.env, **env})
            for workers in args.workers:
                _say(f"{workers} worker(s): renewing {len(ids)} certificates ...")
                result = measure(ids, workers, env, args.batch)
                results.append(result)
                _say(f"  {result}")
    finally:
        run_cli(["server", "stop"], home.env)
    return report(results, args)


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> int:
    base = next((r for r in results if r["workers"] == 1), None)
    failed = [r for r in results if not r["ok"]]
    for r in results:
        r["ratio"] = (
            round(r["per_minute"] / base["per_minute"], 2)
            if base and base["ok"] and r["ok"] and r["per_minute"]
            else None
        )
        target = TARGETS.get(r["workers"])
        if target is None:
            r["target"] = ""
        elif r["ratio"] is None:
            r["target"] = f">= {target}x: no ratio (a run failed)"
        else:
            r["target"] = f">= {target}x: {'met' if r['ratio'] >= target else 'NOT met'}"
    if args.json:
        print(json.dumps({"settings": vars(args), "results": results}, indent=2))
    else:
        print(
            f"{args.count} certificates, batches of {args.batch}, pebble validation delay "
            f"0-{args.va_sleep} s, process workers on this machine"
        )
        for r in results:
            rate = f"{r['per_minute']:.1f}/min" if r["per_minute"] else "failed"
            ratio = f"x{r['ratio']:.2f}" if r["ratio"] is not None else "no ratio"
            print(
                f"{r['workers']} worker(s): {r['seconds']:.1f} s, {rate}, {ratio} "
                f"({r['state']}, {r['renewed_once']} renewed once) {r['target']}"
            )
    missed = [r for r in results if "NOT met" in r["target"]]
    return 1 if failed or missed else 0


if __name__ == "__main__":
    sys.exit(main())

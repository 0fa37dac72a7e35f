"""Bulk renewal: 200 enrolled two-name certificates due at once, renewed by one ``renew`` run.

``python -m bench.bulk_renew [--count 200] [--workers 32] [--certbot-count 20] [--skip-certbot]
[--json] [--keep-sandbox]``

On one sandbox (pebble with ``PEBBLE_VA_NOSLEEP=1``, no authorization reuse, no nonce
rejection, + BIND; ``.bench/sandbox``) three ways of doing the same work, each certificate
``X.example.com`` + ``*.X.example.com`` through DNS-01 at the sandbox BIND (RFC 2136):

1. **acmeflow**: ``count`` certificates are issued and enrolled for automatic renewal (setup,
   not timed), then one process runs the Prefect flow ``renew`` with its clock inside the
   renewal window of all of them (a ``prefect_test_harness`` server is up beforehand, as a
   server is in production). Timed: the flow call. Peak memory: that process's max RSS
   (imports, Prefect client, every renewal; the API server process is not included).
   Concurrency: ``ACMEFLOW_MAX_WORKERS`` = per-CA = per-DNS-provider limit = ``--workers``.
2. **floor**: a bare client on the ``acme`` package, ``--workers`` threads, one account, for
   each certificate: key, CSR, order, TXT values added with dnspython (TSIG), challenges
   answered, authorizations and order polled every 50 ms, certificate downloaded, TXT values
   removed. No database, no files, no propagation check: what no tool can beat.
3. **certbot** (5.8 + certbot-dns-rfc2136, ``.bench/certbot-venv``, see
   :mod:`bench.certbot_env`): ``--certbot-count`` certificates issued with ``certbot certonly``
   (setup, not timed), then ``certbot renew --force-renewal`` renews them all (timed, one
   command, ``--dns-rfc2136-propagation-seconds 1``), extrapolated linearly to ``count``.

Targets: acmeflow renews ``count`` = 200 in at most 60 s, at most 1.5 x the floor in wall time
and in CPU milliseconds per renewal, peak memory under 600 MB. A floor with any failed renewal
is no reference: "floor failed: no ratio", and the bench exits non-zero.

Besides wall time, acmeflow and the floor report their process's CPU time and the machine's
(every process, from ``/proc/stat``): all of it shares the same cores with pebble, BIND and
the Prefect server.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from acmeflow.sandbox import SandboxInfo
from bench.certbot_env import CertbotEnv, CertbotUnavailable, CertbotWorkspace, ensure_certbot
from bench.sandbox_setup import (
    BENCH_DIR,
    EMAIL,
    ROOT,
    SANDBOX_HOME,
    apply_env,
    configure_home,
    rfc2136_config,
    start_sandbox,
    stop_sandbox,
    unique_label,
)

TARGET_SECONDS = 60.0
TARGET_FLOOR_RATIO = 1.5
TARGET_MEMORY_MB = 600.0
CERTBOT_DIR = BENCH_DIR / "certbot-renew"
QUIET_PREFECT = {
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "50",
}


def machine_busy_seconds() -> float:
    """CPU seconds all processes of this machine have used so far (``/proc/stat``: every
    state but idle and iowait), to show how busy both cores were during a measurement."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def two_names(prefix: str, index: int) -> list[str]:
    """``X.example.com`` and ``*.X.example.com``."""
    base = f"{prefix}-{index}.example.com"
    return [base, f"*.{base}"]


# --- 1. acmeflow ---------------------------------------------------------------------------------


def enroll_certificates(count: int, workers: int, prefix: str) -> list[int]:
    """Issue ``count`` certificates enrolled for automatic renewal with the issuance steps
    run without Prefect (:func:`core.pipeline.run_steps`; setup, untimed)."""
    import datetime as dt

    from acmeflow.config.settings import get_settings
    from acmeflow.core import pipeline
    from acmeflow.core.state import history
    from acmeflow.core.state.db import open_database, session_scope
    from acmeflow.tasks.pipeline import pipeline_context, start_batch

    del workers  # the batch works within the settings' per-CA limit
    engine = open_database(get_settings().resolved_database_url)
    ctx = pipeline_context()
    ids: list[int] = []
    for first in range(0, count, 100):
        items = []
        with session_scope(engine) as s:
            for index in range(first, min(count, first + 100)):
                names = two_names(prefix, index)
                entry = history.log_start(
                    s, kind="issue", names=names, ca_name="sandbox", store="certificate"
                )
                items.append(
                    pipeline.OrderItem(
                        ref=f"bench-{prefix}-{index}",
                        ca="sandbox",
                        names=names,
                        store="certificate",
                        log_id=entry.id,
                        key_type="ec256",
                        enrollment="auto",
                    )
                )
        batch = pipeline.run_steps(start_batch(items, dt.datetime.now(dt.UTC)), ctx)
        failed = batch.failed()
        if failed:
            raise RuntimeError(f"setup: {len(failed)} issuance(s) failed: {failed[0].error}")
        ids += [item.saved.certificate_id for item in batch.items if item.saved is not None]
    return ids


def child_renew(at: str) -> None:
    """In the measured process: run the ``renew`` flow once, print timings and memory as JSON."""
    started = time.perf_counter()
    from acmeflow.flows.renew import renew_as_of
    from acmeflow.tasks.common import run_summary

    imported = time.perf_counter() - started
    started = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    machine_before = machine_busy_seconds()
    profile_to = os.environ.get("BENCH_PROFILE")
    profiler = cProfile.Profile() if profile_to else None
    if profiler is not None:
        profiler.enable()
    summary = run_summary(renew_as_of(now=at, return_state=True))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile_to))
    elapsed = time.perf_counter() - started
    machine = machine_busy_seconds() - machine_before
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_kb = usage.ru_maxrss
    print(
        json.dumps(
            {
                "flow_seconds": round(elapsed, 3),
                "flow_cpu_seconds": round(
                    usage.ru_utime - cpu_before.ru_utime + usage.ru_stime - cpu_before.ru_stime, 3
                ),
                "machine_cpu_seconds": round(machine, 3),
                "import_seconds": round(imported, 3),
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "renewed": summary["renewed"],
                "failed": summary["failed"],
                "skipped": summary["skipped"],
                "errors": sorted(
                    {r["message"] for r in summary["results"] if r["status"] != "renewed"}
                ),
            }
        )
    )


def bench_acmeflow(info: SandboxInfo, count: int, workers: int) -> dict[str, Any]:
    """Enroll ``count`` certificates, then time one ``renew`` run in its own process."""
    home = configure_home(info)
    env = {
        **home.env,
        **QUIET_PREFECT,
        "ACMEFLOW_MAX_WORKERS": str(workers),
        "ACMEFLOW_PER_CA_CONCURRENCY": str(workers),
        "ACMEFLOW_PER_DNS_PROVIDER_CONCURRENCY": str(workers),
    }
    apply_env(env)
    prefix = unique_label("renew")
    _say(f"acmeflow: issuing and enrolling {count} certificates (setup, not timed) ...")
    started = time.perf_counter()
    ids = enroll_certificates(count, workers, prefix)
    _say(f"  enrolled {len(ids)} in {time.perf_counter() - started:.1f} s")

    from acmeflow.config.settings import get_settings
    from acmeflow.core.state import certificates
    from acmeflow.core.state.db import open_database, session_scope

    engine = open_database(get_settings().resolved_database_url)
    with session_scope(engine) as s:
        rows = [certificates.get_certificate(s, i) for i in ids]
        before = {r.id: r.serial for r in rows}
        latest = max(r.not_after for r in rows if r.not_after is not None)
    at = (latest - timedelta(days=29)).isoformat()  # inside every certificate's 30-day window

    from prefect.settings import get_current_settings
    from prefect.testing.utilities import prefect_test_harness

    _say("acmeflow: starting the Prefect server (prefect_test_harness; not timed) ...")
    with prefect_test_harness(server_startup_timeout=120):
        api_url = str(get_current_settings().api.url)
        _say(f"acmeflow: one `renew` run for {count} due certificates ({workers} workers) ...")
        child_env = {**os.environ, **env, "PREFECT_API_URL": api_url, "PYTHONPATH": str(ROOT)}
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "bench.bulk_renew", "--child-renew", at],
            cwd=ROOT,
            env=child_env,
            capture_output=True,
            text=True,
            check=False,
        )
        process_seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the renew process failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(process_seconds, 3)
    with session_scope(engine) as s:
        after = {i: certificates.get_certificate(s, i).serial for i in ids}
    result["new_serials"] = sum(1 for i in ids if after[i] != before[i])
    result["count"] = count
    result["workers"] = workers
    return result


# --- 2. the floor: a bare parallel client on the `acme` package -------------------------------


def bench_floor(info: SandboxInfo, count: int, workers: int) -> dict[str, Any]:
    """``count`` two-name certificates from ``workers`` threads with ``acme`` and dnspython."""
    import dns.name
    import dns.query
    import dns.tsigkeyring
    import dns.update
    import josepy as jose
    from acme import challenges, client, crypto_util, messages
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    _settings, secrets = rfc2136_config(info)
    zone = info.zone("example.com")
    keyring = dns.tsigkeyring.from_text({zone.tsig_name: secrets["tsig_secret"]})
    algorithm = dns.name.from_text(zone.tsig_algorithm)
    origin = dns.name.from_text("example.com")

    def nsupdate(name: str, value: str, add: bool) -> None:
        update = dns.update.Update(origin, keyring=keyring, keyalgorithm=algorithm)
        rel = dns.name.from_text(name).relativize(origin)
        if add:
            update.add(rel, 60, "TXT", f'"{value}"')
        else:
            update.delete(rel, "TXT", f'"{value}"')
        response = dns.query.tcp(update, info.dns_host, port=info.dns_port, timeout=10)
        if response.rcode() != 0:
            raise RuntimeError(f"nsupdate {name}: rcode {response.rcode()}")

    account_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    verify = str(info.ca_bundle)

    def new_client(regr: messages.RegistrationResource | None) -> client.ClientV2:
        net = client.ClientNetwork(account_key, alg=jose.ES256, account=regr, verify_ssl=verify)  # type: ignore[arg-type]
        directory = client.ClientV2.get_directory(info.directory_url, net)
        return client.ClientV2(directory, net)

    first = new_client(None)
    regr = first.new_account(
        messages.NewRegistration.from_data(email=EMAIL, terms_of_service_agreed=True)
    )
    local = threading.local()
    prefix = unique_label("floor")

    def issue_one(index: int) -> None:
        if not hasattr(local, "acme"):
            local.acme = new_client(regr)
        acme: client.ClientV2 = local.acme
        names = two_names(prefix, index)
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        orderr = acme.new_order(crypto_util.make_csr(key_pem, names))
        pending = []
        for authzr in orderr.authorizations:
            challb = next(
                c for c in authzr.body.challenges if isinstance(c.chall, challenges.DNS01)
            )
            record = challb.chall.validation_domain_name(authzr.body.identifier.value)
            value = challb.chall.validation(account_key)
            nsupdate(record, value, True)
            pending.append((authzr, challb, record, value))
        try:
            for _authzr, challb, _record, _value in pending:
                acme.answer_challenge(challb, challb.chall.response(account_key))
            for authzr, *_ in pending:
                while True:
                    current, _ = acme.poll(authzr)
                    if current.body.status == messages.STATUS_VALID:
                        break
                    if current.body.status == messages.STATUS_INVALID:
                        raise RuntimeError(f"authorization invalid: {current.body}")
                    time.sleep(0.05)
        finally:
            for _authzr, _challb, record, value in pending:
                nsupdate(record, value, False)
        orderr = acme.begin_finalization(orderr)
        while True:
            body = messages.Order.from_json(acme._post_as_get(orderr.uri).json())
            if body.status == messages.STATUS_VALID and body.certificate:
                break
            if body.status == messages.STATUS_INVALID:
                raise RuntimeError(f"order invalid: {body.error}")
            time.sleep(0.05)
        pem = acme._post_as_get(body.certificate).text
        if "BEGIN CERTIFICATE" not in pem:
            raise RuntimeError("no certificate")

    started = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    machine_before = machine_busy_seconds()
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(issue_one, i) for i in range(count)]:
            try:
                future.result()
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": round(elapsed, 3),
        "cpu_seconds": round(
            usage.ru_utime - cpu_before.ru_utime + usage.ru_stime - cpu_before.ru_stime, 3
        ),
        "machine_cpu_seconds": round(machine_busy_seconds() - machine_before, 3),
        "count": count,
        "workers": workers,
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
    }


# --- 3. certbot ---------------------------------------------------------------------------------


def _run_measured(
    argv: list[str], env: dict[str, str]
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Run ``argv`` through a small wrapper: (seconds, peak RSS MB of the command, result)."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "t = time.perf_counter() - t\n"
        "sys.stderr.write(r.stdout + r.stderr)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps([t, peak, r.returncode]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *argv], env=env, capture_output=True, text=True, check=False
    )
    seconds, peak_kb, code = json.loads(done.stdout.strip().splitlines()[-1])
    return seconds, peak_kb / 1024, subprocess.CompletedProcess(argv, code, "", done.stderr)


def bench_certbot(info: SandboxInfo, count: int, env: CertbotEnv) -> dict[str, Any]:
    """Issue ``count`` certificates with certbot (untimed), then time ``certbot renew``."""
    workspace = CertbotWorkspace.fresh(CERTBOT_DIR, info, EMAIL)
    prefix = unique_label("certbot")
    _say(
        f"certbot: {env.describe()}; issuing {count} certificates with certonly "
        "(setup, not timed) ..."
    )
    for index in range(count):
        names = two_names(prefix, index)
        argv = [
            str(env.certbot), "certonly", *workspace.common_args, "--dns-rfc2136",
            "--dns-rfc2136-credentials", str(workspace.credentials),
            "--dns-rfc2136-propagation-seconds", "1",
            "--key-type", "ecdsa", "--cert-name", names[0], "-d", names[0], "-d", names[1],
        ]  # fmt: skip
        done = subprocess.run(argv, env=workspace.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"certbot certonly failed:\n{(done.stderr or done.stdout)[-2000:]}")
    _say(f"certbot: `certbot renew --force-renewal` for {count} certificates ...")
    seconds, peak_mb, done = _run_measured(
        [
            str(env.certbot),
            "renew",
            "--force-renewal",
            "--no-random-sleep-on-renew",
            "--non-interactive",
            *workspace.dir_args,
        ],
        workspace.env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"certbot renew failed:\n{done.stderr[-2000:]}")
    return {
        "certbot": env.describe(),
        "count": count,
        "seconds": round(seconds, 3),
        "per_certificate_s": round(seconds / count, 3),
        "peak_rss_mb": round(peak_mb, 1),
    }


# --- report -----------------------------------------------------------------------------------


def report(results: dict[str, Any], count: int) -> dict[str, Any]:
    """Figures, extrapolations and the targets."""
    flow = results.get("acmeflow") or {}
    floor = results.get("floor") or {}
    certbot = results.get("certbot") or {}
    summary: dict[str, Any] = {}
    if flow.get("flow_seconds") is not None:
        summary["acmeflow_seconds"] = flow["flow_seconds"]
        summary["target_60s"] = flow["flow_seconds"] <= TARGET_SECONDS and flow["renewed"] == count
        summary["target_memory"] = flow["peak_rss_mb"] < TARGET_MEMORY_MB
        summary["acmeflow_cpu_ms"] = round(flow["flow_cpu_seconds"] * 1000 / count, 1)
        if floor.get("seconds") and floor.get("failures"):
            # the reference failed: no ratio, and the bench exits non-zero
            for key in ("floor_ratio", "target_floor", "cpu_ratio", "target_cpu_floor"):
                summary[key] = None
        elif floor.get("seconds"):
            ratio = flow["flow_seconds"] / floor["seconds"]
            summary["floor_ratio"] = round(ratio, 2)
            summary["target_floor"] = ratio <= TARGET_FLOOR_RATIO
            summary["floor_cpu_ms"] = round(floor["cpu_seconds"] * 1000 / count, 1)
            cpu_ratio = flow["flow_cpu_seconds"] / floor["cpu_seconds"]
            summary["cpu_ratio"] = round(cpu_ratio, 2)
            summary["target_cpu_floor"] = cpu_ratio <= TARGET_FLOOR_RATIO
    if certbot.get("per_certificate_s"):
        summary["certbot_extrapolated_seconds"] = round(certbot["per_certificate_s"] * count, 1)
        if flow.get("flow_seconds"):
            summary["certbot_ratio"] = round(
                summary["certbot_extrapolated_seconds"] / flow["flow_seconds"], 1
            )
    return summary


def _print(results: dict[str, Any], summary: dict[str, Any], count: int) -> None:
    flow, floor, certbot = results.get("acmeflow"), results.get("floor"), results.get("certbot")
    print(f"bulk renewal of {count} two-name certificates on the sandbox (pebble + BIND, DNS-01)")
    if flow:
        print(
            f"acmeflow `renew` flow: {flow['flow_seconds']:.2f} s wall, "
            f"{flow['flow_cpu_seconds']:.2f} s CPU (machine: {flow['machine_cpu_seconds']:.2f} s "
            f"on {os.cpu_count()} cores; {flow['renewed']} renewed, "
            f"{flow['failed']} failed, {flow['new_serials']} new serials), peak memory "
            f"{flow['peak_rss_mb']:.0f} MB; process {flow['process_seconds']:.2f} s incl. "
            f"{flow['import_seconds']:.2f} s imports; {flow['workers']} workers"
        )
    if floor:
        print(
            f"floor (bare `acme` client, {floor['workers']} threads): {floor['seconds']:.2f} s "
            f"wall, {floor['cpu_seconds']:.2f} s CPU (machine: "
            f"{floor['machine_cpu_seconds']:.2f} s; {floor['failures']} failures)"
        )
    if certbot:
        print(
            f"certbot renew: {certbot['seconds']:.1f} s for {certbot['count']} "
            f"({certbot['per_certificate_s']:.2f} s each) -> {count}: "
            f"{summary.get('certbot_extrapolated_seconds')} s extrapolated; peak "
            f"{certbot['peak_rss_mb']:.0f} MB ({certbot['certbot']})"
        )
    for key in ("certbot_error", "floor_error", "acmeflow_error"):
        if results.get(key):
            print(f"{key}: {results[key]}")
    if summary.get("floor_ratio") is not None:
        print(f"acmeflow / floor: {summary['floor_ratio']:.2f} x (target <= {TARGET_FLOOR_RATIO})")
        print(
            f"CPU per renewal: acmeflow {summary['acmeflow_cpu_ms']:.1f} ms, floor "
            f"{summary['floor_cpu_ms']:.1f} ms ({summary['cpu_ratio']:.2f} x, target <= "
            f"{TARGET_FLOOR_RATIO})"
        )
    elif "floor_ratio" in summary:
        assert floor is not None
        print(f"floor failed: no ratio ({floor['failures']} of {count} floor renewals failed)")
    if "certbot_ratio" in summary:
        print(f"certbot / acmeflow: {summary['certbot_ratio']:.1f} x")
    for key, label in (
        ("target_60s", f"{count} in <= {TARGET_SECONDS:.0f} s"),
        ("target_floor", f"<= {TARGET_FLOOR_RATIO} x floor"),
        ("target_cpu_floor", f"CPU <= {TARGET_FLOOR_RATIO} x floor's"),
        ("target_memory", f"peak memory < {TARGET_MEMORY_MB:.0f} MB"),
    ):
        if key in summary:
            verdict = {True: "met", False: "NOT met", None: "no ratio"}[summary[key]]
            print(f"target {label}: {verdict}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (see the module doc)."""
    parser = argparse.ArgumentParser(
        description="Bulk renewal: acmeflow renew vs floor vs certbot."
    )
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--certbot-count", type=int, default=20)
    parser.add_argument("--skip-certbot", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-sandbox", action="store_true")
    parser.add_argument(
        "--profile", metavar="FILE", help="write cProfile stats of the renew process to FILE"
    )
    parser.add_argument("--child-renew", metavar="NOW", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_renew:
        child_renew(args.child_renew)
        return 0
    if args.profile:
        os.environ["BENCH_PROFILE"] = str(Path(args.profile).resolve())
    for key, value in QUIET_PREFECT.items():
        os.environ.setdefault(key, value)
    certbot_env: CertbotEnv | None = None
    results: dict[str, Any] = {}
    if not args.skip_certbot:
        try:
            certbot_env = ensure_certbot()
        except CertbotUnavailable as exc:
            results["certbot_error"] = str(exc)
    _say("starting the sandbox in .bench/sandbox ...")
    info = start_sandbox(SANDBOX_HOME, keep=args.keep_sandbox)
    try:
        for name, run in (
            ("acmeflow", lambda: bench_acmeflow(info, args.count, args.workers)),
            ("floor", lambda: bench_floor(info, args.count, args.workers)),
            (
                "certbot",
                lambda: (
                    bench_certbot(info, args.certbot_count, certbot_env) if certbot_env else None
                ),
            ),
        ):
            try:
                outcome = run()
            except Exception as exc:
                results[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
                _say(f"{name}: FAILED {results[f'{name}_error']}")
                continue
            if outcome is not None:
                results[name] = outcome
                _say(f"{name}: {json.dumps(outcome)}")
    finally:
        if not args.keep_sandbox:
            stop_sandbox(SANDBOX_HOME)
    summary = report(results, args.count)
    if args.json:
        print(json.dumps({"results": results, "summary": summary}, indent=2))
    else:
        _print(results, summary, args.count)
    return 0 if all(v for k, v in summary.items() if k.startswith("target_")) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Per-certificate issuance latency: acmeflow's core, its Prefect flow, and certbot.

``python -m bench.issue_latency [--count N] [--json] [--skip-certbot] [--keep-sandbox]``

On one local sandbox (pebble with ``PEBBLE_VA_NOSLEEP=1`` + BIND, in ``.bench/sandbox``) it
issues N two-name certificates (``NAME.example.com`` and ``*.NAME.example.com``, names unique
per run and per method so no authorization is reused) one after another, three ways:

1. **core**: the issuance steps without Prefect (``core.pipeline.run_steps``, a batch of one)
   on a home in ``.bench/home`` configured through the CLI, the RFC 2136 provider;
   propagation is checked at the sandbox BIND (the authoritative server). Timed: order to
   stored certificate (key, CSR, files and database included).
2. **flow**: the Prefect flow ``flows.issue.issue`` on a home in ``.bench/home`` configured
   through the CLI, against a ``prefect_test_harness`` server. The server start and one
   warm-up issuance are reported apart and not counted. Timed: the flow call, which also
   stores the files and records the history.
3. **cli**: ``acmeflow issue --ca ... --name X --name *.X --json`` as a user types it, a fresh
   process each, with the home's local Prefect server up (``acmeflow server start``, started
   and warmed up by one issuance beforehand, not timed), which hands its flow run to the
   server's warm runner. Timed: the whole command. Target (issue "A CLI that feels
   instant"): at most 2.5 s per certificate. **cli-own**: the same with
   ``ACMEFLOW_USE_RUNNER=false``, the flow run in the command's own process.
4. **certbot**: ``certbot certonly --dns-rfc2136 --dns-rfc2136-propagation-seconds 1`` (5.8,
   from its own venv ``.bench/certbot-venv``, see :mod:`bench.certbot_env`). Timed: the whole
   command, as a user runs it; the account is registered beforehand (not timed).

Prints median / min / max seconds per certificate, the ratios to certbot and whether the
target (core at most half of certbot's time per certificate) is met.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from acmeflow.sandbox import SandboxInfo
from bench.certbot_env import CertbotEnv, CertbotUnavailable, CertbotWorkspace, ensure_certbot
from bench.sandbox_setup import (
    BENCH_DIR,
    EMAIL,
    SANDBOX_HOME,
    BenchSetupError,
    apply_env,
    configure_home,
    start_sandbox,
    stop_sandbox,
    unique_label,
)

TARGET_RATIO = 0.5
CLI_TARGET_SECONDS = 2.5
CERTBOT_DIR = BENCH_DIR / "certbot"
PREFECT_MODE = "prefect_test_harness (temporary SQLite database, API server subprocess)"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class MethodResult:
    """Timings of one method (seconds per certificate) or why it did not run."""

    method: str
    samples: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    error: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float | None:
        """Median seconds per certificate (None without samples)."""
        return statistics.median(self.samples) if self.samples else None

    def to_json(self) -> dict[str, Any]:
        """Machine-readable summary with every sample."""
        return {
            "method": self.method,
            "n": len(self.samples),
            "median_s": self.median,
            "min_s": min(self.samples) if self.samples else None,
            "max_s": max(self.samples) if self.samples else None,
            "samples_s": [round(s, 4) for s in self.samples],
            "failures": list(self.failures),
            "error": self.error,
            **self.notes,
        }


def two_names(method: str, run_id: str, index: int) -> list[str]:
    """``X.example.com`` and ``*.X.example.com`` with X unique to run, method and index."""
    base = f"{method}-{run_id}-{index}.example.com"
    return [base, f"*.{base}"]


def _check_names(cert_pem: bytes, names: list[str]) -> None:
    cert = x509.load_pem_x509_certificate(cert_pem)
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    got = sorted(ext.value.get_values_for_type(x509.DNSName))
    if got != sorted(names):
        raise RuntimeError(f"certificate names {got} differ from the requested {sorted(names)}")


def _timed(result: MethodResult, count: int, issue_one: Callable[[int], None], label: str) -> None:
    """Issue ``count`` certificates one after another; a failed one is recorded, not timed."""
    for index in range(count):
        started = time.perf_counter()
        try:
            issue_one(index)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            result.failures.append(message)
            _say(f"  {label} {index + 1}/{count}: FAILED {message}")
            continue
        elapsed = time.perf_counter() - started
        result.samples.append(elapsed)
        _say(f"  {label} {index + 1}/{count}: {elapsed:.3f} s")
    if not result.samples:
        result.error = f"all {count} issuances failed; first: {result.failures[0]}"


# --- 1. core ----------------------------------------------------------------------------------


def bench_core(info: SandboxInfo, count: int, run_id: str) -> MethodResult:
    """Issue ``count`` certificates with the issuance steps run without Prefect
    (:func:`core.pipeline.run_steps`) on a home configured through the CLI."""
    home = configure_home(info)
    apply_env(home.env)
    import datetime as dt
    import uuid

    from acmeflow.config.settings import get_settings
    from acmeflow.core import pipeline
    from acmeflow.core.state import history
    from acmeflow.core.state.db import open_database, session_scope
    from acmeflow.tasks.pipeline import pipeline_context, start_batch

    result = MethodResult("core")
    engine = open_database(get_settings().resolved_database_url)
    ctx = pipeline_context()

    def issue_one(index: int) -> None:
        names = two_names("core", run_id, index)
        with session_scope(engine) as s:
            entry = history.log_start(
                s, kind="issue", names=names, ca_name=home.ca_name, store="certificate"
            )
        item = pipeline.OrderItem(
            ref=uuid.uuid4().hex, ca=home.ca_name, names=names, store="certificate", log_id=entry.id
        )
        pipeline.run_steps(start_batch([item], dt.datetime.now(dt.UTC)), ctx)
        if item.error is not None:
            raise item.error
        assert item.issued is not None
        _check_names(item.issued.cert_pem.encode(), names)

    _say("core: core.pipeline.run_steps (no Prefect), RFC 2136 provider, store and database")
    _timed(result, count, issue_one, "core")
    return result


# --- 2. flow ----------------------------------------------------------------------------------


def bench_flow(info: SandboxInfo, count: int, run_id: str) -> MethodResult:
    """Issue ``count`` certificates through the Prefect ``issue`` flow (plus one warm-up)."""
    result = MethodResult("flow", notes={"prefect": PREFECT_MODE})
    _say("flow: configuring .bench/home through the CLI (ca add, dns add, dns map) ...")
    home = configure_home(info)
    apply_env(home.env)
    for key, value in {
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "50",
    }.items():
        os.environ.setdefault(key, value)

    from prefect.testing.utilities import prefect_test_harness

    from acmeflow.config.settings import get_settings
    from acmeflow.core.certinfo import read_certificate_file
    from acmeflow.core.state import certificates
    from acmeflow.core.state.db import open_database, session_scope
    from acmeflow.flows.issue import issue

    def issue_one(index: int, prefix: str = "flow") -> None:
        names = two_names(prefix, run_id, index)
        cert_id = issue(ca=home.ca_name, names=names)
        engine = open_database(get_settings().resolved_database_url)
        with session_scope(engine) as s:
            cert = certificates.get_certificate(s, cert_id)
            folder = Path(cert.folder)
        infos = read_certificate_file(folder / "cert.pem")
        if sorted(infos[0].names) != sorted(names):
            raise RuntimeError(f"certificate {cert_id} names {infos[0].names} != {names}")

    _say(f"flow: starting the Prefect server ({PREFECT_MODE}) ...")
    started = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120):
        result.notes["prefect_server_start_s"] = round(time.perf_counter() - started, 3)
        _say(f"  Prefect server up in {result.notes['prefect_server_start_s']:.2f} s")
        started = time.perf_counter()
        issue_one(0, prefix="flow-warmup")
        result.notes["warmup_issuance_s"] = round(time.perf_counter() - started, 3)
        _say(f"  warm-up issuance (not counted): {result.notes['warmup_issuance_s']:.2f} s")
        _timed(result, count, issue_one, "flow")
    return result


# --- 3. cli ---------------------------------------------------------------------------------


def bench_cli(info: SandboxInfo, count: int, run_id: str, *, runner: bool = True) -> MethodResult:
    """Issue ``count`` certificates with ``acmeflow issue``, a process each, against the
    home's local Prefect server (plus one warm-up): handed to the server's warm runner, or
    with ``runner=False`` (``ACMEFLOW_USE_RUNNER=false``) run in the command's own process."""
    method, how = ("cli", "its warm runner") if runner else ("cli-own", "the command's process")
    result = MethodResult(method, notes={"prefect": f"acmeflow server start, flow run in {how}"})
    home = configure_home(info)
    env = {**os.environ, **home.env, "ACMEFLOW_USE_RUNNER": str(runner).lower()}
    for key in ("PREFECT_API_URL", "ACMEFLOW_DATABASE_URL"):
        env.pop(key, None)
    acmeflow = str(Path(sys.executable).with_name("acmeflow"))

    def issue_one(index: int, prefix: str = method) -> None:
        names = two_names(prefix, run_id, index)
        argv = [acmeflow, "issue", "--ca", home.ca_name, "--name", names[0], "--name", names[1]]
        done = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"acmeflow issue exited {done.returncode}: {done.stderr[-500:]}")
        shown = json.loads(done.stdout[done.stdout.index("{") :])
        if sorted(shown["names"]) != sorted(names):
            raise RuntimeError(f"certificate names {shown['names']} differ from {names}")

    _say("cli: starting the home's local Prefect server (acmeflow server start) ...")
    started = time.perf_counter()
    server = subprocess.run(
        [acmeflow, "server", "start", "--json"], env=env, check=True, capture_output=True
    )
    result.notes["prefect_server_start_s"] = round(time.perf_counter() - started, 3)
    try:
        if runner and not json.loads(server.stdout)["runner_pid"]:
            raise RuntimeError("the local server's runner did not start (runner.log in the home)")
        started = time.perf_counter()
        issue_one(0, prefix=f"{method}-warmup")
        result.notes["warmup_issuance_s"] = round(time.perf_counter() - started, 3)
        _timed(result, count, issue_one, method)
    finally:
        subprocess.run([acmeflow, "server", "stop"], env=env, check=False, capture_output=True)
    return result


# --- 4. certbot -------------------------------------------------------------------------------


def _run_certbot(env_vars: dict[str, str], argv: list[str], what: str) -> None:
    done = subprocess.run(argv, env=env_vars, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"certbot {what} failed (exit {done.returncode}):\n{tail}")


def bench_certbot(info: SandboxInfo, count: int, run_id: str, env: CertbotEnv) -> MethodResult:
    """Issue ``count`` certificates with ``certbot certonly --dns-rfc2136``, one command each."""
    result = MethodResult("certbot", notes={"certbot": env.describe()})
    workspace = CertbotWorkspace.fresh(CERTBOT_DIR, info, EMAIL)
    common = workspace.common_args
    _say(f"certbot: {env.describe()}; registering the account (not timed) ...")
    _run_certbot(
        workspace.env, [str(env.certbot), "register", "--no-eff-email", *common], "register"
    )

    def issue_one(index: int) -> None:
        names = two_names("certbot", run_id, index)
        argv = [
            str(env.certbot),
            "certonly",
            *common,
            "--dns-rfc2136",
            "--dns-rfc2136-credentials",
            str(workspace.credentials),
            "--dns-rfc2136-propagation-seconds",
            "1",
            "--key-type",
            "ecdsa",
            "--cert-name",
            names[0],
            "-d",
            names[0],
            "-d",
            names[1],
        ]
        _run_certbot(workspace.env, argv, f"certonly for {names[0]}")
        cert = CERTBOT_DIR / "config" / "live" / names[0] / "cert.pem"
        _check_names(cert.read_bytes(), names)

    _timed(result, count, issue_one, "certbot")
    return result


# --- report -----------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def summarize(results: list[MethodResult], count: int) -> dict[str, Any]:
    """Ratios to certbot's median and whether the target is met."""
    by_name = {r.method: r for r in results}
    certbot = by_name.get("certbot")
    base = certbot.median if certbot is not None else None
    ratios: dict[str, float | None] = {}
    for name in ("core", "flow", "cli", "cli-own"):
        r = by_name.get(name)
        ratios[f"{name}/certbot"] = (
            r.median / base if r is not None and r.median is not None and base else None
        )
    core_ratio = ratios.get("core/certbot")
    cli = by_name.get("cli")
    cli_median = cli.median if cli is not None else None
    return {
        "count": count,
        "methods": [r.to_json() for r in results],
        "ratios": ratios,
        "target": f"core at most {TARGET_RATIO:g} x certbot's time per certificate",
        "target_met": core_ratio <= TARGET_RATIO if core_ratio is not None else None,
        "cli_target": f"acmeflow issue at most {CLI_TARGET_SECONDS:g} s per certificate",
        "cli_target_met": cli_median <= CLI_TARGET_SECONDS if cli_median is not None else None,
    }


def print_report(summary: dict[str, Any]) -> None:
    """The human-readable table, ratios and target line."""
    header = f"{'method':<8} {'N':>3} {'median s/cert':>14} {'min':>8} {'max':>8}"
    print(header)
    print("-" * len(header))
    for m in summary["methods"]:
        line = (
            f"{m['method']:<8} {m['n']:>3} {_fmt(m['median_s']):>14} "
            f"{_fmt(m['min_s']):>8} {_fmt(m['max_s']):>8}"
        )
        if m["error"]:
            line += f"  FAILED: {m['error'].splitlines()[0]}"
        elif m["failures"]:
            line += f"  ({len(m['failures'])} failed: {m['failures'][0].splitlines()[0]})"
        print(line)
    print()
    if "sandbox" in summary:
        print(f"sandbox: {summary['sandbox']}; 2 names per certificate, one at a time")
    for m in summary["methods"]:
        if m["method"] in ("flow", "cli", "cli-own") and "prefect_server_start_s" in m:
            print(
                f"{m['method']}: {m['prefect']}; server start {m['prefect_server_start_s']:.2f} s, "
                f"warm-up issuance {m.get('warmup_issuance_s', float('nan')):.2f} s (not counted)"
            )
        if m["method"] == "certbot" and "certbot" in m:
            print(f"certbot: {m['certbot']}, --dns-rfc2136-propagation-seconds 1")
    for name, ratio in summary["ratios"].items():
        print(f"ratio {name}: {ratio:.3f}" if ratio is not None else f"ratio {name}: -")
    met = summary["target_met"]
    if met is None:
        print(f"target ({summary['target']}): not measured (no certbot figures)")
    else:
        print(f"target ({summary['target']}): {'MET' if met else 'NOT MET'}")
    cli_met = summary["cli_target_met"]
    if cli_met is None:
        print(f"target ({summary['cli_target']}): not measured (the cli method failed)")
    else:
        print(f"target ({summary['cli_target']}): {'MET' if cli_met else 'NOT MET'}")


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a method failed."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.issue_latency",
        description="Per-certificate issuance latency: acmeflow core, Prefect flow, certbot.",
    )
    parser.add_argument("--count", type=int, default=10, help="certificates per method (10)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--skip-certbot", action="store_true", help="measure acmeflow only")
    parser.add_argument(
        "--keep-sandbox", action="store_true", help="leave the sandbox running at the end"
    )
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")

    certbot_env: CertbotEnv | None = None
    certbot_error: str | None = None
    if not args.skip_certbot:
        try:
            certbot_env = ensure_certbot()
        except CertbotUnavailable as exc:
            certbot_error = str(exc)
            _say(f"certbot unavailable: {exc}")

    run_id = unique_label("r").removeprefix("r-")
    results: list[MethodResult] = []
    _say(f"starting the sandbox in {SANDBOX_HOME} ...")
    try:
        info = start_sandbox(SANDBOX_HOME, keep=args.keep_sandbox)
    except Exception as exc:
        _say(f"error: the sandbox did not start: {exc}")
        return 1
    try:
        runs: list[tuple[str, Callable[[], MethodResult]]] = [
            ("core", lambda: bench_core(info, args.count, run_id)),
            ("flow", lambda: bench_flow(info, args.count, run_id)),
            ("cli", lambda: bench_cli(info, args.count, run_id)),
            ("cli-own", lambda: bench_cli(info, args.count, run_id, runner=False)),
        ]
        if certbot_env is not None:
            env = certbot_env
            runs.append(("certbot", lambda: bench_certbot(info, args.count, run_id, env)))
        for name, run in runs:
            try:
                results.append(run())
            except (BenchSetupError, Exception) as exc:
                _say(f"{name} failed: {type(exc).__name__}: {exc}")
                results.append(MethodResult(name, error=f"{type(exc).__name__}: {exc}"))
        if certbot_error is not None:
            results.append(MethodResult("certbot", error=certbot_error))
    finally:
        if args.keep_sandbox:
            _say(f"sandbox left running in {SANDBOX_HOME}")
        else:
            stop_sandbox(SANDBOX_HOME)

    summary = summarize(results, args.count)
    summary["sandbox"] = (
        "pebble 2.4 (PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0, PEBBLE_AUTHZREUSE=0) "
        "+ BIND 9.18 on loopback"
    )
    summary["names_per_certificate"] = 2
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_report(summary)
    return 1 if any(r.error or r.failures for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

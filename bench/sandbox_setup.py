"""Shared benchmark setup: a sandbox in ``.bench/sandbox``, an acmeflow home in ``.bench/home``.

* :func:`start_sandbox` brings up pebble + BIND (``acmeflow.sandbox.sandbox_up``; pebble runs
  with ``PEBBLE_VA_NOSLEEP=1``) and :func:`stop_sandbox` stops exactly those processes.
* :func:`configure_home` makes a fresh acmeflow home through the real command line: CA vendor
  ``sandbox`` (account registered), RFC 2136 provider ``bind-com`` for ``example.com`` with
  its TSIG key given as an ``env:`` reference, mapped to ``example.com``.
* :func:`rfc2136_config` gives the same provider's settings and secrets for code that builds
  the provider itself (``providers.dns.registry.build_provider``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from acmeflow.sandbox import SandboxInfo, sandbox_down, sandbox_up

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
SANDBOX_HOME = BENCH_DIR / "sandbox"
ACMEFLOW_HOME = BENCH_DIR / "home"
CA_NAME = "sandbox"
PROVIDER_NAME = "bind-com"
ZONE = "example.com"
EMAIL = "admin@example.com"
_CLI = "from acmeflow.cli import main; main()"


class BenchSetupError(Exception):
    """The benchmark environment could not be prepared; the message says which step failed."""


@dataclass(frozen=True)
class BenchHome:
    """A configured acmeflow home and the environment that points acmeflow at it."""

    path: Path
    sandbox: SandboxInfo
    env: dict[str, str]
    ca_name: str = CA_NAME
    provider_name: str = PROVIDER_NAME


#: pebble rejects 5 % of good nonces unless told otherwise (a test-only behaviour no real CA
#: has): benchmarks switch that off, and authorization reuse too.
PEBBLE_BENCH_ENV = {"PEBBLE_WFE_NONCEREJECT": "0"}


def start_sandbox(home: Path = SANDBOX_HOME, *, keep: bool = False) -> SandboxInfo:
    """Start (or reuse) the benchmark sandbox in ``home``: no nonce rejection, no authz reuse.

    Without ``keep`` the processes stop when this interpreter exits; with it they outlive it
    (stop them with ``acmeflow sandbox down --home .bench/sandbox`` or :func:`stop_sandbox`).
    """
    home.mkdir(parents=True, exist_ok=True)
    return sandbox_up(home, authz_reuse=0, extra_pebble_env=PEBBLE_BENCH_ENV, detach=keep)


def stop_sandbox(home: Path = SANDBOX_HOME) -> bool:
    """Stop the benchmark sandbox in ``home``; True when it was running."""
    return sandbox_down(home)


def unique_label(prefix: str) -> str:
    """A DNS label unique to this call (``prefix-<8 hex>``), so no authorization is reused."""
    return f"{prefix}-{secrets.token_hex(4)}"


def _resolvers_value(server: str) -> str:
    """``ACMEFLOW_DNS_RESOLVERS`` for one server, in a form the settings accept.

    Plain ``host:port`` when the settings parse it, else a JSON list (pydantic-settings reads
    list fields from the environment as JSON).
    """
    from acmeflow.config.settings import Settings

    key = "ACMEFLOW_DNS_RESOLVERS"
    previous = os.environ.get(key)
    os.environ[key] = server
    try:
        Settings()
        return server
    except Exception:
        return json.dumps([server])
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


def acmeflow_env(info: SandboxInfo, home: Path = ACMEFLOW_HOME) -> dict[str, str]:
    """The environment that points acmeflow at ``home`` and the sandbox (TSIG keys included)."""
    env = info.env()
    env["ACMEFLOW_DNS_RESOLVERS"] = _resolvers_value(info.dns_server)
    env["ACMEFLOW_HOME"] = str(home)
    env["ACMEFLOW_PROPAGATION_TIMEOUT"] = "30"
    env["ACMEFLOW_ACME_TIMEOUT"] = "60"
    return env


def apply_env(env: Mapping[str, str]) -> None:
    """Put ``env`` into this process's environment and forget cached settings."""
    os.environ.update(env)
    os.environ.pop("ACMEFLOW_DATABASE_URL", None)
    from acmeflow.config.settings import get_settings

    get_settings.cache_clear()


def run_cli(args: list[str], env: Mapping[str, str]) -> str:
    """Run ``acmeflow ARGS`` as its own process (the real command line); return its stdout."""
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    full_env.pop("ACMEFLOW_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", _CLI, *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        shown = " ".join(a for a in args)
        raise BenchSetupError(
            f"`acmeflow {shown}` failed (exit {result.returncode}):\n"
            + (result.stdout + result.stderr).strip()[-2000:]
        )
    return result.stdout


def rfc2136_config(info: SandboxInfo, zone: str = ZONE) -> tuple[dict[str, str], dict[str, str]]:
    """Settings and secrets of an RFC 2136 provider updating ``zone`` on the sandbox BIND."""
    z = info.zone(zone)
    settings = {
        "server": info.dns_server,
        "tsig_name": z.tsig_name,
        "tsig_algorithm": z.tsig_algorithm,
    }
    return settings, {"tsig_secret": z.tsig_secret}


def configure_home(
    info: SandboxInfo, home: Path = ACMEFLOW_HOME, *, fresh: bool = True
) -> BenchHome:
    """A fresh acmeflow home with CA ``sandbox`` and provider ``bind-com`` (example.com).

    Configured through the real CLI (``ca add``, ``dns add``, ``dns map``); the TSIG key is
    stored as a reference to its ``ACMEFLOW_SANDBOX_TSIG_*`` variable, never as an argument.
    """
    if fresh and home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    env = acmeflow_env(info, home)
    zone = info.zone(ZONE)
    prefix = zone.env_prefix()
    run_cli(
        [
            "ca",
            "add",
            CA_NAME,
            "--vendor",
            "custom",
            "--email",
            EMAIL,
            "--directory-url",
            info.directory_url,
            "--ca-bundle",
            str(info.ca_bundle),
        ],
        env,
    )
    run_cli(
        [
            "dns",
            "add",
            PROVIDER_NAME,
            "--type",
            "rfc2136",
            "--set",
            f"server={info.dns_server}",
            "--set",
            f"tsig_name={zone.tsig_name}",
            "--set",
            f"tsig_algorithm={zone.tsig_algorithm}",
            "--secret",
            f"tsig_secret=env:{prefix}SECRET",
        ],
        env,
    )
    run_cli(["dns", "map", PROVIDER_NAME, ZONE], env)
    return BenchHome(path=home, sandbox=info, env=env)

"""Bad input gets the catalog's message, changes nothing, and prints no traceback."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import pytest

from acmeflow.core import errors
from acmeflow.core.names import check_name_count
from acmeflow.providers.dns.rfc2136 import RFC2136Provider
from tests.fakes.dns_servers import SilentDNS
from tests.fixtures_acmeflow import Home
from tests.test_catalog_e2e import assert_fails
from tests.test_issue_e2e import txt_values

REPO = Path(__file__).resolve().parents[2]
TOO_MANY = "Too many names for one certificate at this CA."

F = TypeVar("F", bound=Callable[..., None])


def sandboxed(test: F) -> F:
    """Marks of a test that runs acmeflow on the sandbox under the Prefect harness."""
    for mark in (
        pytest.mark.sandbox,
        pytest.mark.prefect,
        pytest.mark.usefixtures("prefect_harness"),
    ):
        test = mark(test)
    return test


def history(home: Home) -> list[dict[str, object]]:
    return list(json.loads(home.ok("logs", "--json", "--limit", "0").stdout))


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("vendor", "limit"), [("letsencrypt", 100), ("letsencrypt-staging", 100)])
def test_vendor_presets_cap_the_names_per_certificate(vendor: str, limit: int) -> None:
    names = [f"n{i}.example.com" for i in range(limit + 1)]
    check_name_count(names[:limit], ca="le", vendor=vendor, default_limit=1000)
    with pytest.raises(errors.TooManyNames) as raised:
        check_name_count(names, ca="le", vendor=vendor, default_limit=1000)
    assert f"at most {limit} names" in str(raised.value.detail)


@sandboxed
def test_101_names_are_refused_before_ordering(home: Home) -> None:
    """101 names were issued (exit 0); a CA without a known limit takes 100 by default."""
    args = ["issue", "--ca", "sandbox"]
    for i in range(101):
        args += ["--name", f"n{i}.example.com"]
    output = assert_fails(home, TOO_MANY, *args)
    assert "101 names requested" in output
    assert history(home) == []


@sandboxed
def test_the_default_name_limit_is_configurable(home: Home, monkeypatch) -> None:
    from acmeflow.config.settings import get_settings

    monkeypatch.setenv("ACMEFLOW_MAX_NAMES", "2")
    get_settings.cache_clear()
    names = ["--name", "a.example.com", "--name", "b.example.com", "--name", "c.example.com"]
    assert_fails(home, TOO_MANY, "issue", "--ca", "sandbox", *names)


@sandboxed
def test_an_invalid_name_leaves_no_history_row(home: Home) -> None:
    message = "Invalid domain name provided. Please check the domain name and try again."
    assert_fails(home, message, "issue", "--ca", "sandbox", "--name", "bad_name!.example.com")
    assert history(home) == []


# --- DNS providers ----------------------------------------------------------------------------


def bad_provider_cases(home: Home, tmp_path: Path) -> list[tuple[list[str], str, str]]:
    server = f"server={home.sandbox.dns_host}:{home.sandbox.dns_port}"
    tsig = "tsig_secret=env:ACMEFLOW_SANDBOX_TSIG_EXAMPLE_COM_SECRET"
    key = ["--set", "tsig_name=k", "--secret", tsig]
    missing_file = f"tsig_secret=file:{tmp_path}/none"
    secret_error = "A secret could not be read. Please check the secret reference and key."
    return [
        (
            ["--set", server, "--set", "tsig_name=k", "--secret", "tsig_secret=env:NO_SUCH_VAR_X"],
            secret_error,
            "environment variable NO_SUCH_VAR_X",
        ),
        (
            ["--set", server, "--set", "tsig_name=k", "--secret", missing_file],
            secret_error,
            "cannot read secret file",
        ),
        (["--set", "server=127.0.0.1:99999", *key], "Invalid configuration.", "invalid port"),
        (
            ["--set", server, "--set", "tsig_algorithm=hmac-md4", *key],
            "Invalid configuration.",
            "unsupported tsig_algorithm 'hmac-md4'",
        ),
        (
            ["--set", server, "--set", "nameservers=127.0.0.1:99999"],
            "Invalid configuration.",
            "invalid port in nameservers",
        ),
    ]  # fmt: skip


@sandboxed
def test_a_dns_provider_that_cannot_work_is_not_saved(home: Home, tmp_path: Path) -> None:
    for settings, message, detail in bad_provider_cases(home, tmp_path):
        output = assert_fails(home, message, "dns", "add", "broken", "--type", "rfc2136", *settings)
        assert detail in output


@sandboxed
def test_an_edit_that_breaks_a_dns_provider_is_refused(home: Home) -> None:
    output = assert_fails(
        home, "Invalid configuration.", "dns", "edit", "bind-com", "--set", "server=h:99999"
    )
    assert "invalid port" in output
    output = assert_fails(
        home,
        "A secret could not be read.",
        "dns", "edit", "bind-com", "--secret", "tsig_secret=env:NO_SUCH_VAR_Y",
    )  # fmt: skip
    assert "NO_SUCH_VAR_Y" in output


# --- the CA's answers ---------------------------------------------------------------------------


class _TrueDirectory(BaseHTTPRequestHandler):
    """A "CA" whose directory is the JSON value ``true``."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def true_directory() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TrueDirectory)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/dir"
    server.shutdown()


@sandboxed
def test_a_directory_that_is_json_true_is_the_catalog_error(home: Home, true_directory) -> None:
    output = assert_fails(
        home,
        "Cannot initialize API for the CA server. Please check the CA server configuration.",
        "ca", "add", "truthy", "--vendor", "custom", "--email", "admin@example.com",
        "--directory-url", true_directory,
    )  # fmt: skip
    assert "not an object" in output


@sandboxed
def test_eab_key_problems_are_reported_as_what_they_are(
    home_factory, sandbox_factory, monkeypatch
) -> None:
    eab = sandbox_factory(eab=True)
    home = home_factory(eab)
    add = [
        "ca", "add", "bad-eab", "--vendor", "custom", "--email", "admin@example.com",
        "--directory-url", eab.directory_url, "--ca-bundle", str(eab.ca_bundle),
        "--eab-kid", str(eab.eab_kid), "--eab-hmac-key", "env:BAD_HMAC",
    ]  # fmt: skip
    mismatch = "Signature does not match."
    monkeypatch.setenv("BAD_HMAC", "not+base64url/at*all")
    assert "not valid base64url" in assert_fails(home, mismatch, *add)
    monkeypatch.setenv(
        "BAD_HMAC", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
    )
    wrong_key = assert_fails(home, mismatch, *add)
    assert "base64url" not in wrong_key
    assert "unauthorized" in wrong_key or "EAB" in wrong_key  # the CA's own words


# --- what the CLI prints ------------------------------------------------------------------------


def run_cli(
    home: Path, *args: str, limit_writes: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    """The installed ``acmeflow`` script on this checkout, as a user runs it."""

    def no_writes() -> None:  # every write fails, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    full_env = {**os.environ, "ACMEFLOW_HOME": str(home), "PYTHONPATH": str(REPO)}
    full_env.pop("ACMEFLOW_DEBUG", None)
    full_env.update(env)
    return subprocess.run(
        [str(Path(sys.executable).parent / "acmeflow"), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=no_writes if limit_writes else None,
    )


def test_an_invalid_name_prints_the_message_only(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "issue", "--ca", "any", "--name", "bad_name!.example.com")
    assert result.returncode == 1
    assert "Invalid domain name provided." in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert len((result.stdout + result.stderr).strip().splitlines()) <= 3


def test_a_full_disk_prints_the_cause_and_the_traceback_only_with_debug(tmp_path: Path) -> None:
    quiet = run_cli(tmp_path, "ca", "list", limit_writes=True)
    assert quiet.returncode == 1
    assert "disk I/O error" in quiet.stderr
    assert "Traceback" not in quiet.stdout + quiet.stderr
    assert "--debug" in quiet.stderr
    loud = run_cli(tmp_path, "--debug", "ca", "list", limit_writes=True)
    assert loud.returncode == 1
    assert "Traceback" in loud.stderr and "disk I/O error" in loud.stderr
    by_env = run_cli(tmp_path, "ca", "list", limit_writes=True, ACMEFLOW_DEBUG="1")
    assert "Traceback" in by_env.stderr


def test_the_traceback_goes_to_a_private_log_file(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "ca", "list", ACMEFLOW_DATABASE_URL="nosuchdb://x")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    log = tmp_path / "acmeflow.log"
    assert str(log) in result.stderr
    assert "Traceback" in log.read_text() and "NoSuchModuleError" in log.read_text()
    assert log.stat().st_mode & 0o777 == 0o600


@sandboxed
def test_a_failed_cleanup_is_a_warning_with_its_cause(home: Home, monkeypatch) -> None:
    """The BIND server refuses the delete: no "✓ ... cleaned up: 0 of 1"."""

    def refuse(self: RFC2136Provider, items: object) -> None:
        self._fail("deleting TXT: update refused: REFUSED")

    monkeypatch.setattr(RFC2136Provider, "cleanup_all", refuse)
    result = home.ok("issue", "--ca", "sandbox", "--name", "dirty.example.com")
    assert "cleaned up: 0" not in result.output
    assert "TXT records not cleaned up: 1 of 1" in result.output
    assert "update refused: REFUSED" in result.output
    line = next(x for x in result.output.splitlines() if "not cleaned up" in x)
    assert not line.startswith("✓")
    assert txt_values(home.sandbox, "_acme-challenge.dirty.example.com")  # left for sweep


@sandboxed
def test_a_failed_flow_run_prints_no_traceback(home: Home, tmp_path: Path) -> None:
    """A failure inside the Prefect run (here a nameserver that never answers): the catalog
    message and detail, not Prefect's traceback of the failed task and flow runs."""
    with SilentDNS() as silent:
        servers = f"{home.sandbox.dns_host}:{home.sandbox.dns_port},{silent.address}"
        home.ok("dns", "edit", "bind-com", "--set", f"nameservers={servers}")
        result = run_cli(
            home.path,
            "issue", "--ca", "sandbox", "--name", "quiet.example.com",
            ACMEFLOW_PROPAGATION_TIMEOUT="2",
            PREFECT_HOME=str(tmp_path / "prefect"),
        )  # fmt: skip
        assert result.returncode == 1
        assert f"The nameserver {silent.address} did not answer." in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "ERROR" not in result.stdout + result.stderr

"""Every wait of an order is bounded by one deadline, and the failure names the real cause.

Faults are done for real: a CA front answering ``rateLimited``, pebble frozen with SIGSTOP,
a nameserver that takes queries and never answers. Bounds are asserted on elapsed time (no
sleeps in the tests).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from acmeflow.config.settings import get_settings
from acmeflow.core.acme_client import MAX_RATE_LIMIT_WAITS
from acmeflow.sandbox import SandboxInfo
from tests.conftest import start_sandbox
from tests.fakes.dns_servers import SilentDNS
from tests.fakes.rate_limit_front import RateLimitingFront
from tests.fixtures_acmeflow import Home
from tests.test_issue_e2e import txt_values

pytestmark = [pytest.mark.sandbox, pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]


def timed_issue(home: Home, *names: str) -> tuple[float, str]:
    args = ["issue", "--ca", "sandbox"]
    for name in names:
        args += ["--name", name]
    started = time.monotonic()
    result = home.cli(*args)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    return elapsed, result.output


def set_timeouts(monkeypatch: pytest.MonkeyPatch, *, acme: float, propagation: float) -> None:
    monkeypatch.setenv("ACMEFLOW_ACME_TIMEOUT", str(acme))
    monkeypatch.setenv("ACMEFLOW_PROPAGATION_TIMEOUT", str(propagation))
    get_settings.cache_clear()


@pytest.fixture
def front(sandbox: SandboxInfo) -> Iterator[RateLimitingFront]:
    with RateLimitingFront.for_sandbox(sandbox) as running:
        assert isinstance(running, RateLimitingFront)
        yield running


def configure_behind(home: Home, front: RateLimitingFront) -> None:
    home.ok(
        "ca", "add", "sandbox", "--vendor", "custom", "--email", "admin@example.com",
        "--directory-url", front.directory_url, "--ca-bundle", str(home.sandbox.ca_bundle),
    )  # fmt: skip
    assert home.add_zone_provider("bind-com", "example.com").exit_code == 0
    home.ok("dns", "map", "bind-com", "example.com")


def test_retry_after_beyond_the_deadline_fails_at_once(
    home_factory, sandbox, front, monkeypatch
) -> None:
    """Retry-After 299 a hundred times was 8.3 h of waiting; now: one refusal, no wait."""
    home = home_factory(sandbox)
    configure_behind(home, front)
    set_timeouts(monkeypatch, acme=60, propagation=20)
    front.retry_after = "299"
    elapsed, output = timed_issue(home, "limited.example.com")
    assert "The CA is rate limiting requests." in output
    assert "Retry-After 299 s does not fit" in output
    assert front.new_orders == 1  # not resent, not retried by Prefect
    assert elapsed < 30


def test_retry_after_zero_is_not_a_storm(home_factory, sandbox, front, monkeypatch) -> None:
    """Retry-After 0 was 401 back-to-back POSTs; now a few, with backoff, then a clear error."""
    home = home_factory(sandbox)
    configure_behind(home, front)
    front.retry_after = "0"
    _elapsed, output = timed_issue(home, "storm.example.com")
    assert "The CA is rate limiting requests." in output
    assert f"still rate limited after {MAX_RATE_LIMIT_WAITS} waits" in output
    assert front.new_orders == MAX_RATE_LIMIT_WAITS + 1


@pytest.fixture
def own_sandbox(tmp_path_factory) -> SandboxInfo:
    """A sandbox of this test alone (it freezes pebble)."""
    return start_sandbox(tmp_path_factory)


def test_frozen_ca_fails_within_the_acme_timeout(home_factory, own_sandbox, monkeypatch) -> None:
    """pebble stopped with SIGSTOP: the order fails once, within the timeout, and says the CA
    did not answer (it was 478 s against a 300 s timeout: every request and task retried)."""
    home = home_factory(own_sandbox)
    home.configure()
    timeout = 6.0
    set_timeouts(monkeypatch, acme=timeout, propagation=20)
    os.kill(own_sandbox.pebble_pid, signal.SIGSTOP)
    try:
        elapsed, output = timed_issue(home, "frozen.example.com")
    finally:
        os.kill(own_sandbox.pebble_pid, signal.SIGCONT)
    assert "did not answer" in output
    assert "not reachable" not in output
    assert elapsed < timeout + 5


def test_silent_nameserver_is_named_after_one_bounded_wait(home, monkeypatch) -> None:
    """One of the zone's two nameservers never answers: one wait of the propagation timeout
    (no task retries: it was 103 s against 30 s), and the message names that server, not
    'propagation'."""
    timeout = 5.0
    set_timeouts(monkeypatch, acme=60, propagation=timeout)
    with SilentDNS() as silent:
        bind = f"{home.sandbox.dns_host}:{home.sandbox.dns_port}"
        home.ok("dns", "edit", "bind-com", "--set", f"nameservers={bind},{silent.address}")
        elapsed, output = timed_issue(home, "silent.example.com")
        assert f"The nameserver {silent.address} did not answer." in output
    assert "did not reach every authoritative nameserver" not in output
    assert elapsed < 2 * timeout + 5  # one wait, not three
    assert txt_values(home.sandbox, "_acme-challenge.silent.example.com") == []

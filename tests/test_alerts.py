"""Alerts the Prefect way: acmeflow's events reach a webhook notification block through the
automations ``acmeflow alerts setup`` creates (real Prefect server, real local receiver)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from acmeflow.config.settings import get_settings
from tests.fixtures_acmeflow import Home

pytestmark = [pytest.mark.prefect]

WRONG_SECRET = "d3JvbmcgdHNpZyBzZWNyZXQgd3JvbmcgdHNpZyBzZWNyZXQ="
DELIVERY_DEADLINE = 90.0


class Receiver:
    """A local HTTP endpoint that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver.lock:
                    receiver.bodies.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first body ``wanted`` accepts, polled until the delivery deadline."""
        deadline = time.monotonic() + DELIVERY_DEADLINE
        while time.monotonic() < deadline:
            with self.lock:
                for body in self.bodies:
                    if wanted(body):
                        return body
            time.sleep(0.2)
        raise AssertionError(f"no such notification; received: {self.bodies}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.server.shutdown()


@pytest.fixture
def webhook_block(prefect_harness: None, receiver: Receiver) -> Iterator[str]:
    """A Prefect custom-webhook notification block that posts to the receiver."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(
        name="acmeflow-test",
        url=receiver.url,
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
        allow_private_urls=True,
    )
    block.save("acmeflow-alerts-test", overwrite=True)
    yield "custom-webhook/acmeflow-alerts-test"


def _issue(home: Home, name: str, *extra: str) -> dict[str, Any]:
    done = home.ok("issue", "--ca", "sandbox", "--name", name, "--json", *extra)
    issued: dict[str, Any] = json.loads(done.stdout)
    return issued


def test_failed_renewal_and_expiring_certificates_reach_the_webhook(
    no_reuse_home: Home, webhook_block: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = no_reuse_home  # the renewal must meet the DNS provider again
    auto = _issue(home, "alert-auto.example.com", "--auto-renew")
    manual = _issue(home, "alert-manual.example.com")

    setup = json.loads(home.ok("alerts", "setup", "--block", webhook_block, "--json").stdout)
    assert setup["block"] == webhook_block
    assert sorted(setup["created"] + setup["updated"] + setup["unchanged"]) == [
        "acmeflow: certificate expiring",
        "acmeflow: deploy failed",
        "acmeflow: renewal failed",
    ]
    try:
        listed = json.loads(home.ok("alerts", "list", "--json").stdout)
        assert {r["event"] for r in listed} == {
            "acmeflow.renewal.failed",
            "acmeflow.certificate.expiring",
            "acmeflow.deploy.failed",
        }

        # the DNS provider now refuses (wrong TSIG key); renew as of 10 days before expiry
        monkeypatch.setenv("ACMEFLOW_SANDBOX_TSIG_EXAMPLE_COM_SECRET", WRONG_SECRET)
        not_after = dt.datetime.fromisoformat(auto["not_after"])
        at = (not_after - dt.timedelta(days=10)).isoformat()
        failed = home.cli("renew", "--at", at)
        assert failed.exit_code == 1, failed.output

        names = "alert-auto.example.com"
        body = receiver.wait_for(lambda b: "renewal failed" in b["subject"] and names in b["body"])
        assert "Error adding TXT record" in body["body"]
        assert "expires in 9 day(s)" in body["body"] or "expires in 10 day(s)" in body["body"]
        expiring = receiver.wait_for(
            lambda b: "expires in" in b["subject"] and names in b["subject"]
        )
        assert "not renewed yet" in expiring["body"]

        # a manual certificate within ACMEFLOW_EXPIRY_WARNING_DAYS: the scan warns
        monkeypatch.setenv("ACMEFLOW_EXPIRY_WARNING_DAYS", "100000")
        get_settings.cache_clear()
        home.ok("scan")
        manual_name = manual["names"][0]
        warned = receiver.wait_for(lambda b: manual_name in b["subject"])
        assert "not enrolled for renewal" in warned["body"]
        for body in receiver.bodies:  # never a secret in a notification
            assert WRONG_SECRET not in json.dumps(body)
            assert home.zone_env("example.com", "SECRET") not in json.dumps(body)
    finally:
        removed = json.loads(home.ok("alerts", "remove", "--json").stdout)
    assert len(removed["removed"]) == 3
    assert json.loads(home.ok("alerts", "list", "--json").stdout) == []


def test_setup_refuses_a_block_that_cannot_notify(home: Home, prefect_harness: None) -> None:
    from prefect.blocks.system import Secret

    Secret(value="not a notifier").save("acmeflow-alerts-not-notify", overwrite=True)
    result = home.cli("alerts", "setup", "--block", "acmeflow-alerts-not-notify")
    assert result.exit_code == 1
    assert "cannot send notifications" in result.output
    missing = home.cli("alerts", "setup", "--block", "no-such-block")
    assert missing.exit_code == 1 and "no Prefect block named" in missing.output
    unknown = home.cli("alerts", "setup", "--block", "x", "--alert", "bogus")
    assert unknown.exit_code == 1 and "unknown alert bogus" in unknown.output

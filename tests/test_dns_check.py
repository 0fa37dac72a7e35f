"""``acmeflow dns check``: write, see and remove a test TXT value through a provider (F4)."""

from __future__ import annotations

import base64
import json

import pytest

from acmeflow.core.state.challenge_journal import list_entries
from acmeflow.output import database
from tests.fixtures_acmeflow import Home
from tests.test_issue_e2e import txt_values

pytestmark = pytest.mark.sandbox

DELEGATED_TARGET = "_acme-challenge.delegated.example.com.challenges.example.net"


def check_json(home: Home, *args: str, exit_code: int = 0) -> dict:
    result = home.cli("dns", "check", *args, "--json")
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout[result.stdout.index("{") :])


def journal_rows() -> list:
    with database() as s:
        return list_entries(s)


def test_check_writes_sees_and_removes_the_value(home: Home) -> None:
    report = check_json(home, "bind-com", "example.com")
    assert report["ok"] is True and report["warnings"] == []
    assert report["target"] == report["record_name"] == "_acme-challenge.example.com"
    assert report["cname"] is False and report["mapped_to"] == "bind-com"
    steps = [(s["step"], s["ok"]) for s in report["steps"]]
    assert steps == [("written", True), ("seen", True), ("removed", True)]
    seen = report["steps"][1]
    assert seen["nameserver"] == f"{home.sandbox.dns_host}:{home.sandbox.dns_port}"
    assert seen["seconds"] >= 0
    assert report["value"] not in txt_values(home.sandbox, "_acme-challenge.example.com")
    assert journal_rows() == []


def test_check_text_output_reports_each_step(home: Home) -> None:
    result = home.ok("dns", "check", "bind-com", "www.example.com")
    out = result.stdout
    assert "written: _acme-challenge.www.example.com via rfc2136" in out
    assert f"seen at {home.sandbox.dns_host}:{home.sandbox.dns_port} after" in out
    assert "removed in" in out
    assert "can answer DNS-01 challenges for www.example.com" in out


def test_check_follows_the_cname_delegation(home: Home) -> None:
    assert home.add_zone_provider("bind-net", "challenges.example.net").exit_code == 0
    home.ok("dns", "map", "bind-net", "challenges.example.net")
    report = check_json(home, "bind-net", "delegated.example.com")
    assert report["ok"] is True and report["warnings"] == []
    assert report["record_name"] == "_acme-challenge.delegated.example.com"
    assert report["target"] == DELEGATED_TARGET and report["cname"] is True
    assert report["mapped_to"] == "bind-net"
    assert [s["step"] for s in report["steps"]] == ["written", "seen", "removed"]
    assert report["value"] not in txt_values(home.sandbox, DELEGATED_TARGET)


def test_check_warns_when_the_domain_goes_to_another_provider(home: Home) -> None:
    # same credentials, but example.com is mapped to bind-com: a renewal would not use it
    assert home.add_zone_provider("bind-spare", "example.com").exit_code == 0
    report = check_json(home, "bind-spare", "example.com")
    assert report["ok"] is True and report["mapped_to"] == "bind-com"
    assert len(report["warnings"]) == 1
    assert "mapped to DNS provider bind-com, not bind-spare" in report["warnings"][0]
    text = home.ok("dns", "check", "bind-spare", "example.com")
    assert "warning:" in text.output and "not bind-spare" in text.output


def test_check_warns_about_an_unmapped_domain(home: Home) -> None:
    # the delegation target is writable with bind-net's key, but nothing maps it yet
    assert home.add_zone_provider("bind-net", "challenges.example.net").exit_code == 0
    report = check_json(home, "bind-net", "delegated.example.com")
    assert report["ok"] is True and report["mapped_to"] is None
    assert any(
        DELEGATED_TARGET in w and "map its domain to bind-net" in w for w in report["warnings"]
    )


def test_wrong_tsig_secret_gives_the_txt_error_and_leaves_nothing(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = base64.b64encode(b"definitely-not-the-right-key-123").decode()
    monkeypatch.setenv("WRONG_TSIG", wrong)
    assert home.add_zone_provider("bind-bad", "example.com", secret_env="WRONG_TSIG").exit_code == 0
    before = txt_values(home.sandbox, "_acme-challenge.example.com")

    report = check_json(home, "bind-bad", "example.com", exit_code=1)
    assert report["error"] == "TXTRecordError"
    assert report["message"] == (
        "Error adding TXT record for domain validation. "
        "Please check the DNS configuration and try again."
    )
    assert report["detail"].startswith("rfc2136:") and "TSIG" in report["detail"]
    assert report["ok"] is False
    assert [(s["step"], s["ok"]) for s in report["steps"]] == [
        ("written", False),
        ("removed", True),
    ]

    text = home.cli("dns", "check", "bind-bad", "example.com")
    assert text.exit_code == 1
    assert "Error adding TXT record for domain validation." in text.output
    assert "rfc2136:" in text.output
    for out in (json.dumps(report), text.output):
        assert wrong not in out
    assert txt_values(home.sandbox, "_acme-challenge.example.com") == before
    assert journal_rows() == []


def test_unknown_provider_is_the_catalog_error(home: Home) -> None:
    result = home.cli("dns", "check", "nope", "example.com")
    assert result.exit_code == 1
    assert "DNS Provider - nope does not exist or is not active." in result.output


def test_disabled_provider_is_the_catalog_error(home: Home) -> None:
    home.ok("dns", "edit", "bind-com", "--inactive")
    report = check_json(home, "bind-com", "example.com", exit_code=1)
    assert report["message"] == "DNS Provider - bind-com does not exist or is not active."

"""End to end on the sandbox (F7): zero-touch certificates from pebble deployed to a real nginx
(files + reload) and to a fake NetScaler at issuance and after renewal with no other command;
certificate-store certificates only on `acmeflow deploy`; a target that is down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from acmeflow import cli_renew
from acmeflow.config.settings import get_settings
from acmeflow.core.errors import NotFound
from acmeflow.flows.issue import issue
from tests.fakes import TestPKI
from tests.fakes.nitro import FakeNitroServer
from tests.fixtures_acmeflow import Home
from tests.nginx_server import Nginx, run_nginx
from tests.test_issue_e2e import issue_json

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]

VSERVER = "vs-www"
CERTKEY = "www-cert"

# `acmeflow renew` as the lead mounts it in acmeflow/cli.py
_renew_app = typer.Typer()
_renew_app.command()(cli_renew.renew)


def renew_now(cert_id: int) -> dict[str, Any]:
    """``acmeflow renew --now ID --json``: the only command of a renewal."""
    result: Result = CliRunner().invoke(
        _renew_app, ["--now", str(cert_id), "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["renewed"] == 1, summary
    return summary


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Nginx]:
    """nginx on a loopback port, serving a bootstrap certificate until a deployment."""
    boot = TestPKI("boot").issue(["www.example.com"])
    with run_nginx(
        tmp_path / "web",
        boot_fullchain=boot.cert_pem + boot.chain_pem,
        boot_key=boot.key_pem,
        boot_serial=boot.serial,
    ) as n:
        yield n


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACMEFLOW_DEPLOY_RETRIES", "2")
    monkeypatch.setenv("ACMEFLOW_DEPLOY_RETRY_DELAY", "0.05")
    get_settings.cache_clear()


def add_web(home: Home, web: Nginx, name: str = "web") -> None:
    home.ok(
        "targets",
        "add",
        name,
        "--type",
        "files",
        "--set",
        f"fullchain_path={web.fullchain}",
        "--set",
        f"key_path={web.key}",
        "--set",
        f"reload_command={web.test_then_reload_command}",
    )


def add_adc(home: Home, adc: FakeNitroServer) -> None:
    home.ok(
        "targets",
        "add",
        "adc",
        "--type",
        "netscaler",
        "--set",
        f"url={adc.url}",
        "--set",
        f"username={adc.username}",
        "--set",
        f"ca_bundle={adc.ca_bundle_path}",
        "--set",
        f"certkey={CERTKEY}",
        "--secret",
        "password=env:E2E_NITRO_PASSWORD",
    )


def deploy_history(home: Home, cert_id: int) -> list[dict[str, Any]]:
    entries = json.loads(home.ok("logs", "--json").stdout)
    return [e for e in entries if e["kind"] == "deploy" and e["certificate_id"] == cert_id]


def store_serial(home: Home, cert_id: int) -> str:
    serial: str = json.loads(home.ok("certs", "show", str(cert_id), "--json").stdout)["serial"]
    return serial


@pytest.mark.prefect
def test_zero_touch_is_deployed_at_issuance_and_after_renewal(
    home: Home, web: Nginx, adc: FakeNitroServer
) -> None:
    add_web(home, web)
    add_adc(home, adc)

    issued = issue_json(
        home,
        "--name",
        "www.example.com",
        "--name",
        "example.com",
        "--store",
        "zero-touch",
        "--auto-renew",
        "--target",
        "web",
        "--target",
        "adc",
    )

    first = issued["serial"]
    assert {d["target"]: d["status"] for d in issued["deployments"]} == {
        "adc": "deployed",
        "web": "deployed",
    }
    assert web.wait_for_serial(first) == first
    adc.bind_vserver(VSERVER, CERTKEY)  # the ADC admin binds the certkey once
    assert adc.served_serial(VSERVER) == first

    summary = renew_now(issued["id"])  # no other command after this one

    second = summary["results"][0]["serial"]
    assert second and second != first and store_serial(home, issued["id"]) == second
    assert web.wait_for_serial(second) == second
    assert adc.served_serial(VSERVER) == second
    assert len(adc.served_chain(VSERVER)) >= 2  # leaf linked to its intermediate
    history = deploy_history(home, issued["id"])
    assert sorted((e["serial"], e["status"]) for e in history) == sorted(
        [(first, "success"), (first, "success"), (second, "success"), (second, "success")]
    )


@pytest.mark.prefect
def test_certificate_store_waits_for_acmeflow_deploy(home: Home, web: Nginx) -> None:
    add_web(home, web)
    boot = web.settled_serial()

    issued = issue_json(home, "--name", "manual.example.com", "--target", "web")

    assert issued["store"] == "certificate"
    assert issued["deployments"] == [
        {"target": "web", "status": "awaits manual deployment", "last_error": ""}
    ]
    assert web.settled_serial() == boot
    (waiting,) = deploy_history(home, issued["id"])
    assert waiting["status"] == "skipped"
    assert "awaits manual deployment" in waiting["message"]

    out = home.ok("deploy", str(issued["id"])).stdout

    assert "1 deployed" in out
    assert web.wait_for_serial(issued["serial"]) == issued["serial"]
    assert deploy_history(home, issued["id"])[0]["status"] == "success"


@pytest.mark.prefect
def test_unknown_target_is_refused_before_ordering(home: Home) -> None:
    refused = home.cli("issue", "--ca", "sandbox", "--name", "x.example.com", "--target", "nope")
    assert refused.exit_code == 1 and "no deploy target named 'nope'" in refused.output

    with pytest.raises(NotFound):  # the flow checks too (runs from the UI skip the CLI)
        issue(ca="sandbox", names=["y.example.com"], targets=["nope"])

    assert json.loads(home.ok("certs", "list", "--json").stdout) == []
    (entry,) = json.loads(home.ok("logs", "--json").stdout)
    assert entry["kind"] == "issue" and entry["status"] == "failed"
    assert "nope" in entry["detail"]


@pytest.mark.prefect
@pytest.mark.usefixtures("fast_retries")
def test_a_target_that_is_down(home: Home, web: Nginx, adc: FakeNitroServer) -> None:
    add_web(home, web)
    add_adc(home, adc)

    # at issuance: stored and served by nginx, the ADC refuses connections -> exit code 3
    adc.set_down("refuse")
    result = home.cli(
        "issue",
        "--ca",
        "sandbox",
        "--name",
        "down.example.com",
        "--store",
        "zero-touch",
        "--auto-renew",
        "--target",
        "web",
        "--target",
        "adc",
        "--json",
    )
    assert result.exit_code == 3, result.output
    issued = json.loads(result.stdout[result.stdout.index("{") :])
    cert_id, first = issued["id"], issued["serial"]
    assert {d["target"]: d["status"] for d in issued["deployments"]} == {
        "adc": "failed",
        "web": "deployed",
    }
    assert store_serial(home, cert_id) == first
    assert web.wait_for_serial(first) == first
    failed = next(e for e in deploy_history(home, cert_id) if e["status"] == "failed")
    assert "after 3 attempts" in failed["message"]
    assert failed["detail"].count("failed, retrying") == 2
    assert "netscaler" in failed["detail"] and adc.password not in json.dumps(failed)

    # the next run deploys it
    adc.set_down(None)
    home.ok("deploy", str(cert_id))
    adc.bind_vserver(VSERVER, CERTKEY)
    assert adc.served_serial(VSERVER) == first

    # during a renewal: the renewal succeeds, nginx gets it, the ADC keeps the old one
    adc.set_down("503")
    summary = renew_now(cert_id)
    second = summary["results"][0]["serial"]
    assert store_serial(home, cert_id) == second
    assert web.wait_for_serial(second) == second
    adc.set_down(None)
    assert adc.served_serial(VSERVER) == first
    shown = json.loads(home.ok("targets", "show", "adc", "--json").stdout)
    (binding,) = shown["bindings"]
    assert binding["last_deployed_serial"] == first and "503" in binding["last_error"]
    latest = deploy_history(home, cert_id)
    assert any(e["status"] == "failed" and e["serial"] == second for e in latest)

    # and the next run (pending deployments only) puts the new one on the ADC
    pending = json.loads(home.ok("deploy", "--pending", "--json").stdout)
    assert [(r["target"], r["status"]) for r in pending["results"]] == [("adc", "deployed")]
    assert adc.served_serial(VSERVER) == second

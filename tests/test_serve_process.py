"""`acmeflow serve` as users run it: a separate process against a real Prefect server, every
deployment it serves triggered through the API with valid parameters, each run Completed; a
run whose parameters fail validation says why on its run page.

Runs from deployments validate their parameters in a fresh process (the flow is loaded by
module path): a flow module with postponed annotations failed there on every trigger.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import StateType

from acmeflow.config.settings import get_settings
from acmeflow.core.keys import CSRFields, build_csr, generate_private_key
from acmeflow.core.storage import stores_from_settings
from tests.fixtures_acmeflow import Home
from tests.serve_process import served, wait_for_deployments, wait_for_runs
from tests.test_issue_e2e import issue_json
from tests.test_renew_e2e import cert_row

pytestmark = [pytest.mark.prefect, pytest.mark.sandbox]

PASTED_KEY_REF = "prefect-block:pasted-csr-key"


def run_page_lines(client: Any, run_id: Any, containing: str) -> list[str]:
    """The run's log lines containing ``containing``; a run's last lines reach the API shortly
    after its state does, so this waits for them (bounded)."""
    deadline = time.monotonic() + 30
    while True:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        lines = [log.message for log in logs if containing in log.message]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def pasted_csr(names: list[str], signer: bytes | None = None) -> tuple[str, bytes]:
    """A CSR as a user pastes it into the form, and the key that stays with them (``signer``
    signs the CSR instead when given: a CSR that does not match the key)."""
    key = generate_private_key("ec256")
    return build_csr(signer or key, CSRFields(names=names)).decode(), key


def test_serve_runs_every_deployment_it_serves(home: Home, tmp_path: Path) -> None:
    cert_id = issue_json(home, "--name", "served.example.com")["id"]
    csr, key = pasted_csr(["pasted.example.com", "www.pasted.example.com"])
    Secret(value=key.decode()).save(PASTED_KEY_REF.removeprefix("prefect-block:"), overwrite=True)
    wrong_csr, _ = pasted_csr(["mismatch.example.com"], signer=generate_private_key("ec256"))
    with served(tmp_path) as (serve, log):
        triggers = {
            "issue/ad-hoc": {
                "ca": "sandbox",
                "names": ["adhoc.example.com"],
                "organization": "Form Corp",
                "country": "DE",
            },
            "scan/daily": {},
            "sweep/daily": {},
            "deploy_pending/hourly": {},
            "renew/ad-hoc": {"certificate_ids": [cert_id]},
            "renew/renew-sandbox": {"ca": "sandbox"},
            "deploy/ad-hoc": {"certificate_id": cert_id},
        }
        deployments = wait_for_deployments(list(triggers), serve, log)
        with get_client(sync_client=True) as client:
            run_ids = {
                name: client.create_flow_run_from_deployment(
                    deployments[name].id, parameters=params
                ).id
                for name, params in triggers.items()
            }
            # Parameters the form's schema would refuse reach the flow when a deployment does
            # not enforce its schema: the run fails before it starts, and its page says why.
            client.update_deployment(
                deployments["issue/ad-hoc"].id, DeploymentUpdate(enforce_parameter_schema=False)
            )
            invalid_id = client.create_flow_run_from_deployment(
                deployments["issue/ad-hoc"].id,
                parameters={"ca": "sandbox", "names": ["bad.example.com"], "key_type": "rsa1024"},
            ).id
            pasted = {  # a CSR pasted into the form, its key in a Prefect Secret block
                label: client.create_flow_run_from_deployment(
                    deployments["issue/ad-hoc"].id,
                    parameters={"ca": "sandbox", "csr": pem, "csr_key": PASTED_KEY_REF},
                ).id
                for label, pem in (("pasted", csr), ("mismatch", wrong_csr))
            }
        finished = wait_for_runs(run_ids)
        invalid = wait_for_runs({"invalid": invalid_id})["invalid"]
        pasted_runs = wait_for_runs(pasted)
    assert invalid.state.type == StateType.FAILED
    with get_client(sync_client=True) as client:
        explained = run_page_lines(client, invalid_id, "The run's parameters are invalid")
    assert explained and "key_type" in explained[0], explained
    states = {name: (run.state.type, run.state.message) for name, run in finished.items()}
    failed = {n: s for n, s in states.items() if s[0] != StateType.COMPLETED}
    assert failed == {}, f"{failed}\n{log.read_text()[-4000:]}"
    listed = json.loads(home.ok("certs", "list", "--json").stdout)
    adhoc = [c for c in listed if "adhoc.example.com" in c["names"]]
    assert adhoc, listed  # the run from the UI form really issued
    fields = cert_row(adhoc[0]["id"]).csr_fields  # the form's subject fields went into the CSR
    assert fields["organization"] == "Form Corp" and fields["country"] == "DE"

    # the pasted CSR was issued for its own names with the key that stayed with the user
    assert pasted_runs["pasted"].state.type == StateType.COMPLETED, pasted_runs["pasted"].state
    issued = [c for c in listed if "pasted.example.com" in c["names"]]
    assert issued and sorted(issued[0]["names"]) == ["pasted.example.com", "www.pasted.example.com"]
    leaf = x509.load_pem_x509_certificate(Path(issued[0]["files"]["cert"]).read_bytes())
    public = serialization.load_pem_private_key(key, None).public_key()
    assert leaf.public_key() == public
    # a CSR its key did not sign: refused before anything was ordered, logged or staged
    refused = pasted_runs["mismatch"].state
    assert refused.type == StateType.FAILED and "Invalid private key" in (refused.message or "")
    assert "mismatch.example.com" not in home.ok("logs", "--json").stdout
    stores = stores_from_settings(get_settings()).values()
    assert all(store.staged_requests() == [] for store in stores)

"""A process killed after the CA issued a certificate and before it was stored: the journaled
order is recovered (its certificate downloaded and stored with the staged key), never ordered
again, by a rerun of the same request or by ``sweep``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from acmeflow.config.settings import get_settings
from acmeflow.core.accounts import open_session
from acmeflow.core.keys import load_private_key
from acmeflow.core.state import orders_in_flight
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import LogEntry
from tests.fixtures_acmeflow import Home
from tests.test_pipeline import no_debris

pytestmark = [pytest.mark.sandbox, pytest.mark.prefect]


def kill_after_finalize(home: Home, *names: str) -> tuple[str, str]:
    """Run the steps up to finalize in a subprocess that SIGKILLs itself; the journaled order
    URL and the serial of the certificate the CA issued for it."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.order_killer", "sandbox", *names],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == -9, done.stderr[-3000:]
    order_url = done.stdout.strip().splitlines()[-1]
    engine = open_database(get_settings().resolved_database_url)
    with session_scope(engine) as s:
        assert [o.order_url for o in orders_in_flight.listed(s)] == [order_url]
        session = open_session(s, "sandbox", get_settings())
    issued = session.issued_by_order(order_url)
    assert issued is not None, "the CA did not issue the killed run's certificate"
    serial = format(x509.load_pem_x509_certificate(issued.cert_pem.encode()).serial_number, "x")
    return order_url, serial


def assert_stored(home: Home, cert_id: int, serial: str) -> None:
    """The recovered certificate is in service: its serial, its key, the history closed."""
    shown = json.loads(home.ok("certs", "show", str(cert_id), "--json").stdout)
    assert shown["serial"].lower().lstrip("0") == serial.lstrip("0")
    folder = Path(shown["folder"])
    cert = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
    key = load_private_key((folder / "privkey.pem").read_bytes())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    engine = open_database(get_settings().resolved_database_url)
    with session_scope(engine) as s:
        killed = s.query(LogEntry).filter(LogEntry.certificate_id == cert_id).all()
        assert any(e.status == "success" for e in killed)
    home.ok("sweep", "--older-than", "0s")  # the killed run's TXT value
    no_debris()


def test_a_rerun_of_the_same_request_stores_the_killed_runs_certificate(home: Home) -> None:
    _url, serial = kill_after_finalize(home, "killed.example.com")
    result = home.ok("issue", "--ca", "sandbox", "--name", "killed.example.com", "--json")
    issued = json.loads(result.stdout[result.stdout.index("{") :])
    assert_stored(home, issued["id"], serial)


def test_sweep_stores_the_killed_runs_certificate(home: Home) -> None:
    _url, serial = kill_after_finalize(home, "swept.example.com")
    summary = json.loads(home.ok("sweep", "--json").stdout)
    (line,) = summary["recovered_orders"]
    assert line.startswith("recovered certificate ")
    cert_id = int(line.split()[2])
    assert_stored(home, cert_id, serial)

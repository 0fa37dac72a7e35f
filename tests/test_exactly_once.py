"""Exactly once on one machine: while one process renews a certificate or issues a name set,
another ``acmeflow renew --now`` or ``acmeflow issue`` of it (separate processes, one SQLite
database, one Prefect server) skips and says which run holds it; nothing is ordered twice.

The first process is held inside its order deterministically: its propagation check asks a
nameserver port that never answers, so it keeps its lease for the propagation timeout."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from acmeflow.core.state import leases
from acmeflow.core.state.db import open_database, session_scope
from acmeflow.core.state.models import Certificate, Lease, LogEntry
from tests.fixtures_acmeflow import Home
from tests.serve_process import api_env
from tests.test_issue_e2e import issue_json, txt_values
from tests.test_renew_e2e import cert_row, live_serial

pytestmark = [pytest.mark.sandbox, pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

HOLD_SECONDS = "20"  # the first process's propagation timeout: how long it holds its lease
WAIT_SECONDS = 60.0


@pytest.fixture
def silent_port() -> Iterator[str]:
    """A loopback UDP port that never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield str(sock.getsockname()[1])


def acmeflow(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("acmeflow")), *args],
        env={**api_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def held_process(silent_port: str, *args: str) -> subprocess.Popen[str]:
    """``acmeflow ARGS`` whose propagation check waits on a silent nameserver."""
    return acmeflow(
        *args, ACMEFLOW_DNS_QUERY_PORT=silent_port, ACMEFLOW_PROPAGATION_TIMEOUT=HOLD_SECONDS
    )


def wait_for_lease(key: str) -> str:
    """The flow run holding lease ``key``, once it is taken."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        with session_scope(open_database()) as s:
            row = s.get(Lease, key)
            if row is not None:
                return str(row.flow_run_id)
        time.sleep(0.05)
    raise AssertionError(f"lease {key} never taken")


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=180)
    return process.returncode, output


def statuses(kind: str, names: list[str]) -> list[str]:
    with session_scope(open_database()) as s:
        rows = s.query(LogEntry).filter(LogEntry.kind == kind).order_by(LogEntry.id)
        return [r.status for r in rows if sorted(r.names) == sorted(names)]


def test_a_second_renew_now_skips_the_certificate_another_process_renews(
    no_reuse_home: Home, silent_port: str
) -> None:
    home = no_reuse_home  # every order meets the DNS provider (no authorization reuse)
    cert_id = issue_json(home, "--name", "once.example.com")["id"]
    old_serial = live_serial(cert_row(cert_id).folder)

    first = held_process(silent_port, "renew", "--now", str(cert_id), "--json")
    holder = wait_for_lease(leases.certificate_key(cert_id))
    _, output = finish(acmeflow("renew", "--now", str(cert_id), "--json"))
    second = json.loads(output[output.index("{") :])
    (row,) = second["results"]
    if row["status"] != "skipped":
        raise AssertionError(f"second:\n{output}\nfirst:\n{finish(first)[1]}")
    assert row["message"] == f"certificate {cert_id} already in progress by run {holder}"
    first_code, first_output = finish(first)
    assert first_code != 0, first_output  # its propagation check never got an answer

    assert live_serial(cert_row(cert_id).folder) == old_serial  # nothing renewed twice
    assert sorted(statuses("renew", ["once.example.com"])) == ["failed", "skipped"]
    assert txt_values(home.sandbox, "_acme-challenge.once.example.com") == []
    # the lease is free again: the next renewal goes through, once
    home.ok("renew", "--now", str(cert_id))
    assert live_serial(cert_row(cert_id).folder) != old_serial


def test_issues_of_a_name_set_another_process_is_issuing_are_refused(
    no_reuse_home: Home, silent_port: str
) -> None:
    home = no_reuse_home
    names = ["twice.example.com"]
    first = held_process(silent_port, "issue", "--ca", "sandbox", "--name", names[0])
    holder = wait_for_lease(leases.names_key(names))
    others = [acmeflow("issue", "--ca", "sandbox", "--name", names[0]) for _ in range(2)]
    for other in others:
        code, output = finish(other)
        assert code == 1, output
        assert "twice.example.com already in progress by run" in output, output
        assert holder in output
    first_code, first_output = finish(first)
    assert first_code == 1, first_output

    with session_scope(open_database()) as s:
        issued = [c for c in s.query(Certificate) if c.names == names]
    assert issued == []  # the CA was asked for one certificate at most, and none was stored
    assert sorted(statuses("issue", names)) == ["failed", "skipped", "skipped"]
    assert txt_values(home.sandbox, "_acme-challenge.twice.example.com") == []


def test_a_run_that_planned_before_another_renewed_skips_the_certificate(home: Home) -> None:
    """Two overlapping runs both plan a due certificate; the first renews it and gives its
    lease back before the second reaches the lease: the second must not renew it again."""
    import datetime as dt

    from acmeflow.core import pipeline
    from acmeflow.core.renewal_plan import plan_renewals
    from acmeflow.tasks.pipeline import pipeline_context, start_batch

    cert_id = issue_json(home, "--name", "planned.example.com")["id"]
    stale = plan_renewals(
        ca=None,
        certificate_ids=[cert_id],
        at=dt.datetime.now(dt.UTC),
        flow_run_id=None,
        progress=lambda _: None,
    ).jobs
    home.ok("renew", "--now", str(cert_id), "--json")  # the other run, start to end
    serial = cert_row(cert_id).serial
    assert serial != stale[0].serial

    ctx = pipeline_context()
    batch = start_batch([], size=1)
    pipeline.open_renewals(stale, ctx, batch)
    pipeline.release_leases(batch, ctx)
    assert batch.going() == []
    assert "already renewed by another run" in str(batch.items[0].skipped)
    assert cert_row(cert_id).serial == serial
    assert statuses("renew", ["planned.example.com"]) == ["success", "skipped"]
    with session_scope(open_database()) as s:
        assert s.query(Lease).count() == 0

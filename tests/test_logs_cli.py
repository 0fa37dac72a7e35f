"""``acmeflow logs`` (F8): every issuance and renewal with its outcome, filters, failures."""
# ruff: noqa: F811  (pytest fixtures shared from tests.test_scan are parameters here)

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from acmeflow.cli_logs import parse_since
from acmeflow.core.errors import ConfigError, MissingDNSProvider
from acmeflow.core.state import certificates
from acmeflow.core.state import history as entries
from acmeflow.core.state.db import session_scope
from tests.support import run_cli as cli
from tests.test_scan import engine, local_home  # noqa: F401  (fixtures)

NOW = datetime.now(UTC)


def logs_json(*args: str) -> list[dict]:
    result = cli("logs", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def history(engine: Engine) -> dict[str, int]:
    """An old issuance, a recent renewal, a recent failed renewal of another certificate."""
    with session_scope(engine) as s:
        a = certificates.add_certificate(
            s, store="certificate", folder="/a", names=["a.example.com"]
        )
        b = certificates.add_certificate(
            s, store="zero-touch", folder="/b", names=["b.example.com"]
        )
        old = entries.log_start(
            s,
            kind="issue",
            names=a.names,
            ca_name="le",
            store="certificate",
            certificate_id=a.id,
            flow_run_id="11111111-1111-1111-1111-111111111111",
        )
        entries.log_finish(
            s, old, status="success", message="certificate issued, serial 1a", serial="1a"
        )
        old.started_at = NOW - timedelta(days=30)
        renew = entries.log_start(
            s,
            kind="renew",
            names=a.names,
            ca_name="le",
            store="certificate",
            certificate_id=a.id,
            flow_run_id="22222222-2222-2222-2222-222222222222",
        )
        entries.log_finish(s, renew, status="success", message="certificate issued, serial 2b")
        renew.started_at = NOW - timedelta(hours=2)
        error = MissingDNSProvider(detail="no DNS provider is mapped for b.example.com")
        failed = entries.log_start(
            s,
            kind="renew",
            names=b.names,
            ca_name="le",
            store="zero-touch",
            certificate_id=b.id,
            flow_run_id="33333333-3333-3333-3333-333333333333",
        )
        entries.log_finish(
            s,
            failed,
            status="failed",
            message=error.message,
            detail=error.detail,
            root_cause=error.code,
        )
        failed.started_at = NOW - timedelta(hours=1)
        return {"a": a.id, "b": b.id, "old": old.id, "renew": renew.id, "failed": failed.id}


def test_every_issuance_and_renewal_newest_first(history: dict[str, int]) -> None:
    rows = logs_json()
    assert [r["id"] for r in rows] == [history["failed"], history["renew"], history["old"]]
    assert [(r["kind"], r["status"]) for r in rows] == [
        ("renew", "failed"),
        ("renew", "success"),
        ("issue", "success"),
    ]


def test_failure_shows_catalog_message_detail_and_flow_run(
    history: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    (row,) = logs_json("--failed")
    assert row["message"] == "Certificate is missing a DNS provider name."
    assert row["detail"] == "no DNS provider is mapped for b.example.com"
    assert row["flow_run_id"] == "33333333-3333-3333-3333-333333333333"
    monkeypatch.setenv("PREFECT_UI_URL", "http://127.0.0.1:4200")
    result = cli("logs", "--failed")
    assert result.exit_code == 0
    out = result.stdout
    assert "Certificate is missing a DNS provider name." in out
    assert "detail: no DNS provider is mapped for b.example.com" in out
    assert (
        "flow run: http://127.0.0.1:4200/runs/flow-run/33333333-3333-3333-3333-333333333333" in out
    )
    assert "a.example.com" not in out


def test_filter_by_certificate(history: dict[str, int]) -> None:
    rows = logs_json("--cert", str(history["a"]))
    assert {r["certificate_id"] for r in rows} == {history["a"]}
    assert len(rows) == 2
    result = cli("logs", "--cert", "4242")
    assert result.exit_code == 1 and "no certificate with id 4242" in result.output


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("7d", {"failed", "renew"}),
        ("90m", {"failed"}),
        ("12h", {"failed", "renew"}),
        ("60d", {"failed", "renew", "old"}),
    ],
)
def test_since_relative(history: dict[str, int], since: str, expected: set[str]) -> None:
    ids = {r["id"] for r in logs_json("--since", since)}
    assert ids == {history[k] for k in expected}


def test_since_iso_date_and_combined_filters(history: dict[str, int]) -> None:
    day = (NOW - timedelta(days=3)).date().isoformat()
    assert {r["id"] for r in logs_json("--since", day)} == {history["failed"], history["renew"]}
    rows = logs_json("--since", day, "--cert", str(history["a"]), "--kind", "renew")
    assert [r["id"] for r in rows] == [history["renew"]]
    assert logs_json("--since", day, "--failed", "--cert", str(history["a"])) == []


def test_bad_since_is_explained(history: dict[str, int]) -> None:
    result = cli("logs", "--since", "last tuesday")
    assert result.exit_code == 1
    assert "give an ISO date or time" in result.output


def test_parse_since_forms() -> None:
    now = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now=now) == now - timedelta(days=7)
    assert parse_since("12h", now=now) == now - timedelta(hours=12)
    assert parse_since("2w", now=now) == now - timedelta(weeks=2)
    assert parse_since("2025-03-01", now=now) == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_since("2025-03-01T08:00+02:00") == datetime(2025, 3, 1, 6, tzinfo=UTC)
    assert parse_since("2025-03-01T08:00Z") == datetime(2025, 3, 1, 8, tzinfo=UTC)
    with pytest.raises(ConfigError):
        parse_since("7 days ago")


def test_empty_history(engine: Engine, local_home: Path) -> None:
    assert logs_json() == []

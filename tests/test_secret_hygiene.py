"""Credentials never reach logs, exceptions, CLI output or a database in plain text (issue 4).

DNS provider secrets go in prompted (``-``) and as ``env:`` references, the CA's EAB HMAC key
is prompted; issuances succeed and fail (providers refusing wrong TSIG secrets); then every
captured log record (DEBUG, Prefect's loggers included, with tracebacks), every CLI output,
the raw bytes of acmeflow's SQLite files and of the Prefect server's database are searched
for the literal secrets.
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.fixtures_acmeflow import Home

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("prefect_harness")]

# unique, recognisable secrets (TSIG secrets are base64 text)
WRONG_PROMPTED = base64.b64encode(b"hygiene-wrong-prompted-tsig-0001").decode()
WRONG_ENV = base64.b64encode(b"hygiene-wrong-env-ref-tsig-00002").decode()


class Collect(logging.Handler):
    """Keeps every record, formatted with its traceback, and its raw attributes."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))
        self.texts.append(repr(record.__dict__))

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Collect:
    """Every log record of every logger at every level, Prefect's included.

    Logger levels, ``propagate`` and handlers are no guarantee (Prefect reconfigures its
    loggers while a flow starts), so every logger is made to create DEBUG records and every
    record is collected where the logger handles it.
    """
    caplog.set_level(logging.DEBUG)
    collect = Collect()
    handle = logging.Logger.handle

    def handle_and_collect(self: logging.Logger, record: logging.LogRecord) -> None:
        collect.handle(record)
        handle(self, record)

    monkeypatch.setattr(logging.Logger, "isEnabledFor", lambda self, level: True)
    monkeypatch.setattr(logging.Logger, "handle", handle_and_collect)
    return collect


def sqlite_bytes(url: str) -> bytes:
    """The raw bytes of a SQLite database with its WAL and shared-memory files."""
    path = Path(make_url(url).database or "")
    assert path.is_file(), path
    return b"".join(
        p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


@pytest.mark.prefect
def test_credentials_never_appear_in_plain_text(
    home_factory, sandbox_factory, monkeypatch: pytest.MonkeyPatch, all_logs: Collect
) -> None:
    eab_sandbox = sandbox_factory(eab=True)
    home: Home = home_factory(eab_sandbox)
    right_net_secret = home.zone_env("challenges.example.net", "SECRET")
    hmac_key = eab_sandbox.eab_hmac_key
    assert hmac_key
    # secrets reach acmeflow only by the prompt or as env:HYGIENE_WRONG_TSIG (a reference)
    monkeypatch.setenv("HYGIENE_WRONG_TSIG", WRONG_ENV)
    for var in (
        "ACMEFLOW_SANDBOX_EAB_HMAC_KEY",
        "ACMEFLOW_SANDBOX_TSIG_CHALLENGES_EXAMPLE_NET_SECRET",
    ):
        monkeypatch.delenv(var, raising=False)
    outputs: list[str] = []

    def cli(*args: str, input: str | None = None, code: int = 0) -> str:
        """Run the CLI, keep all it wrote (stdout and stderr), return its stdout."""
        result = home.cli(*args, input=input)
        outputs.append(result.output)
        outputs.append(result.stderr)
        assert result.exit_code == code, result.output
        return result.stdout

    cli(
        "ca", "add", "sandbox", "--vendor", "custom", "--email", "admin@example.com",
        "--directory-url", eab_sandbox.directory_url, "--ca-bundle", str(eab_sandbox.ca_bundle),
        "--eab-kid", str(eab_sandbox.eab_kid), "--eab-hmac-key", "-",
        input=hmac_key + "\n",
    )  # fmt: skip

    def add_provider(name: str, zone: str, secret_ref: str, input: str | None = None) -> None:
        cli(
            "dns", "add", name, "--type", "rfc2136",
            "--set", f"server={eab_sandbox.dns_server}",
            "--set", f"tsig_name={home.zone_env(zone, 'NAME')}",
            "--set", f"tsig_algorithm={home.zone_env(zone, 'ALGORITHM')}",
            "--secret", f"tsig_secret={secret_ref}",
            input=input,
        )  # fmt: skip
        cli("dns", "map", name, zone)

    add_provider("prompted-wrong", "example.com", "-", input=WRONG_PROMPTED + "\n")
    add_provider("env-wrong", "example.org", "env:HYGIENE_WRONG_TSIG")
    add_provider("prompted-right", "challenges.example.net", "-", input=right_net_secret + "\n")

    # the providers refuse the wrong secrets: the catalog TXT error, detail from rfc2136
    for name in ("fail.example.com", "fail.example.org"):
        cli("issue", "--ca", "sandbox", "--name", name, code=1)
        assert "Error adding TXT record for domain validation." in outputs[-2]
        assert "rfc2136:" in outputs[-2]
    out = cli("issue", "--ca", "sandbox", "--name", "fail2.example.org", "--json", code=1)
    assert json.loads(out[out.index("{") :])["error"] == "TXTRecordError"
    # a prompted secret that works: delegated.example.com's challenge lives in
    # challenges.example.net, written through prompted-right (the EAB key signs the account)
    cli("issue", "--ca", "sandbox", "--name", "delegated.example.com", "--json")
    cli("dns", "check", "prompted-right", "delegated.example.com", "--json")
    cli("dns", "check", "prompted-wrong", "example.com", "--json", code=1)
    cli("dns", "edit", "env-wrong", "--secret", "tsig_secret=-", input=WRONG_PROMPTED + "\n")

    for args in (
        ("dns", "list", "--json"),
        ("dns", "list"),
        ("dns", "show", "prompted-wrong", "--json"),
        ("dns", "show", "prompted-right"),
        ("dns", "show", "env-wrong", "--json"),
        ("ca", "list", "--json"),
        ("ca", "show", "sandbox", "--json"),
        ("ca", "show", "sandbox"),
        ("logs", "--json"),
    ):
        cli(*args)
    shown = json.loads(cli("dns", "show", "prompted-wrong", "--json"))
    assert shown["secrets"] == {"tsig_secret": "***"}
    history = json.loads(cli("logs", "--json"))
    assert [e["status"] for e in history].count("failed") == 3

    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    APILogHandler().flush()  # send the run logs to the Prefect server now
    stores = b"".join(
        p.read_bytes() for p in home.path.rglob("*") if p.is_file() and p.suffix != ".key"
    )
    acmeflow_db = sqlite_bytes(f"sqlite:///{home.path / 'acmeflow.db'}")
    prefect_db = sqlite_bytes(PREFECT_SERVER_DATABASE_CONNECTION_URL.value())

    assert all_logs.texts, "no log record was captured"
    assert any("TSIG" in t for t in all_logs.texts), "the failures were not logged"
    places = {
        "log records": all_logs.text,
        "CLI output": "\n".join(outputs),
    }
    raw = {
        "acmeflow database": acmeflow_db,
        "Prefect database": prefect_db,
        "files in ACMEFLOW_HOME": stores,
    }
    for secret in (WRONG_PROMPTED, WRONG_ENV, right_net_secret, hmac_key):
        for where, text in places.items():
            assert secret not in text, f"a secret appears in the {where}"
        for where, data in raw.items():
            assert secret.encode() not in data, f"a secret appears in the {where}"

"""The fast path a command takes before it loads its settings: it reads the home and
ACMEFLOW_USE_RUNNER as Settings does, picks only the served JSON listings, and falls back
(None) when no runner listens, without importing SQLAlchemy or pydantic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from acmeflow.config.environment import home_from, runner_allowed
from acmeflow.config.settings import Settings
from acmeflow.runner_client import environment_fingerprint, served


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"ACMEFLOW_HOME": "/srv/acmeflow"},
        {"ACMEFLOW_HOME": "relative/home"},
    ],
)
def test_the_home_is_read_as_settings_read_it(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACMEFLOW_HOME", raising=False)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    assert home_from() == Settings().home


@pytest.mark.parametrize(
    ("value", "allowed"),
    [(None, True), ("true", True), ("1", True), ("false", False), ("0", False), ("OFF", False)],
)
def test_use_runner_is_a_boolean_as_pydantic_reads_one(value: str | None, allowed: bool) -> None:
    environ = {} if value is None else {"ACMEFLOW_USE_RUNNER": value}
    assert runner_allowed(environ) is allowed


@pytest.mark.parametrize(
    ("argv", "answered"),
    [
        (["certs", "list", "--json"], True),
        (["ca", "list", "--json"], True),
        (["logs", "--failed", "--json"], True),
        (["certs", "list"], False),  # a table: drawn for this terminal, here
        (["certs", "show", "1", "--json"], False),
        (["--debug", "certs", "list", "--json"], False),
        (["issue", "--ca", "x", "--json"], False),
    ],
)
def test_only_read_only_json_listings_are_served(argv: list[str], answered: bool) -> None:
    assert served(argv) is answered


def test_without_a_runner_the_fast_path_steps_aside_without_heavy_imports(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from acmeflow.runner_client import answer_from_runner\n"
        "assert answer_from_runner(['certs', 'list', '--json']) is None\n"
        "print(sorted(m for m in ('sqlalchemy', 'pydantic', 'prefect') if m in sys.modules))\n"
    )
    env = {**os.environ, "ACMEFLOW_HOME": str(tmp_path)}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_fingerprint_covers_the_settings_but_not_the_console_level() -> None:
    base = {"ACMEFLOW_HOME": "/h", "PREFECT_API_URL": "http://x/api", "PATH": "/bin", "HOME": "/r"}
    same = environment_fingerprint(base)
    assert environment_fingerprint({**base, "PATH": "/usr/bin", "TERM": "xterm"}) == same
    debug = {**base, "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING"}  # acmeflow --debug
    assert environment_fingerprint(debug) == same
    for changed in ("ACMEFLOW_DNS_QUERY_PORT", "PREFECT_API_KEY", "AWS_PROFILE", "HOME"):
        assert environment_fingerprint({**base, changed: "other"}) != same, changed

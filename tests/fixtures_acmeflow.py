"""Fixtures for tests that run acmeflow itself: a Prefect test server, a fresh home, the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import Result

from acmeflow.config.settings import get_settings
from acmeflow.sandbox import SandboxInfo
from tests.support import run_cli


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test server for the whole session (starting one takes ~11 s)."""
    os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "50")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


def delete_global_limits() -> None:
    """Remove the ``acmeflow-*`` global concurrency limits from the Prefect server."""
    from prefect.client.orchestration import get_client

    from acmeflow.core.limits import PREFIX

    with get_client(sync_client=True) as client:
        for limit in client.read_global_concurrency_limits(limit=200):
            if limit.name.startswith(PREFIX):
                client.delete_global_concurrency_limit_by_name(limit.name)


@pytest.fixture(autouse=True)
def _no_global_limits_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that syncs schedules leaves pool-wide limits on the session's server; later
    tests' runs would hold their slots and size their batches by them: remove them."""
    yield
    if "prefect_harness" in request.fixturenames:
        delete_global_limits()


@dataclass
class Home:
    """A fresh ACMEFLOW_HOME wired to a sandbox, with a CLI runner."""

    path: Path
    sandbox: SandboxInfo
    env: dict[str, str]

    def cli(self, *args: str, input: str | None = None) -> Result:
        """Run ``acmeflow ARGS`` in-process (catches nothing: check exit_code and output)."""
        return run_cli(*args, input=input)

    def ok(self, *args: str, input: str | None = None) -> Result:
        """Run the CLI and assert it succeeded."""
        result = self.cli(*args, input=input)
        assert result.exit_code == 0, result.output
        return result

    def zone_env(self, zone: str, field: str) -> str:
        return self.env[f"ACMEFLOW_SANDBOX_TSIG_{zone.upper().replace('.', '_')}_{field}"]

    def add_sandbox_ca(self, name: str = "sandbox", **extra: str) -> Result:
        args = [
            "ca",
            "add",
            name,
            "--vendor",
            "custom",
            "--email",
            "admin@example.com",
            "--directory-url",
            self.sandbox.directory_url,
            "--ca-bundle",
            str(self.sandbox.ca_bundle),
        ]
        for key, value in extra.items():
            args += [f"--{key.replace('_', '-')}", value]
        return self.cli(*args)

    def add_zone_provider(self, name: str, zone: str, *, secret_env: str | None = None) -> Result:
        zone_key = zone.upper().replace(".", "_")
        return self.cli(
            "dns",
            "add",
            name,
            "--type",
            "rfc2136",
            "--set",
            f"server={self.sandbox.dns_host}:{self.sandbox.dns_port}",
            "--set",
            f"tsig_name={self.zone_env(zone, 'NAME')}",
            "--set",
            f"tsig_algorithm={self.zone_env(zone, 'ALGORITHM')}",
            "--secret",
            f"tsig_secret=env:{secret_env or f'ACMEFLOW_SANDBOX_TSIG_{zone_key}_SECRET'}",
        )

    def configure(self) -> None:
        """CA ``sandbox`` plus provider ``bind-com`` serving example.com."""
        assert self.add_sandbox_ca().exit_code == 0
        assert self.add_zone_provider("bind-com", "example.com").exit_code == 0
        self.ok("dns", "map", "bind-com", "example.com")


@pytest.fixture
def home_factory(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[SandboxInfo], Home]]:
    """Build a fresh acmeflow home for a sandbox (env set for this test only)."""

    def make(sandbox: SandboxInfo) -> Home:
        path = tmp_path_factory.mktemp("acmeflow-home")
        env = sandbox.env()
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("ACMEFLOW_HOME", str(path))
        monkeypatch.delenv("ACMEFLOW_DATABASE_URL", raising=False)
        monkeypatch.setenv("ACMEFLOW_PROPAGATION_TIMEOUT", "20")
        monkeypatch.setenv("ACMEFLOW_ACME_TIMEOUT", "60")
        get_settings.cache_clear()
        return Home(path=path, sandbox=sandbox, env=env)

    yield make
    get_settings.cache_clear()


@pytest.fixture
def home(home_factory: Callable[[SandboxInfo], Home], sandbox: SandboxInfo) -> Home:
    """A fresh home on the default sandbox, with CA and example.com provider configured."""
    h = home_factory(sandbox)
    h.configure()
    return h


@pytest.fixture
def no_reuse_home(
    home_factory: Callable[[SandboxInfo], Home], sandbox_factory: Callable[..., SandboxInfo]
) -> Home:
    """A home on a sandbox whose pebble never reuses an authorization: a renewal validates
    its names again (and meets its DNS provider) every time."""
    home = home_factory(sandbox_factory(authz_reuse=0))
    home.configure()
    return home

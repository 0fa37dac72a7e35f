"""A throwaway PostgreSQL server (Debian's postgresql) for the state tests, on a free port."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.support import free_port

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL cluster in a temp folder on a free loopback port, removed at exit;
    yields its base URL (user ``acmeflow``). Used by the tests and ``bench.inventory_scale``."""
    bins = sorted(glob.glob(PG_BIN_GLOB))
    assert bins, "PostgreSQL is not installed: apt-get install postgresql (make test does it)"
    pg_bin = bins[-1]
    data = tempfile.mkdtemp(prefix="acmeflow-pg-")
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        _as_postgres([f"{pg_bin}/initdb", "-D", data, "-A", "trust", "-U", "acmeflow"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        _as_postgres(
            [
                f"{pg_bin}/postgres",
                "-D",
                data,
                "-p",
                str(port),
                "-k",
                data,
                "-h",
                "127.0.0.1",
                "-c",
                "fsync=off",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while (
        subprocess.run(
            [f"{pg_bin}/pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        ).returncode
        != 0
    ):
        assert server.poll() is None, "PostgreSQL did not start"
        assert time.monotonic() < deadline, "PostgreSQL did not become ready in 30 s"
        time.sleep(0.1)
    try:
        yield f"postgresql+psycopg://acmeflow@127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """One throwaway PostgreSQL cluster for the session; yields its base URL."""
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_database(postgres_server: str) -> Callable[[], str]:
    """``postgres_database()`` creates a new empty database and returns its URL."""
    import psycopg

    numbers = count(1)
    admin_url = postgres_server.replace("postgresql+psycopg", "postgresql") + "/postgres"

    def create() -> str:
        name = f"acmeflow_test_{next(numbers)}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{postgres_server}/{name}"

    return create


@pytest.fixture(params=["sqlite", "postgresql"])
def state_engine(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    """A migrated state database in a fresh home: SQLite (the default) and PostgreSQL."""
    from acmeflow.config.settings import get_settings
    from acmeflow.core.state.db import dispose_engines, open_database

    monkeypatch.setenv("ACMEFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ACMEFLOW_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    if request.param == "sqlite":
        yield open_database()
    else:
        yield open_database(request.getfixturevalue("postgres_database")())
    dispose_engines()
    get_settings.cache_clear()

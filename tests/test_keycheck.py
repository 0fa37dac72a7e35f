"""Every process of a pool must hold the database's sealing key, checked before it touches
anything: from ACMEFLOW_SECRET_KEY, a Prefect Secret block or the home's key file."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import func, select

from acmeflow.config.settings import get_settings
from acmeflow.core.errors import SecretError
from acmeflow.core.secrets import SecretBox, generate_key
from acmeflow.core.state.db import dispose_engines, open_database, session_scope
from acmeflow.core.state.keycheck import KEY_CHECK_SETTING, verify_secret_key
from acmeflow.core.state.models import AppSetting
from tests.serve_process import api_env
from tests.support import run_acmeflow

KEY_A, KEY_B = generate_key(), generate_key()


def acmeflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_acmeflow(*args, env=env, timeout=120)


def dump(database: Path) -> list[str]:
    """Every row of the SQLite database, as SQL (WAL included)."""
    with closing(sqlite3.connect(database)) as db:
        return list(db.iterdump())


@pytest.fixture
def home_env(tmp_path: Path) -> dict[str, str]:
    """A fresh home whose database was first opened with KEY_A (the pool's key)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACMEFLOW_")}
    env |= {"ACMEFLOW_HOME": str(tmp_path / "home"), "ACMEFLOW_SECRET_KEY": KEY_A}
    assert acmeflow(env, "ca", "list").returncode == 0
    return env


def test_the_first_process_writes_the_check_and_the_same_key_opens_it(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'state.db'}")  # checked with this process's
    with session_scope(engine) as s:  # key: start again as a database nobody opened yet
        s.delete(s.get(AppSetting, KEY_CHECK_SETTING))
    verify_secret_key(engine, SecretBox(key=KEY_A))
    verify_secret_key(engine, SecretBox(key=f"{KEY_B},{KEY_A}"))  # a rotation still opens it
    with pytest.raises(SecretError) as refused:
        verify_secret_key(engine, SecretBox(key=KEY_B))
    assert "the given key" in str(refused.value.detail)
    with session_scope(engine) as s:
        checks = s.scalar(select(func.count()).where(AppSetting.key == KEY_CHECK_SETTING))
    assert checks == 1
    dispose_engines()


def test_a_worker_with_another_key_fails_before_touching_anything(
    home_env: dict[str, str],
) -> None:
    database = Path(home_env["ACMEFLOW_HOME"]) / "acmeflow.db"
    before = dump(database)
    other = {**home_env, "ACMEFLOW_SECRET_KEY": KEY_B}
    for command in (["ca", "list"], ["renew", "--json"], ["sweep"]):
        done = acmeflow(other, *command)
        said = " ".join((done.stdout + done.stderr).split())  # --json: the error as JSON
        assert done.returncode == 1, (command, said)
        assert "A secret could not be read" in said
        assert "ACMEFLOW_SECRET_KEY_BLOCK (nothing was changed)" in said
        assert "Traceback" not in said
    assert dump(database) == before
    without_key = {k: v for k, v in home_env.items() if k != "ACMEFLOW_SECRET_KEY"}
    done = acmeflow(without_key, "ca", "list")  # the home's key file is a different key too
    assert done.returncode == 1 and "key file" in done.stderr


@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_the_key_from_a_prefect_secret_block(home_env: dict[str, str]) -> None:
    from prefect.blocks.system import Secret

    Secret(value=KEY_A).save("acmeflow-pool-key", overwrite=True)
    Secret(value=KEY_B).save("acmeflow-other-key", overwrite=True)
    pool = {k: v for k, v in {**home_env, **api_env()}.items() if k != "ACMEFLOW_SECRET_KEY"}
    pool["ACMEFLOW_HOME"] = home_env["ACMEFLOW_HOME"]
    done = acmeflow({**pool, "ACMEFLOW_SECRET_KEY_BLOCK": "acmeflow-pool-key"}, "ca", "list")
    assert done.returncode == 0, done.stderr
    done = acmeflow({**pool, "ACMEFLOW_SECRET_KEY_BLOCK": "acmeflow-other-key"}, "ca", "list")
    assert done.returncode == 1
    assert "Prefect Secret block 'prefect-block:acmeflow-other-key'" in " ".join(
        done.stderr.split()
    )
    get_settings.cache_clear()

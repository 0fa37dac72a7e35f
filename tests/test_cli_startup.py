"""Commands that run no flow start without Prefect, Alembic or the DNS SDKs (CLI latency)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("prefect", "alembic", "boto3", "azure.mgmt.dns", "google.cloud.dns", "lexicon")
PROBE = (
    "import sys\n"
    "from acmeflow.cli import app\n"
    "try:\n"
    "    app(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('\\nMODULES ' + __import__('json').dumps(sorted(sys.modules)))\n"
)


@pytest.mark.parametrize(
    "command", [["--help"], ["certs", "list", "--json"], ["ca", "list"], ["logs"]]
)
def test_everyday_commands_import_no_heavy_library(command: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "ACMEFLOW_HOME": str(tmp_path / "home")}
    env.pop("ACMEFLOW_DATABASE_URL", None)
    for _ in range(2):  # the second run opens a database already at the schema head
        done = subprocess.run(
            [sys.executable, "-c", PROBE, *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    modules = set(json.loads(done.stdout.rsplit("MODULES ", 1)[1]))
    loaded = [m for m in HEAVY if m in modules]
    assert loaded == [], f"`acmeflow {' '.join(command)}` imported {loaded}"

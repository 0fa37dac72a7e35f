"""The wheel installs one top-level package, ``acmeflow``, and lives beside a Prefect project
that has its own ``tasks/``, ``flows/``, ``config/`` and ``core/`` packages.

The wheel is built from a copy of the working tree and installed (without dependencies) into a
fresh virtual environment; the dependencies come from the test environment's site-packages
through a ``.pth`` line (tests have no network), which imports them without loading the
test environment's editable acmeflow.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
USER_PACKAGES = ("tasks", "flows", "config", "core")
SKIPPED_WHILE_COPYING = shutil.ignore_patterns(
    ".venv", ".git", ".bench", ".demo", "build", "*.egg-info", "__pycache__", ".*_cache"
)


def _run(*args: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """acmeflow's wheel, built from a copy of the working tree."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=SKIPPED_WHILE_COPYING)
    out = base / "dist"
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        out,
        source,
        cwd=base,
        env=dict(os.environ),
    )
    (built,) = out.glob("acmeflow-*.whl")
    return built


def test_the_wheel_holds_only_the_acmeflow_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["acmeflow"]
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "acmeflow.providers.dns.rfc2136:PROVIDER" in archive.read(entry_points).decode()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"acmeflow"}
    for module in ("core/issuance.py", "flows/issue.py", "tasks/common.py", "config/settings.py"):
        assert f"acmeflow/{module}" in names
    assert "acmeflow/providers/dns/rfc2136.py" in names
    assert "acmeflow/core/state/migrations/versions/0001_initial.py" in names
    assert "acmeflow/core/state/alembic.ini" in names


def test_installed_beside_a_project_with_its_own_tasks_and_flows(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path, env=dict(os.environ))
    python = venv / "bin" / "python"
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--quiet",
        wheel,
        cwd=tmp_path,
        env=dict(os.environ),
    )
    (venv_site,) = (venv / "lib").glob("python3*/site-packages")
    (venv_site / "test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    project = tmp_path / "project"
    for package in USER_PACKAGES:
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(f"OWNER = 'the project ({package})'\n")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ACMEFLOW_", "PREFECT_"))
    }
    env.update(
        ACMEFLOW_HOME=str(tmp_path / "home"),
        PREFECT_HOME=str(tmp_path / "prefect"),
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )

    help_text = _run(venv / "bin" / "acmeflow", "--help", cwd=project, env=env).stdout
    assert "issue" in help_text and "renew" in help_text

    probe = (
        "import acmeflow, acmeflow.cli, acmeflow.flows.issue, tasks, flows, config, core\n"
        "print(acmeflow.__file__)\n"
        "print(acmeflow.flows.issue.issue.name)\n"
        "print(tasks.OWNER, flows.OWNER, config.OWNER, core.OWNER, sep='\\n')\n"
    )
    lines = _run(python, "-c", probe, cwd=project, env=env).stdout.splitlines()
    assert Path(lines[0]).is_relative_to(venv_site)
    assert lines[1] == "issue"
    assert lines[2:] == [f"the project ({p})" for p in USER_PACKAGES]

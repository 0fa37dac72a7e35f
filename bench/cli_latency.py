"""How long everyday CLI commands take, from process start to exit.

``python -m bench.cli_latency [--runs 10]``

Each command runs ``--runs`` times as a fresh process (``.venv/bin/acmeflow`` beside this
Python) against a throwaway home with a database already created, and the median, minimum and
maximum wall times are printed. None of these commands runs a flow, so none should import
Prefect; the bench checks that too (``python -X importtime``).

Then it measures the same commands with the home's local server up (``acmeflow server
start``): its warm runner answers the JSON listings (``certs list --json``, ``ca list --json``,
``logs --json``) without the command importing SQLAlchemy or pydantic.

Target (issue "A CLI that feels instant"): ``--help`` and ``certs list --json`` at most 0.4 s.
The exit status is 0 when both are met with the local server up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS: tuple[tuple[str, ...], ...] = (
    ("--help",),
    ("certs", "list", "--json"),
    ("ca", "list"),
    ("ca", "list", "--json"),
    ("logs",),
    ("logs", "--json"),
)
TARGET_SECONDS = 0.4
#: What a command that reads the database cannot go below: starting Python and importing the
#: libraries it needs (typer/rich, pydantic-settings, the SQLAlchemy ORM), nothing else.
FLOOR_IMPORTS = "import typer, rich.console, pydantic_settings, sqlalchemy.orm"
TARGETED = {("--help",), ("certs", "list", "--json")}


def acmeflow_command() -> list[str]:
    """The console script of this environment."""
    return [str(Path(sys.executable).with_name("acmeflow"))]


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def imports_prefect(args: tuple[str, ...], env: dict[str, str]) -> bool:
    """Whether the command imports Prefect (read from ``-X importtime``)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from acmeflow.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return any(line.rstrip().endswith("| prefect") for line in done.stderr.splitlines())


def measure(env: dict[str, str], runs: int, label: str) -> bool:
    """Time every command ``runs`` times; whether the targeted ones met the target."""
    met = True
    print(f"{label}:")
    for command in COMMANDS:
        times = [timed([*acmeflow_command(), *command], env) for _ in range(runs)]
        median = statistics.median(times)
        prefect = imports_prefect(command, {**env, "COLUMNS": "80"})
        line = (
            f"  acmeflow {' '.join(command):<18} median {median:.3f} s "
            f"(min {min(times):.3f}, max {max(times):.3f}, {runs} runs)"
            f"{'; imports Prefect' if prefect else ''}"
        )
        if command in TARGETED:
            ok = median <= TARGET_SECONDS
            met = met and ok
            line += f"; target <= {TARGET_SECONDS} s: {'met' if ok else 'NOT met'}"
        print(line)
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="acmeflow-cli-bench-") as home:
        env = {**os.environ, "ACMEFLOW_HOME": home, "DO_NOT_TRACK": "1"}
        for key in ("ACMEFLOW_DATABASE_URL", "PREFECT_API_URL"):
            env.pop(key, None)
        subprocess.run(
            [*acmeflow_command(), "certs", "list"], env=env, check=True, capture_output=True
        )  # creates and migrates the database once, as any first use does
        measure(env, args.runs, "no local server")
        floor = [timed([sys.executable, "-c", FLOOR_IMPORTS], env) for _ in range(args.runs)]
        print(
            f"  floor: python -c {FLOOR_IMPORTS!r} median {statistics.median(floor):.3f} s "
            f"(min {min(floor):.3f}, max {max(floor):.3f})"
        )
        server = [*acmeflow_command(), "server"]
        subprocess.run([*server, "start"], env=env, check=True, capture_output=True)
        try:
            met = measure(env, args.runs, "local server and its runner up (acmeflow server start)")
        finally:
            subprocess.run([*server, "stop"], env=env, check=False, capture_output=True)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

"""`make demo`: the main job end to end on the local sandbox, through the real CLI.

Brings up pebble + BIND on loopback, configures a CA vendor and an RFC 2136 DNS provider,
issues one certificate for an apex name, its wildcard and www, verifies the chain against
pebble's root and prints where the files are. Everything lives in ./.demo (removed first).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".demo"
ACMEFLOW = str(Path(sys.executable).with_name("acmeflow"))


def run(*args: str, env: dict[str, str], capture: bool = False) -> str:
    """Run one acmeflow command, echoing it like a shell would."""
    print(f"\n$ acmeflow {' '.join(shlex.quote(a) for a in args)}", flush=True)
    result = subprocess.run(
        [ACMEFLOW, *args], env=env, text=True, capture_output=capture, check=False
    )
    if result.returncode != 0:
        if capture:
            print(result.stdout, result.stderr, sep="\n")
        sys.exit(f"demo failed at: acmeflow {' '.join(args)}")
    return result.stdout if capture else ""


def latest_run_url(server: dict[str, str]) -> str:
    """The UI page of the newest flow run on the demo's local Prefect server."""
    request = urllib.request.Request(
        f"{server['url']}/flow_runs/filter",
        data=json.dumps({"sort": "START_TIME_DESC", "limit": 1}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        (flow_run,) = json.loads(answer.read())
    return f"{server['ui_url']}/runs/flow-run/{flow_run['id']}"


def main() -> None:
    env = {**os.environ, "ACMEFLOW_HOME": str(HOME)}
    env.pop("ACMEFLOW_DATABASE_URL", None)
    if HOME.exists():
        for stop in (["sandbox", "down"], ["server", "stop"]):
            subprocess.run([ACMEFLOW, *stop], env=env, check=False, capture_output=True)
        shutil.rmtree(HOME)
    run("sandbox", "up", env=env)
    sandbox = json.loads(run("sandbox", "env", "--json", env=env, capture=True))
    env.update(sandbox)
    # started with the sandbox's settings, so its runner takes the commands' flow runs
    server = json.loads(run("server", "start", "--json", env=env, capture=True))
    zone = "EXAMPLE_COM"
    run(
        "ca",
        "add",
        "sandbox",
        "--vendor",
        "custom",
        "--email",
        "admin@example.com",
        "--directory-url",
        sandbox["ACMEFLOW_SANDBOX_DIRECTORY_URL"],
        "--ca-bundle",
        sandbox["ACMEFLOW_SANDBOX_CA_BUNDLE"],
        "--renew-days",
        "30",
        env=env,
    )
    run(
        "dns",
        "add",
        "sandbox-bind",
        "--type",
        "rfc2136",
        "--set",
        f"server={sandbox['ACMEFLOW_SANDBOX_DNS_SERVER']}",
        "--set",
        f"tsig_name={sandbox[f'ACMEFLOW_SANDBOX_TSIG_{zone}_NAME']}",
        "--set",
        f"tsig_algorithm={sandbox[f'ACMEFLOW_SANDBOX_TSIG_{zone}_ALGORITHM']}",
        "--secret",
        f"tsig_secret=env:ACMEFLOW_SANDBOX_TSIG_{zone}_SECRET",
        env=env,
    )
    run("dns", "map", "sandbox-bind", "example.com", env=env)
    run(
        "issue",
        "--ca",
        "sandbox",
        "--name",
        "example.com",
        "--name",
        "*.example.com",
        "--name",
        "www.example.com",
        "--organization",
        "Example Org",
        "--country",
        "DE",
        env=env,
    )
    run_url = latest_run_url(server)
    issued = json.loads(run("certs", "list", "--json", env=env, capture=True))[0]
    run("certs", "verify", str(issued["id"]), "--sandbox", env=env)
    print("\nIssued certificate files:")
    for kind, path in issued["files"].items():
        print(f"  {kind:10} {path}")
    print(f"\nSerial {issued['serial']}, valid until {issued['not_after']}.")
    print(f"\nThe demo's flow run in the Prefect UI: {run_url}")
    print(
        "The sandbox and the Prefect server are still running; stop them with:"
        " ACMEFLOW_HOME=.demo .venv/bin/acmeflow sandbox down;"
        " ACMEFLOW_HOME=.demo .venv/bin/acmeflow server stop"
    )


if __name__ == "__main__":
    main()
